"""``sidan``: serve, worker, migrate, seed-demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
from types import FrameType

from app.config import get_settings
from app.db import resolve_database_url
from app.observability import MULTIPROCESS_DIR, configure_logging

log = logging.getLogger("sidan")


def _database_url() -> str:
    """The server to use; starts the embedded PostgreSQL when ``DATABASE_URL`` is not set."""
    url = resolve_database_url(get_settings())
    # Worker processes (``--workers``) and the app factory inherit the resolved server.
    os.environ["SIDAN_DATABASE_URL"] = url
    get_settings.cache_clear()
    return url


def _migrate(url: str) -> None:
    from app.migrate import upgrade

    upgrade(url)


def _seed_demo(url: str) -> bool:
    from app.demo import seed_demo

    return asyncio.run(seed_demo(url))


def cmd_migrate(_: argparse.Namespace) -> int:
    _migrate(_database_url())
    print("database migrated to head")
    return 0


def cmd_seed_demo(_: argparse.Namespace) -> int:
    url = _database_url()
    _migrate(url)
    print("demo data loaded" if _seed_demo(url) else "database already has data: demo not loaded")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    url = _database_url()
    _migrate(url)
    if args.demo:
        loaded = _seed_demo(url)
        print("demo data loaded" if loaded else "database already has data: demo not reloaded")
    print(f"Sidan is serving on http://{args.host}:{args.port}  (API docs: http://{args.host}:{args.port}/docs)")
    sys.stdout.flush()
    metrics_dir = None
    if args.workers > 1 and not os.environ.get(MULTIPROCESS_DIR):
        # Each worker process writes its metrics here; a scrape of any one reports them all.
        metrics_dir = tempfile.mkdtemp(prefix="sidan-metrics-")
        os.environ[MULTIPROCESS_DIR] = metrics_dir
    try:
        uvicorn.run(
            "app.asgi:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            http="httptools",
            log_level="info",
            # Logging is ours (app.observability): JSON lines with request ids; our access line replaces
            # uvicorn's, which would log query strings.
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=20,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def cmd_worker(_: argparse.Namespace) -> int:
    """Run only the background worker (sweeper + notifications), e.g. beside API-only instances."""
    import httpx

    from app.db import create_engine, create_sessionmaker
    from app.worker import run_worker

    url = _database_url()
    _migrate(url)
    settings = get_settings()

    async def _run() -> None:
        engine = create_engine(url, settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        try:
            async with httpx.AsyncClient() as http:
                await run_worker(create_sessionmaker(engine), settings, http, stop)
        finally:
            await engine.dispose()

    print("Sidan worker running (deadline sweeper + notification sender); Ctrl-C to stop")
    asyncio.run(_run())
    return 0


def cmd_rotate_keys(_: argparse.Namespace) -> int:
    """Re-encrypt stored phone numbers under the first key of SIDAN_DATA_KEYS."""
    from app.db import create_engine, create_sessionmaker
    from app.services.privacy import rotate_keys

    url = _database_url()
    _migrate(url)
    settings = get_settings()

    async def _run() -> int:
        engine = create_engine(url, settings)
        try:
            async with create_sessionmaker(engine)() as session:
                return await rotate_keys(session)
        finally:
            await engine.dispose()

    print(f"re-encrypted {asyncio.run(_run())} phone numbers under the first data key")
    return 0


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the process through ``SystemExit`` (status 143), so exit handlers run and stop
    the embedded PostgreSQL. uvicorn shuts down gracefully, then re-raises the signal it caught to
    the handler installed before it; Python's default (die at once) left the database running."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    configure_logging(get_settings())
    parser = argparse.ArgumentParser(prog="sidan", description="四单 order-dispatch service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="migrate, then serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--demo", action="store_true", help="load the demo county into an empty database")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="migrate the database to head").set_defaults(func=cmd_migrate)
    sub.add_parser("rotate-keys", help="re-encrypt personal data under the first SIDAN_DATA_KEYS key").set_defaults(
        func=cmd_rotate_keys
    )
    sub.add_parser("worker", help="run the deadline sweeper and notification sender only").set_defaults(func=cmd_worker)
    sub.add_parser("seed-demo", help="load the demo county into an empty database").set_defaults(func=cmd_seed_demo)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
