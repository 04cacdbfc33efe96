"""Outbox and delivery: rows written with the transition, delivered over real HTTP to a stand-in WeChat."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain import Status
from app.models import Order, OutboxMessage, User
from app.services.delivery import Channel, LogChannel, Recipient, WechatSubscribeChannel, deliver_due
from app.worker import run_worker
from tests.wechat_standin import StandInWechat
from tests.world import World

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def channels(wechat_server: str) -> Any:
    async with httpx.AsyncClient() as http:
        wechat = WechatSubscribeChannel(http, wechat_server, "wx-app", "wx-secret", "tmpl-1")
        yield [wechat, LogChannel()]


async def give_openid(sessionmaker: Sessions, world: World, username: str, openid: str) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.id == world.users[username]).values(wechat_openid=openid))


async def outbox(sessionmaker: Sessions) -> list[OutboxMessage]:
    async with sessionmaker() as session:
        return list((await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def test_each_step_notifies_its_audience_in_the_same_transaction(world: World, sessionmaker: Sessions) -> None:
    order = await world.order_in(Status.COMPLETED)
    rows = [(m.topic, m.recipient_user_id) for m in await outbox(sessionmaker)]
    assert rows == [
        ("order.place", world.users["zhan11_admin"]),  # new order → the owning unit's admins
        ("order.grab", world.users["r1"]),  # taken → the resident
        ("order.complete", world.users["r1"]),  # done → resident
    ]
    assert all(m.order_id == order["id"] and m.status == "pending" for m in await outbox(sessionmaker))


async def test_dispatch_to_a_team_notifies_each_member_and_escalation_the_parent(
    world: World, sessionmaker: Sessions
) -> None:
    order = await world.order_in(Status.APPROVED)
    await world.ok("zhan11_admin", order["id"], "dispatch", {"team_id": world.teams["team11"]})
    await world.ok("zhan11_admin", order["id"], "withdraw")
    await world.ok("zhan11_admin", order["id"], "escalate", {"reason": "需要所里协调"})
    rows = [(m.topic, m.recipient_user_id) for m in await outbox(sessionmaker)][1:]
    team = sorted([world.users["v11a"], world.users["v11b"]])
    assert rows == [
        *[("order.dispatch", u) for u in team],
        *[("order.withdraw", u) for u in team],
        ("order.escalate", world.users["suo1_admin"]),
    ]


async def test_wechat_gets_one_message_per_row_and_others_fall_back_to_the_log(
    world: World, sessionmaker: Sessions, channels: list[Channel]
) -> None:
    await give_openid(sessionmaker, world, "r1", "openid-r1")
    order = await world.order_in(Status.COMPLETED)
    stats = await deliver_due(sessionmaker, channels)
    assert (stats.sent, stats.retried, stats.failed) == (3, 0, 0)
    assert [s["touser"] for s in StandInWechat.sends] == ["openid-r1", "openid-r1"]
    assert StandInWechat.sends[0]["data"]["character_string1"]["value"] == order["code"]
    assert StandInWechat.token_calls == 1  # the token is cached
    channels_used = {(m.topic, m.channel) for m in await outbox(sessionmaker)}
    assert channels_used == {("order.place", "log"), ("order.grab", "wechat"), ("order.complete", "wechat")}
    assert await deliver_due(sessionmaker, channels) == type(stats)()  # nothing left to send


async def test_failing_twice_then_succeeding_delivers_exactly_once(
    world: World, sessionmaker: Sessions, channels: list[Channel]
) -> None:
    await give_openid(sessionmaker, world, "r1", "openid-r1")
    await world.order_in(Status.ACCEPTED)
    StandInWechat.fail_next = 2
    now = datetime.now(UTC)
    first = await deliver_due(sessionmaker, channels, now=now)
    assert (first.sent, first.retried) == (1, 1)  # the admin's (log) went; r1's failed
    assert (await deliver_due(sessionmaker, channels, now=now)).sent == 0  # backoff: not due yet
    second = await deliver_due(sessionmaker, channels, now=now + timedelta(seconds=6))
    assert second.retried == 1
    third = await deliver_due(sessionmaker, channels, now=now + timedelta(seconds=20))
    assert third.sent == 1
    assert StandInWechat.attempts == 3 and len(StandInWechat.sends) == 1
    message = next(m for m in await outbox(sessionmaker) if m.recipient_user_id == world.users["r1"])
    assert (message.status, message.attempts, message.channel) == ("sent", 3, "wechat")
    await deliver_due(sessionmaker, channels, now=now + timedelta(hours=2))
    assert len(StandInWechat.sends) == 1


async def test_transitions_commit_while_wechat_is_down(world: World, sessionmaker: Sessions) -> None:
    await give_openid(sessionmaker, world, "r1", "openid-r1")
    order = await world.order_in(Status.COMPLETED)
    rated = await world.ok("r1", order["id"], "rate", {"stars": 4})
    assert rated["status"] == "rated"
    async with httpx.AsyncClient() as http:
        down: list[Channel] = [WechatSubscribeChannel(http, "http://127.0.0.1:9", "a", "b", "t"), LogChannel()]
        stats = await deliver_due(sessionmaker, down)
    assert stats.retried == 2  # r1's two messages wait for WeChat; nothing was rolled back
    r1_rows = [m for m in await outbox(sessionmaker) if m.recipient_user_id == world.users["r1"]]
    assert all(m.status == "pending" and m.last_error for m in r1_rows)


async def test_expired_token_is_refreshed_once(world: World, sessionmaker: Sessions, channels: list[Channel]) -> None:
    await give_openid(sessionmaker, world, "r1", "openid-r1")
    await world.order_in(Status.ACCEPTED)
    StandInWechat.expire_token_once = True
    assert (await deliver_due(sessionmaker, channels)).sent == 2
    assert StandInWechat.token_calls == 2
    assert StandInWechat.sends[0]["token"] == "token-2"


async def test_no_consent_falls_back_to_the_next_channel(
    world: World, sessionmaker: Sessions, channels: list[Channel]
) -> None:
    await give_openid(sessionmaker, world, "r1", "openid-refused")
    await world.order_in(Status.ACCEPTED)
    assert (await deliver_due(sessionmaker, channels)).sent == 2
    assert StandInWechat.sends == []
    assert {m.channel for m in await outbox(sessionmaker)} == {"log"}


async def test_concurrent_senders_never_send_a_row_twice(
    world: World, sessionmaker: Sessions, channels: list[Channel]
) -> None:
    await give_openid(sessionmaker, world, "r1", "openid-r1")
    for _ in range(10):
        await world.order_in(Status.COMPLETED)  # 20 rows for r1 (grab, complete), 10 for the admin
    results = await asyncio.gather(*(deliver_due(sessionmaker, channels, batch=3) for _ in range(3)))
    while (more := await deliver_due(sessionmaker, channels, batch=3)).sent:
        results.append(more)
    assert sum(r.sent for r in results) == 30
    assert len(StandInWechat.sends) == 20
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).where(OutboxMessage.status != "sent")) == 0


async def test_worker_loop_sweeps_and_sends_until_stopped(
    world: World, app: FastAPI, sessionmaker: Sessions, channels: list[Channel]
) -> None:
    await give_openid(sessionmaker, world, "r1", "openid-r1")
    order = await world.order_in(Status.POOLED)
    async with sessionmaker() as session, session.begin():
        past = datetime.now(UTC) - timedelta(minutes=1)
        await session.execute(update(Order).where(Order.id == order["id"]).values(deadline_at=past))
    settings = app.state.settings.model_copy(update={"worker_interval_seconds": 0.05})
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(sessionmaker, settings, httpx.AsyncClient(), stop, channels))
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            rows = await outbox(sessionmaker)
            if any(m.topic == "order.expire" and m.status == "sent" for m in rows):
                break
        else:
            pytest.fail("the worker neither expired the order nor sent its notification")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
    assert (await world.client.get(f"/orders/{order['id']}", headers=world.h("r1"))).json()["status"] == "approved"
    assert task.done() and task.exception() is None


async def test_instances_share_one_token_and_force_a_refresh_only_for_the_current_one(wechat_server: str) -> None:
    """Two service instances (two channels, each with its own cache) sending alternately: both use the
    one stable token, fetched once each, never voiding the other's. When WeChat refuses the token both
    hold, the first to notice forces a new one and the other, refused too, fetches it without forcing
    again."""
    message = OutboxMessage(topic="order.grab", order_id=1, recipient_user_id=1, payload={"status": "accepted"})
    recipient = Recipient(user_id=1, wechat_openid="openid-r1")
    async with httpx.AsyncClient() as http:
        instances = [WechatSubscribeChannel(http, wechat_server, "wx-app", "wx-secret", "tmpl-1") for _ in range(2)]
        for i in range(10):
            assert await instances[i % 2].send(recipient, message)
        assert StandInWechat.token_calls == 2 and StandInWechat.forced_refreshes == 0
        assert {s["token"] for s in StandInWechat.sends} == {"token-1"}
        StandInWechat.expire_token_once = True  # WeChat voids token-1 behind both instances' backs
        assert await instances[0].send(recipient, message)
        assert await instances[1].send(recipient, message)
        assert [s["token"] for s in StandInWechat.sends[-2:]] == ["token-2", "token-2"]
        assert StandInWechat.forced_refreshes == 0  # a normal fetch gave a new one: nothing to force
        StandInWechat.refuse = "token-2"  # refused, yet still what a normal fetch returns
        assert await instances[0].send(recipient, message)
    assert StandInWechat.forced_refreshes == 1
    assert StandInWechat.sends[-1]["token"] == "token-3"
