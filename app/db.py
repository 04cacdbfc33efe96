"""Engine, sessions and the embedded-PostgreSQL bootstrap.

With no ``DATABASE_URL`` the service runs a real PostgreSQL from the ``pgserver`` wheel in
``SIDAN_DATA_DIR``; with one, it uses that server. Same engine, same migrations either way.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import make_url
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.config import Settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "sidan"
_embedded_servers: dict[Path, Any] = {}


def start_embedded_postgres(data_dir: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Start (or reuse) the embedded PostgreSQL in ``data_dir`` and return an asyncpg URL to ``database``."""
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


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args={
            "timeout": 5,
            "server_settings": {
                "application_name": "sidan",
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "lock_timeout": str(settings.db_lock_timeout_ms),
                "idle_in_transaction_session_timeout": "60000",
            },
        },
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request. Services own their transactions and commit themselves."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]
