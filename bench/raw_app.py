"""The baseline: the same single transition SQL behind a minimal FastAPI endpoint on raw asyncpg.

RAW_DSN=postgresql://… uvicorn bench.raw_app:app --port 8099
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI
from fastapi.responses import Response

TRANSITION = """
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


@app.post("/transition/{order_id}")
async def transition(order_id: int) -> Response:
    assert pool is not None
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(TRANSITION, order_id)
    return Response(b'{"ok":true}' if row else b'{"ok":false}', media_type="application/json",
                    status_code=200 if row else 404)  # fmt: skip
