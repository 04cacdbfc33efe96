"""Test fixtures: a real PostgreSQL, migrated with Alembic, and the app over an in-process ASGI client.

The server is ``SIDAN_TEST_DATABASE_URL`` (any database on it; a fresh one is created per run) or,
when unset, an embedded ``pgserver`` in a temporary directory. Tests commit for real (concurrency
tests need separate connections); every table is truncated after each test.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import start_embedded_postgres, stop_embedded_postgres, to_async_url
from app.main import create_app
from app.migrate import upgrade
from app.models import Base
from tests.wechat_standin import StandInWechat
from tests.world import World, build_world


def _dsn(url: str) -> str:
    """asyncpg wants a plain postgresql:// DSN."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL to the maintenance database of the PostgreSQL server the tests use."""
    external = os.environ.get("SIDAN_TEST_DATABASE_URL")
    if external:
        yield to_async_url(external)
        return
    with tempfile.TemporaryDirectory(prefix="sidan-test-") as data_dir:
        yield start_embedded_postgres(Path(data_dir), database="postgres")
        stop_embedded_postgres()


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    """A fresh database for this run, migrated to head with Alembic."""
    name = f"sidan_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_dsn(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade, url)
    yield url
    admin = await asyncpg.connect(_dsn(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(
        environment="test",
        enable_dev_token=True,
        run_worker=False,  # tests drive the sweeper and sender themselves, with an injected clock
        login_attempts_per_address=100_000,  # the whole suite logs in from one address; limits have own tests
        presence_code_attempts=10,  # tests/test_presence.py counts to it
        resident_orders_per_hour=1_000,
        db_pool_size=30,
        db_max_overflow=10,
        wechat_base_url="http://127.0.0.1:9",  # tests that need WeChat start their own stand-in
    )


@pytest.fixture(scope="session")
async def app(settings: Settings, database_url: str) -> AsyncIterator[FastAPI]:
    application = create_app(settings, database_url=database_url)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as http:
        yield http


@pytest.fixture
def sessionmaker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return maker


@pytest.fixture(autouse=True)
async def _clean_tables(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    yield
    if "app" not in request.fixturenames:
        return
    application: FastAPI = request.getfixturevalue("app")
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with application.state.engine.begin() as connection:
        await connection.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture
async def world(sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient) -> World:
    """A small county: 中心 → 2 所 → 3 站, with admins, volunteers, teams, residents and a menu."""
    return await build_world(sessionmaker, client)


@pytest.fixture
def wechat_server() -> Iterator[str]:
    StandInWechat.reset()
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInWechat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
