"""Abuse limits: body size (413), login throttling (429), orders per resident per hour (429), tokens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import hash_password
from app.errors import RateLimited
from app.models import Order, RateLimitCounter, User
from app.services.throttle import LoginThrottle, count_attempt, prune_counters
from tests.helpers import count
from tests.world import World


async def test_oversized_bodies_are_413_and_change_nothing(world: World, app: FastAPI) -> None:
    limit = app.state.settings.max_body_bytes
    big = world.order_body(description="长" * limit)  # over the limit once encoded
    response = await world.client.post("/orders", json=big, headers=world.h("r1"))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    async def stream() -> Any:
        for _ in range(limit // 1000 + 2):
            yield b" " * 1000

    streamed = await world.client.post(
        "/orders", content=stream(), headers=world.h("r1") | {"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert await count(app, Order) == 0


@contextmanager
def throttle(app: FastAPI, per_account: int, per_address: int) -> Iterator[None]:
    """Swap in a strict login throttle for one test (the suite's own is lenient)."""
    lenient = app.state.login_throttle
    app.state.login_throttle = LoginThrottle(per_account=per_account, per_address=per_address)
    try:
        yield
    finally:
        app.state.login_throttle = lenient


async def test_login_is_throttled_per_account(
    world: World, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    with throttle(app, per_account=3, per_address=100):
        await _lock_out_an_account(world, sessionmaker)


async def _lock_out_an_account(world: World, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    hashed = await hash_password("right-password")
    async with sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.username == "zhan11_admin").values(password_hash=hashed))
    wrong = {"username": "zhan11_admin", "password": "guess"}
    codes = [(await world.client.post("/auth/login", json=wrong)).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    # Even the right password is refused while the account is locked: guessing gains nothing.
    right = {"username": "zhan11_admin", "password": "right-password"}
    locked = await world.client.post("/auth/login", json=right)
    assert locked.status_code == 429 and locked.json()["error"]["details"]["retry_after_seconds"] > 0
    # Other accounts are unaffected.
    assert (await world.client.post("/auth/login", json={"username": "r1", "password": "x"})).status_code == 401


async def test_login_is_throttled_per_address(app: FastAPI, world: World) -> None:
    with throttle(app, per_account=100, per_address=5):
        codes = [
            (await world.client.post("/auth/login", json={"username": f"user{i}", "password": "x"})).status_code
            for i in range(6)
        ]
    assert codes == [401] * 5 + [429]


async def test_a_window_opens_with_the_first_attempt_and_closes_after_its_seconds(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)

    async def attempt(at: timedelta) -> None:
        async with sessionmaker() as session, session.begin():
            await count_attempt(session, "k", limit=2, seconds=60, now=start + at)

    await attempt(timedelta(0))
    await attempt(timedelta(seconds=10))
    with pytest.raises(RateLimited) as refused:
        await attempt(timedelta(seconds=30))
    assert refused.value.details["retry_after_seconds"] == 30
    with pytest.raises(RateLimited):
        await attempt(timedelta(seconds=59))  # refused attempts do not move the window
    await attempt(timedelta(seconds=60))  # a new window
    await attempt(timedelta(seconds=61))
    with pytest.raises(RateLimited) as refused:
        await attempt(timedelta(seconds=62))
    assert refused.value.details["retry_after_seconds"] == 58


async def test_counters_whose_window_passed_are_pruned(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        await count_attempt(session, "spent", limit=5, seconds=60, now=now - timedelta(seconds=61))
        await count_attempt(session, "live", limit=5, seconds=60, now=now - timedelta(seconds=59))
    assert await prune_counters(sessionmaker, now=now) == 1
    async with sessionmaker() as session:
        assert list(await session.scalars(select(RateLimitCounter.key))) == ["live"]


async def test_resident_orders_per_hour(world: World, app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.state.settings, "resident_orders_per_hour", 3)
    codes = [(await world.client.post("/orders", json=world.order_body(), headers=world.h("r1"))).status_code
             for _ in range(4)]  # fmt: skip
    assert codes == [201, 201, 201, 429]
    assert await count(app, Order) == 3
    # Staff ordering on behalf of residents (hotline) is not limited this way.
    staff = await world.client.post("/orders", json=world.order_body(), headers=world.h("zhan11_admin"))
    assert staff.status_code == 201


async def test_refresh_and_password_change(world: World, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    hashed = await hash_password("old-password")
    async with sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.username == "v11a").values(password_hash=hashed))
    refreshed = await world.client.post("/auth/refresh", headers=world.h("v11a"))
    assert refreshed.status_code == 200
    new_token = refreshed.json()["access_token"]
    assert (await world.client.get("/me", headers={"Authorization": f"Bearer {new_token}"})).status_code == 200
    bad = await world.client.post(
        "/auth/password", json={"old_password": "nope", "new_password": "brand-new-pw"}, headers=world.h("v11a")
    )
    assert bad.status_code == 422
    changed = await world.client.post(
        "/auth/password", json={"old_password": "old-password", "new_password": "brand-new-pw"}, headers=world.h("v11a")
    )
    assert changed.status_code == 200
    for stale in (world.tokens["v11a"], new_token):
        assert (await world.client.get("/me", headers={"Authorization": f"Bearer {stale}"})).status_code == 401
    fresh = changed.json()["access_token"]
    assert (await world.client.get("/me", headers={"Authorization": f"Bearer {fresh}"})).status_code == 200
    login = await world.client.post("/auth/login", json={"username": "v11a", "password": "brand-new-pw"})
    assert login.status_code == 200
