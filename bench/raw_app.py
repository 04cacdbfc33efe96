"""The baseline: one order transition behind a minimal FastAPI endpoint on raw asyncpg.

RAW_DSN=postgresql://… uvicorn bench.raw_app:app --port 8099

``POST /transition/{id}`` runs what ``bench.load``'s pgbench script runs and what the issue's baseline
describes — ``SELECT … FOR UPDATE``, ``UPDATE``, ``INSERT`` of the event — as three statements in one
transaction. ``POST /transition-cte/{id}`` is a tighter variant: the same work folded into one
statement (one round trip instead of three inside ``BEGIN … COMMIT``), printed beside it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI
from fastapi.responses import Response

LOCK = "SELECT status FROM bench_orders WHERE id = $1 FOR UPDATE"
UPDATE = """
    UPDATE bench_orders SET status = CASE WHEN status = 'approved' THEN 'dispatched' ELSE 'approved' END,
        version = version + 1
    WHERE id = $1 RETURNING status
"""
EVENT = "INSERT INTO bench_events (order_id, to_status) VALUES ($1, $2)"

ONE_STATEMENT = """
    WITH locked AS (SELECT id, status FROM bench_orders WHERE id = $1 FOR UPDATE),
    changed AS (
        UPDATE bench_orders o
        SET status = CASE WHEN locked.status = 'approved' THEN 'dispatched' ELSE 'approved' END,
            version = o.version + 1
        FROM locked WHERE o.id = locked.id
        RETURNING o.id, o.status, o.version
    )
    INSERT INTO bench_events (order_id, to_status) SELECT id, status FROM changed RETURNING order_id
"""

pool: asyncpg.Pool | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(os.environ["RAW_DSN"], min_size=4, max_size=int(os.environ.get("RAW_POOL", "8")))
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


def _answer(found: bool) -> Response:
    return Response(b'{"ok":true}' if found else b'{"ok":false}', media_type="application/json",
                    status_code=200 if found else 404)  # fmt: skip


@app.post("/transition/{order_id}")
async def transition(order_id: int) -> Response:
    assert pool is not None
    async with pool.acquire() as connection, connection.transaction():
        if await connection.fetchrow(LOCK, order_id) is None:
            return _answer(False)
        status = await connection.fetchval(UPDATE, order_id)
        await connection.execute(EVENT, order_id, status)
    return _answer(True)


@app.post("/transition-cte/{order_id}")
async def transition_in_one_statement(order_id: int) -> Response:
    assert pool is not None
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(ONE_STATEMENT, order_id)
    return _answer(row is not None)
