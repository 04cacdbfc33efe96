"""Statistics and exports read from ``SIDAN_READ_DATABASE_URL`` when it is set: tested against a
connection that can only read (a role with ``default_transaction_read_only = on``), as a streaming
replica is."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError

from app.config import Settings
from app.domain import Status
from app.main import create_app
from tests.world import World

READER = "sidan_report_reader"


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
async def reader_url(database_url: str) -> str:
    """The test database as a role that may only read, in read-only transactions by default."""
    connection = await asyncpg.connect(_dsn(database_url))
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", READER)
        if not exists:
            await connection.execute(f"CREATE ROLE {READER} LOGIN")
        await connection.execute(f"ALTER ROLE {READER} SET default_transaction_read_only = on")
        await connection.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER}")
    finally:
        await connection.close()
    return make_url(database_url).set(username=READER, password=None).render_as_string(hide_password=False)


@pytest.fixture
async def reporting(settings: Settings, database_url: str, reader_url: str) -> AsyncIterator[FastAPI]:
    application = create_app(settings.model_copy(update={"read_database_url": reader_url}), database_url=database_url)
    async with application.router.lifespan_context(application):
        yield application


async def test_statistics_and_exports_read_from_the_read_only_database(world: World, reporting: FastAPI) -> None:
    await world.order_in(Status.RATED)
    transport = httpx.ASGITransport(app=reporting)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
        stats = await client.get("/admin/stats", headers=world.h("zhan11_admin"))
        assert stats.status_code == 200, stats.text
        assert stats.json()["overall"]["ratings"] == 1
        for name in ("orders", "service-records", "volunteer-hours"):
            export = await client.get(f"/admin/exports/{name}.csv", headers=world.h("center_admin"))
            assert export.status_code == 200, export.text
            assert len(export.content.decode("utf-8-sig").splitlines()) >= 2, name
        # Writes still go to the main database.
        placed = await client.post("/orders", json=world.order_body(), headers=world.h("r1"))
        assert placed.status_code == 201, placed.text
    reports = reporting.state.report_engine
    assert reports is not reporting.state.engine
    assert reports.sync_engine.pool.checkedin() >= 1  # its pool served the reads above
    async with reports.connect() as connection:  # and it really is a connection that can only read
        assert await connection.scalar(text("SHOW default_transaction_read_only")) == "on"
        with pytest.raises(DBAPIError, match="read-only transaction"):
            await connection.execute(text("CREATE TEMPORARY TABLE written (i integer)"))
