"""Engine, sessions and the embedded-PostgreSQL bootstrap.

With no ``DATABASE_URL`` the service runs a real PostgreSQL from the ``pgserver`` wheel in
``SIDAN_DATA_DIR``; with one, it uses that server. Same engine, same migrations either way.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import orjson
from fastapi import Depends, Request
from sqlalchemy import make_url
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from starlette.types import ASGIApp, Receive, Scope, Send

from app import crypto
from app.config import Settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "sidan"
_embedded_servers: dict[Path, Any] = {}


def start_embedded_postgres(data_dir: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Start (or reuse) the embedded PostgreSQL in ``data_dir`` and return an asyncpg URL to ``database``."""
    # pgserver logs every initdb / pg_ctl command with its whole output at INFO: a newcomer's first
    # screen was PostgreSQL's. Its failures are logged at ERROR and still show (SIDAN_LOG_LEVEL=DEBUG
    # does not bring the rest back: set the ``pgserver`` logger's level to see them).
    pg_log = logging.getLogger("pgserver")
    if pg_log.level == logging.NOTSET:
        pg_log.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # platformdirs warns, on import, that XDG_RUNTIME_DIR is unset (servers, containers) and uses
        # /tmp/runtime-<uid> for pgserver's lock file, which is what we want there anyway.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import pgserver

    pgdata = (data_dir / "pgdata").resolve()
    server = _embedded_servers.get(pgdata)
    if server is None:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        _embedded_servers[pgdata] = server
        log.info("embedded PostgreSQL running in %s", pgdata)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return to_async_url(server.get_uri(database))


def stop_embedded_postgres() -> None:
    for server in _embedded_servers.values():
        server.cleanup()
    _embedded_servers.clear()


def to_async_url(url: str) -> str:
    """Normalise any PostgreSQL URL to the asyncpg dialect."""
    parsed: URL = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return to_async_url(settings.database_url)
    return start_embedded_postgres(settings.data_dir)


# A client-side bound on every statement, just past the server's own statement_timeout: that one
# answers with a clean error; this one is for a server that cannot answer at all (frozen, partitioned).
COMMAND_TIMEOUT_GRACE_SECONDS = 2.0


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    # Whoever talks to the database reads and writes personal data with these keys.
    crypto.configure(settings.data_key_list, settings.lookup_key)
    """The engine: every wait is bounded, so a database outage turns into quick 503s, never a hang.

    Connecting gives up after 5 s, waiting for a pooled connection after 10 s; a pooled connection is
    replaced once found dead (a restarted server costs a request or two a 503); statements and
    lock waits are bounded by the server (``statement_timeout``, ``lock_timeout``) and by the client.
    """
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # No pre-ping: with asyncpg it costs three round trips (BEGIN, ping, ROLLBACK) per checkout. A
        # connection found dead raises a disconnect error, answered 503, and SQLAlchemy then retires
        # every connection opened before it, so the pool heals within a request or two.
        pool_pre_ping=False,
        pool_timeout=10,
        # Statement parameters (phones, password hashes) stay out of exception messages and logs.
        hide_parameters=True,
        # JSON columns (event payloads, outbox messages, stored responses) through orjson.
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args={
            "timeout": 5,
            "command_timeout": settings.db_statement_timeout_ms / 1000 + COMMAND_TIMEOUT_GRACE_SECONDS,
            "server_settings": {
                "application_name": "sidan",
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "lock_timeout": str(settings.db_lock_timeout_ms),
                "idle_in_transaction_session_timeout": "60000",
            },
        },
    )


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def transaction(session: AsyncSession) -> AsyncIterator[None]:
    """``session.begin()`` that adopts the transaction already open on ``session``, if any.

    ``current_actor`` reads the caller in the request's session and leaves that transaction open, so
    checking who is calling and the work itself share one transaction and one connection checkout.
    Commits when the block succeeds, rolls back when it raises.
    """
    if not session.in_transaction():
        async with session.begin():
            yield
        return
    try:
        yield
    except BaseException:
        await session.rollback()
        raise
    await session.commit()


_SESSION = "db_session"
_READ_ONLY = "_sidan_read_only"
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def read_only(endpoint: Endpoint) -> Endpoint:
    """Marks an endpoint that only reads (an access-log insert aside) and needs no transaction: its
    session runs in autocommit, so the request saves the ``BEGIN`` and ``COMMIT`` round trips. Each
    statement still sees what was committed when it started, as in a READ COMMITTED transaction; nothing
    the endpoint does may need a lock or ``SET LOCAL``. For the lists residents and volunteers poll."""
    setattr(endpoint, _READ_ONLY, True)
    return endpoint


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for ``read_only`` endpoints: the engine's pool, connections in autocommit."""
    return create_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))


async def get_session(request: Request) -> AsyncSession:
    """The request's session, opened on first use; ``RequestSessions`` closes it. Services own their
    transactions and commit themselves (in autocommit, for ``read_only`` endpoints).

    (Not a ``yield`` dependency: FastAPI's exit-stack machinery for those cost more CPU per request
    than the transition itself.)
    """
    session: AsyncSession | None = getattr(request.state, _SESSION, None)
    if session is None:
        endpoint = getattr(request.scope.get("route"), "endpoint", None)
        state = request.app.state
        sessionmaker: async_sessionmaker[AsyncSession] = (
            state.read_sessionmaker if getattr(endpoint, _READ_ONLY, False) else state.sessionmaker
        )
        session = sessionmaker()
        setattr(request.state, _SESSION, session)
    return session


class RequestSessions:
    """Closes the request's session (``get_session``) once the response has been sent or the request
    failed or was cancelled, shielded so a client that goes away cannot leave a connection checked out.
    A plain ASGI middleware: no task, no buffering."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            state = scope.get("state", {})
            for key in (_SESSION, _REPORT_SESSION):
                session: AsyncSession | None = state.get(key)
                if session is not None:
                    with anyio.CancelScope(shield=True):
                        await session.close()


Session = Annotated[AsyncSession, Depends(get_session)]

_REPORT_SESSION = "db_report_session"


async def get_report_session(request: Request) -> AsyncSession:
    """The request's session for statistics and exports: on ``SIDAN_READ_DATABASE_URL`` (a streaming
    replica, say) when set, else on the main database; nothing read through it is ever written."""
    session: AsyncSession | None = getattr(request.state, _REPORT_SESSION, None)
    if session is None:
        session = request.app.state.report_sessionmaker()
        setattr(request.state, _REPORT_SESSION, session)
    return session


ReportSession = Annotated[AsyncSession, Depends(get_report_session)]
