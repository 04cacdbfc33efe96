"""Three ``sidan serve`` processes on one PostgreSQL, as behind a load balancer: idempotency, races,
limits, deadlines and notifications hold across them (nothing an instance keeps to itself matters)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain import Status
from app.models import Order, OrderEvent, OutboxMessage, User, WechatConsent
from tests.helpers import free_port
from tests.wechat_standin import StandInWechat
from tests.world import World

ROOT = Path(__file__).resolve().parent.parent
INSTANCES = 3


@pytest.fixture
def instances(database_url: str, wechat_server: str, tmp_path: Path) -> Iterator[list[str]]:
    """Base URLs of three ``sidan serve`` processes on the test database, each with its own worker
    (sweeper and notification sender every half second) and WeChat at the stand-in."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SIDAN_DATABASE_URL"}}
    env |= {
        "DATABASE_URL": database_url,
        "SIDAN_WORKER_INTERVAL_SECONDS": "0.5",
        "SIDAN_WECHAT_BASE_URL": wechat_server,
        "SIDAN_WECHAT_APPID": "wx-app",
        "SIDAN_WECHAT_SECRET": "wx-secret",
        "SIDAN_RESIDENT_ORDERS_PER_HOUR": "10",
        "SIDAN_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    processes, urls = [], []
    try:
        for i in range(INSTANCES):
            port = free_port()
            log = (tmp_path / f"serve-{i}.log").open("wb")
            command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
            processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 90
        for process, url in zip(processes, urls, strict=True):
            while True:
                assert process.poll() is None, (tmp_path / "serve-0.log").read_text()
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "instances not ready in 90 s"
                time.sleep(0.2)
        yield [f"{url}/api/v1" for url in urls]
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


async def test_three_instances_share_every_promise(
    world: World, instances: list[str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():  # r1 hears through WeChat, everyone else the log
        await session.execute(update(User).where(User.id == world.users["r1"]).values(wechat_openid="openid-r1"))
        # r1 accepted the subscription often enough (one message per consent; app.services.consents)
        session.add(WechatConsent(user_id=world.users["r1"], template_id="sidan-order-status", remaining=100))
    async with httpx.AsyncClient(timeout=30) as http:

        def post(i: int, path: str, user: str, body: dict[str, Any], **headers: str) -> Awaitable[httpx.Response]:
            return http.post(f"{instances[i % INSTANCES]}{path}", json=body, headers=world.h(user) | headers)

        # An action retried with one Idempotency-Key, through every instance at once: applied once.
        order = await world.place("r1")
        key = {"Idempotency-Key": "approve-across-instances"}
        answers = await asyncio.gather(
            *(post(i, f"/orders/{order['id']}/approve", "zhan11_admin", {}, **key) for i in range(6))
        )
        assert {a.status_code for a in answers} == {200} and len({a.text for a in answers}) == 1

        # Grabs of one pooled order by every 站11 volunteer through all three: one winner.
        pooled = await world.order_in(Status.POOLED)
        grabs = await asyncio.gather(
            *(post(i, f"/orders/{pooled['id']}/grab", v, {}) for i, v in enumerate(["v11a", "v11b"] * 3))
        )
        assert sorted(g.status_code for g in grabs) == [200, 409, 409, 409, 409, 409]

        # A resident's hourly limit (10), counted across the instances.
        already = await _placed_by(sessionmaker, world.users["r2"])
        placing = await asyncio.gather(*(post(i, "/orders", "r2", world.order_body()) for i in range(12)))
        assert sorted(p.status_code for p in placing).count(201) == 10 - already
        assert {p.status_code for p in placing} <= {201, 429}

    # Deadlines passed on five dispatched orders: the three workers expire each exactly once.
    due = [(await world.order_in(Status.DISPATCHED, resident="r3", unit="zhan21"))["id"] for _ in range(5)]
    async with sessionmaker() as session, session.begin():
        past = datetime.now(UTC) - timedelta(minutes=1)
        await session.execute(update(Order).where(Order.id.in_(due)).values(deadline_at=past))
    await _until(sessionmaker, lambda counts: counts[0] == len(due) and counts[1] == 0)
    async with sessionmaker() as session:
        expiries = dict(
            (
                await session.execute(
                    select(OrderEvent.order_id, func.count())
                    .where(OrderEvent.action == "expire", OrderEvent.order_id.in_(due))
                    .group_by(OrderEvent.order_id)
                )
            ).all()
        )
        to_r1 = await session.scalar(
            select(func.count()).where(
                OutboxMessage.recipient_user_id == world.users["r1"], OutboxMessage.channel == "wechat"
            )
        )
    assert expiries == dict.fromkeys(due, 1)
    # Every notification to r1 (who has WeChat) went out once, whichever worker took it.
    assert to_r1 and len(StandInWechat.sends) == to_r1


async def _placed_by(sessionmaker: async_sessionmaker[AsyncSession], user_id: int) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).where(Order.placed_by_id == user_id)) or 0)


async def _until(
    sessionmaker: async_sessionmaker[AsyncSession], done: Callable[[tuple[int, int]], bool], seconds: float = 30
) -> None:
    """Wait for the workers: ``done`` of (expire events, notifications still pending)."""
    expired = pending = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        async with sessionmaker() as session:
            expired = int(await session.scalar(select(func.count()).where(OrderEvent.action == "expire")) or 0)
            pending = int(await session.scalar(select(func.count()).where(OutboxMessage.status == "pending")) or 0)
        if done((expired, pending)):
            return
        await asyncio.sleep(0.3)
    pytest.fail(f"workers did not finish: {expired} expired, {pending} pending")
