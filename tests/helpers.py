"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from asyncpg.transaction import Transaction
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import func, make_url, select

from app.auth import SYSTEM_ACTOR
from app.domain import Action
from app.models import Order, OrderEvent
from app.schemas.orders import EmptyBody, OrderOut
from app.services.applying import apply_as_system
from app.services.presenters import present_order


async def system_act(app: FastAPI, order_id: int, action: Action, body: BaseModel | None = None) -> OrderOut:
    """Fire a system action through the same ``apply`` the API uses, as if its deadline had passed."""
    async with app.state.engine.connect() as connection:
        order = await apply_as_system(
            connection, order_id, action, body or EmptyBody(), now=datetime.now(UTC) + timedelta(days=3650)
        )
    assert order is not None, f"{action.value} was not due"
    return present_order(order, SYSTEM_ACTOR)


async def snapshot(app: FastAPI, order_id: int) -> dict[str, Any]:
    """The order row and its event count, to prove a refused request changed nothing."""
    async with app.state.sessionmaker() as session:
        order = await session.get(Order, order_id)
        assert order is not None
        events = await session.scalar(select(func.count()).where(OrderEvent.order_id == order_id))
        columns = {c.key: getattr(order, c.key) for c in Order.__table__.columns}
        return columns | {"events": events}


async def count(app: FastAPI, model: Any) -> int:
    async with app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def lock_waiters(connection: asyncpg.Connection, n: int) -> None:
    """Until ``n`` of the service's connections wait for a lock."""
    for _ in range(200):
        await connection.execute("SELECT pg_stat_clear_snapshot()")  # fresh figures inside its transaction
        waiting = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'sidan' AND wait_event_type = 'Lock' AND datname = current_database()"
        )
        if waiting >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {n} requests waited for a lock")


@asynccontextmanager
async def lock_holder(database_url: str) -> AsyncIterator[tuple[asyncpg.Connection, Transaction]]:
    """A connection of the test's own with a transaction begun, to hold row locks the service's requests
    then queue behind (``lock_waiters``); closed at the end, rolling back whatever it left open."""
    holder = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False))
    try:
        transaction = holder.transaction()
        await transaction.start()
        yield holder, transaction
    finally:
        await holder.close()
