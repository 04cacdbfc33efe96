"""A real uvicorn server on 127.0.0.1, in a thread of the test process, over the test database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from app.config import Settings
from app.main import create_app
from tests.helpers import free_port

STARTUP_TIMEOUT = 60.0


@contextmanager
def live_server(settings: Settings, database_url: str) -> Iterator[str]:
    """``http://127.0.0.1:<port>``: the app (its own engine and lifespan) served by uvicorn until exit."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, database_url=database_url), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, f"uvicorn not started in {STARTUP_TIMEOUT:.0f} s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
