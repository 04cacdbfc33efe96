"""Limits hold under concurrency and across instances: requests sent at once, to one app or spread over
three apps on the same database (each with its own engine, like separate processes), get exactly the
limit through."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from http.server import ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import verify_password
from app.config import Settings
from app.main import create_app
from app.models import Order, RateLimitCounter
from app.services import accounts
from tests.helpers import count
from tests.test_auth import FakeWechat, set_password
from tests.world import World

Instances = Callable[..., Awaitable[list[FastAPI]]]


@pytest.fixture
async def instances(settings: Settings, database_url: str) -> AsyncIterator[Instances]:
    """``await instances(n, **limits)``: n more instances of the service on the test database, each with
    its own engine and pool, and with the given settings."""
    async with AsyncExitStack() as stack:

        async def start(n: int, **limits: Any) -> list[FastAPI]:
            apps = [create_app(settings.model_copy(update=limits), database_url=database_url) for _ in range(n)]
            for application in apps:
                await stack.enter_async_context(application.router.lifespan_context(application))
            return apps

        yield start


@pytest.fixture
def tried(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password checked by a login (the hash is verified only for attempts let through)."""
    checked: list[str] = []
    verify = verify_password

    async def counting(password_hash: str, password: str) -> bool:
        checked.append(password)
        return await verify(password_hash, password)

    monkeypatch.setattr(accounts, "verify_password", counting)
    return checked


async def _all_at_once(
    apps: list[FastAPI],
    n: int,
    request: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]],
    address: Callable[[int], str] = lambda _: "127.0.0.1",
) -> list[httpx.Response]:
    """``n`` requests sent together, taking turns over the instances; request i from ``address(i)``."""

    async def send(i: int) -> httpx.Response:
        transport = httpx.ASGITransport(app=apps[i % len(apps)], client=(address(i), 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
            return await request(client, i)

    return await asyncio.gather(*(send(i) for i in range(n)))


async def _send(application: FastAPI, method: str, url: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
        return await client.request(method, url, **kwargs)


def _retry_after(response: httpx.Response, most: int) -> int:
    assert response.json()["error"]["code"] == "rate_limited"
    seconds = int(response.headers["Retry-After"])
    assert 0 < seconds <= most
    assert response.json()["error"]["details"]["retry_after_seconds"] == seconds
    return seconds


async def _let_the_windows_pass(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """As if every login window had passed: each counter's window ends now."""
    async with sessionmaker() as session, session.begin():
        await session.execute(update(RateLimitCounter).values(expires_at=func.now()))


@pytest.mark.parametrize("n_instances", [1, 3])
async def test_concurrent_wrong_passwords_for_one_account_try_only_the_limit(
    world: World,
    sessionmaker: async_sessionmaker[AsyncSession],
    instances: Instances,
    tried: list[str],
    n_instances: int,
) -> None:
    apps = await instances(n_instances, login_failures_per_account=5, login_attempts_per_address=1_000)
    await set_password(sessionmaker, "zhan11_admin", "right-password")
    wrong = {"username": "zhan11_admin", "password": "guess"}

    # From as many addresses (a spread attack): only the account's limit stands in the way.
    responses = await _all_at_once(
        apps, 20, lambda client, _: client.post("/auth/login", json=wrong), address=lambda i: f"198.51.100.{i}"
    )

    assert sorted(r.status_code for r in responses) == [401] * 5 + [429] * 15
    assert len(tried) == 5
    for refused in (r for r in responses if r.status_code == 429):
        _retry_after(refused, most=900)
    # The right password is refused too, on every instance, until the window passes.
    right = {"username": "zhan11_admin", "password": "right-password"}
    for application in apps:
        _retry_after(await _send(application, "POST", "/auth/login", json=right), most=900)
    assert len(tried) == 5
    await _let_the_windows_pass(sessionmaker)
    assert (await _send(apps[-1], "POST", "/auth/login", json=right)).status_code == 200
    # A success forgets the failures: the next wrong password is tried, not refused.
    assert (await _send(apps[0], "POST", "/auth/login", json=wrong)).status_code == 401


@pytest.mark.parametrize("n_instances", [1, 3])
async def test_concurrent_logins_from_one_address_try_only_the_limit(
    world: World, instances: Instances, tried: list[str], n_instances: int
) -> None:
    apps = await instances(n_instances, login_failures_per_account=1_000, login_attempts_per_address=5)

    responses = await _all_at_once(
        apps, 20, lambda client, i: client.post("/auth/login", json={"username": f"user{i}", "password": "x"})
    )

    assert sorted(r.status_code for r in responses) == [401] * 5 + [429] * 15
    assert len(tried) == 5
    for refused in (r for r in responses if r.status_code == 429):
        _retry_after(refused, most=900)


@pytest.mark.parametrize("n_instances", [1, 3])
async def test_concurrent_orders_by_one_resident_create_only_the_hourly_limit(
    world: World, app: FastAPI, instances: Instances, n_instances: int
) -> None:
    apps = await instances(n_instances, resident_orders_per_hour=10)

    responses = await _all_at_once(
        apps, 25, lambda client, _: client.post("/orders", json=world.order_body(), headers=world.h("r1"))
    )

    assert sorted(r.status_code for r in responses) == [201] * 10 + [429] * 15, [r.text for r in responses]
    assert await count(app, Order) == 10
    for refused in (r for r in responses if r.status_code == 429):
        _retry_after(refused, most=3600)
    # Another resident's orders are theirs to place.
    other = await _send(apps[-1], "POST", "/orders", json=world.order_body(), headers=world.h("r2"))
    assert other.status_code == 201


@pytest.mark.parametrize("n_instances", [1, 3])
async def test_concurrent_password_changes_with_a_stolen_token_try_only_the_limit(
    world: World,
    sessionmaker: async_sessionmaker[AsyncSession],
    instances: Instances,
    tried: list[str],
    n_instances: int,
) -> None:
    """A token alone buys no unlimited guesses at the account's password: 20 password changes with wrong
    old passwords at once, over the instances, check only 5 (422), the rest 429, and then even the right
    old password waits for the window."""
    apps = await instances(n_instances, login_failures_per_account=5)
    await set_password(sessionmaker, "zhan11_admin", "right-password")
    wrong = {"old_password": "guess", "new_password": "a-new-password-1"}
    headers = world.h("zhan11_admin")
    responses = await _all_at_once(
        apps, 20, lambda client, _: client.post("/auth/password", json=wrong, headers=headers)
    )
    assert sorted(r.status_code for r in responses) == [422] * 5 + [429] * 15
    assert len(tried) == 5
    right = wrong | {"old_password": "right-password"}
    _retry_after(await _send(apps[0], "POST", "/auth/password", json=right, headers=headers), most=900)
    await _let_the_windows_pass(sessionmaker)
    assert (await _send(apps[-1], "POST", "/auth/password", json=right, headers=headers)).status_code == 200


@pytest.mark.parametrize("n_instances", [1, 3])
async def test_concurrent_wechat_logins_from_one_address_ask_wechat_only_the_limit(
    world: World, instances: Instances, n_instances: int
) -> None:
    """WeChat logins name no account: they count against the client address, shared with password
    logins. 20 at once from one address over the instances: 5 reach code2session, 15 are 429."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeWechat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeWechat.calls.clear()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        apps = await instances(n_instances, login_attempts_per_address=5, wechat_base_url=base)
        responses = await _all_at_once(
            apps,
            20,
            lambda client, i: client.post("/auth/wechat", json={"code": f"good-{i}"}),
            address=lambda _: "203.0.113.9",
        )
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(r.status_code for r in responses) == [200] * 5 + [429] * 15
    assert len(FakeWechat.calls) == 5
