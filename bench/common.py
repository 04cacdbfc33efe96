"""Shared set-up for benchmarks: a fresh, migrated database on the chosen server."""

from __future__ import annotations

import asyncio
import os
import platform
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy import make_url

from app.db import start_embedded_postgres, to_async_url
from app.migrate import upgrade


def server_url(explicit: str | None) -> str:
    """``--database-url``, else ``DATABASE_URL``, else the embedded server in ``.sidan/bench``."""
    url = explicit or os.environ.get("DATABASE_URL") or os.environ.get("SIDAN_DATABASE_URL")
    if url:
        return to_async_url(url)
    return start_embedded_postgres(Path(".sidan/bench"), database="postgres")


def plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def scratch_database(server: str, prefix: str) -> AsyncIterator[str]:
    """A new database on ``server``, migrated to head, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(plain_dsn(server))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade, url)
    try:
        yield url
    finally:
        admin = await asyncpg.connect(plain_dsn(server))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def describe_machine(url: str) -> str:
    connection = await asyncpg.connect(plain_dsn(url))
    version = await connection.fetchval("SHOW server_version")
    await connection.close()
    return (
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {version}"
    )
