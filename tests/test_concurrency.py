"""Concurrency promises, with real commits on separate connections."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import issue_token
from app.domain import Action, Role, Status
from app.models import (
    HoursEntry,
    Order,
    OrderEvent,
    OutboxMessage,
    PointsEntry,
    Rating,
    ServiceRecord,
    User,
    Volunteer,
    volunteer_categories,
)
from app.services import applying
from tests.world import World


async def add_volunteers(
    world: World, sessionmaker: async_sessionmaker[AsyncSession], n: int, unit: str = "zhan11"
) -> list[str]:
    """``n`` more active volunteers homed at ``unit``; returns their usernames (tokens in world)."""
    names = [f"grabber{i:02d}" for i in range(n)]
    async with sessionmaker() as session, session.begin():
        for i, name in enumerate(names):
            user = User(username=name, role=Role.VOLUNTEER.value, unit_id=world.units[unit], display_name=name)
            session.add(user)
            await session.flush()
            volunteer = Volunteer(
                user_id=user.id, real_name=name, phone=f"1590000{i:04d}", home_unit_id=world.units[unit]
            )
            session.add(volunteer)
            await session.flush()
            await session.execute(
                volunteer_categories.insert().values(volunteer_id=volunteer.id, category_id=world.categories["lecture"])
            )
            world.tokens[name] = issue_token(world.settings, user)
    return names


async def test_twenty_concurrent_grabs_have_exactly_one_winner(
    world: World, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    grabbers = await add_volunteers(world, sessionmaker, 20)
    order = await world.order_in(Status.POOLED)
    responses = await asyncio.gather(*(world.act(name, order["id"], "grab") for name in grabbers))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 19, codes
    winner = next(r.json() for r in responses if r.status_code == 200)
    for loser in (r for r in responses if r.status_code == 409):
        assert loser.json()["error"]["details"]["status"] == "accepted"
    async with sessionmaker() as session:
        grabs = (
            (
                await session.execute(
                    select(OrderEvent).where(OrderEvent.order_id == order["id"], OrderEvent.action == "grab")
                )
            )
            .scalars()
            .all()
        )
    assert len(grabs) == 1
    final = (await world.client.get(f"/orders/{order['id']}", headers=world.h("center_admin"))).json()
    assert final["assignee_volunteer_id"] == winner["assignee_volunteer_id"]
    assert final["version"] == order["version"] + 1


async def test_concurrent_dispatch_and_cancel_one_wins(world: World) -> None:
    order = await world.order_in(Status.APPROVED)
    dispatch, cancel = await asyncio.gather(
        world.act("zhan11_admin", order["id"], "dispatch", {"volunteer_id": world.volunteers["v11a"]}),
        world.act("r1", order["id"], "cancel", {"reason": "不需要了"}),
    )
    # Both orders of events are legal (cancel is allowed from dispatched), but neither is lost.
    final = (await world.client.get(f"/orders/{order['id']}", headers=world.h("r1"))).json()
    events = (await world.client.get(f"/orders/{order['id']}/events", headers=world.h("r1"))).json()
    succeeded = [r for r in (dispatch, cancel) if r.status_code == 200]
    assert final["version"] == order["version"] + len(succeeded)
    assert len(events) == 2 + len(succeeded)  # place, approve, then what succeeded
    assert final["status"] == "cancelled"


async def test_concurrent_conflicting_dispatches_one_wins(world: World) -> None:
    order = await world.order_in(Status.APPROVED)
    responses = await asyncio.gather(
        world.act("zhan11_admin", order["id"], "dispatch", {"volunteer_id": world.volunteers["v11a"]}),
        world.act("suo1_admin", order["id"], "dispatch", {"volunteer_id": world.volunteers["v11b"]}),
        world.act("center_admin", order["id"], "publish"),
    )
    assert sorted(r.status_code for r in responses) == [200, 409, 409]


async def test_if_match_refuses_a_stale_version(world: World) -> None:
    order = await world.place("r1")
    stale = {"If-Match": str(order["version"])}
    await world.ok("zhan11_admin", order["id"], "approve")
    response = await world.act("zhan11_admin", order["id"], "publish", headers=stale)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "version_mismatch"
    fresh = {"If-Match": str(order["version"] + 1)}
    assert (await world.act("zhan11_admin", order["id"], "publish", headers=fresh)).status_code == 200


async def _moving_on_before_each_write(
    monkeypatch: pytest.MonkeyPatch, sessionmaker: async_sessionmaker[AsyncSession], order_id: int, times: int
) -> list[int]:
    """Make another writer bump the order's version between the lockless read and its write, ``times``
    times; returns a list that grows by one per write attempted."""
    attempts: list[int] = []
    real = applying._write

    async def racing(*args: Any, **kwargs: Any) -> Any:
        attempts.append(1)
        if len(attempts) <= times:
            async with sessionmaker() as session, session.begin():
                await session.execute(update(Order).where(Order.id == order_id).values(version=Order.version + 1))
        return await real(*args, **kwargs)

    monkeypatch.setattr(applying, "_write", racing)
    return attempts


async def _dispatch_trail(sessionmaker: async_sessionmaker[AsyncSession], order_id: int) -> tuple[int, int]:
    async with sessionmaker() as session:
        events = await session.scalar(
            select(func.count()).where(OrderEvent.order_id == order_id, OrderEvent.action == "dispatch")
        )
        messages = await session.scalar(
            select(func.count()).where(OutboxMessage.order_id == order_id, OutboxMessage.topic == "order.dispatch")
        )
    return events or 0, messages or 0


async def test_a_lockless_write_that_lost_the_race_reads_again(
    world: World, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compare-and-set: the write of an order that moved on since it was read writes nothing; the
    request reads the new state and decides again."""
    order = await world.order_in(Status.APPROVED)
    attempts = await _moving_on_before_each_write(monkeypatch, sessionmaker, order["id"], times=1)
    body = {"volunteer_id": world.volunteers["v11a"]}
    done = await world.ok("zhan11_admin", order["id"], "dispatch", body)
    assert len(attempts) == 2
    assert done["status"] == "dispatched" and done["version"] == order["version"] + 2
    assert await _dispatch_trail(sessionmaker, order["id"]) == (1, 1)  # one event, one message to v11a


async def test_a_lockless_write_that_keeps_losing_gives_up_busy_and_writes_nothing(
    world: World, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    order = await world.order_in(Status.APPROVED)
    attempts = await _moving_on_before_each_write(monkeypatch, sessionmaker, order["id"], times=10)
    body = {"volunteer_id": world.volunteers["v11a"]}
    response = await world.act("zhan11_admin", order["id"], "dispatch", body)
    assert response.status_code == 409 and response.json()["error"]["code"] == "busy"
    assert response.headers["Retry-After"] == "1"
    assert len(attempts) == applying.CAS_ATTEMPTS
    assert await _dispatch_trail(sessionmaker, order["id"]) == (0, 0)
    final = (await world.client.get(f"/orders/{order['id']}", headers=world.h("zhan11_admin"))).json()
    assert final["status"] == "approved" and final["assignee_volunteer_id"] is None


# ---- races that really race: every contender has read before anyone writes -----------------------


def _all_read_before_any_writes(monkeypatch: pytest.MonkeyPatch, contenders: int) -> list[int]:
    """Hold every ``apply`` between its read and its write until ``contenders`` of them have read: the
    writes then race on separate connections, each decided on the same version. Returns a list that
    grows by one per write attempted. Retries after a lost race pass straight through."""
    barrier = asyncio.Barrier(contenders)
    attempts: list[int] = []
    real = applying._write

    async def racing(*args: Any, **kwargs: Any) -> Any:
        attempts.append(1)
        if len(attempts) <= contenders:
            await asyncio.wait_for(barrier.wait(), timeout=10)
        return await real(*args, **kwargs)

    monkeypatch.setattr(applying, "_write", racing)
    return attempts


async def test_twenty_grabs_that_all_read_the_pooled_order_have_one_winner(
    world: World, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of 20 volunteers reads the order in the pool and decides to take it; only the version check
    of the write stops 19 of them (without it, all 20 would write: 20 grab events)."""
    grabbers = await add_volunteers(world, sessionmaker, 20)
    order = await world.order_in(Status.POOLED)
    attempts = _all_read_before_any_writes(monkeypatch, 20)
    responses = await asyncio.gather(*(world.act(name, order["id"], "grab") for name in grabbers))
    assert len(attempts) == 20  # every one of them decided to take it and wrote
    assert sorted(r.status_code for r in responses) == [200] + [409] * 19
    async with sessionmaker() as session:
        grabs = await session.scalar(
            select(func.count()).where(OrderEvent.order_id == order["id"], OrderEvent.action == "grab")
        )
        accepted = await session.scalar(select(func.sum(Volunteer.accepted_count)))
    assert grabs == 1
    assert accepted == 1  # the reliability counter moved once too


def _both_read_then_writes_in_order(monkeypatch: pytest.MonkeyPatch, first: Action) -> None:
    """Hold two ``apply`` calls between their read and their write until both have read (decided on the
    same version), then let ``first``'s write finish before the other's is sent. Which of two racing
    writes lands first is up to timing: each order is tested on purpose. Retries pass straight through."""
    barrier = asyncio.Barrier(2)
    first_done = asyncio.Event()
    held: list[int] = []
    real = applying._write

    async def ordered(*args: Any, **kwargs: Any) -> Any:
        spec = args[1]
        if len(held) < 2:
            held.append(1)
            await asyncio.wait_for(barrier.wait(), timeout=10)
            if spec.action is not first:
                await asyncio.wait_for(first_done.wait(), timeout=10)
        try:
            return await real(*args, **kwargs)
        finally:
            if spec.action is first:
                first_done.set()

    monkeypatch.setattr(applying, "_write", ordered)


@pytest.mark.parametrize("first", [Action.REOPEN, Action.RATE])
async def test_rate_racing_reopen_no_update_lost_and_no_rating_without_the_order(
    world: World, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch, first: Action
) -> None:
    """An action whose effect writes another table (rate: the rating) against one that takes the order
    on elsewhere (reopen by staff), both legal and both decided on the same version. The first write wins;
    the other finds the version moved, reads again and decides on the new state: a rate after a reopen is
    refused (409, no rating written); a reopen after a rate is still legal and reopens the rated order."""
    order = await world.order_in(Status.COMPLETED)
    _both_read_then_writes_in_order(monkeypatch, first)
    rated, reopened = await asyncio.gather(
        world.act("r1", order["id"], "rate", {"stars": 5}),
        world.act("zhan11_admin", order["id"], "reopen", {"reason": "回访发现未完成"}),
    )
    async with sessionmaker() as session:
        ratings = await session.scalar(select(func.count()).select_from(Rating))
        status = await session.scalar(select(Order.status).where(Order.id == order["id"]))
        events = await session.scalar(select(func.count()).where(OrderEvent.order_id == order["id"]))
    assert status == "approved" and reopened.status_code == 200, reopened.text
    if first is Action.REOPEN:
        assert rated.status_code == 409 and rated.json()["error"]["details"]["status"] == "approved"
        assert ratings == 0
        assert events == order["version"] + 1
    else:
        assert rated.status_code == 200 and rated.json()["status"] == "rated"
        assert ratings == 1
        assert events == order["version"] + 2


async def test_two_completes_of_one_order_credit_hours_once(
    world: World, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    order = await world.order_in(Status.IN_SERVICE)
    _all_read_before_any_writes(monkeypatch, 2)
    volunteer = world.volunteers["v11a"]
    complete = {"summary": "陪护", "served_count": 1, "participants": [{"volunteer_id": volunteer, "hours": "0.5"}]}
    responses = await asyncio.gather(*(world.act("v11a", order["id"], "complete", complete) for _ in range(2)))
    assert sorted(r.status_code for r in responses) == [200, 409]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ServiceRecord)) == 1
        assert await session.scalar(select(func.count()).select_from(HoursEntry)) == 1
        assert await session.scalar(select(func.count()).select_from(PointsEntry)) == 1


async def test_two_grabs_by_one_volunteer_never_pass_their_limit(
    world: World, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """v11a may hold one order. Two pooled orders, grabbed by v11a at once, each grab having read "none
    in hand" before either wrote: the database's own check lets one through (409 for the other, nothing
    written for it). Without it both would be taken."""
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Volunteer).where(Volunteer.id == world.volunteers["v11a"]).values(max_open_orders=1)
        )
    first, second = await world.order_in(Status.POOLED), await world.order_in(Status.POOLED)
    _all_read_before_any_writes(monkeypatch, 2)
    responses = await asyncio.gather(world.act("v11a", first["id"], "grab"), world.act("v11a", second["id"], "grab"))
    assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
    refused = next(r for r in responses if r.status_code == 409)
    assert "上限" in refused.json()["error"]["message"]
    async with sessionmaker() as session:
        held = await session.scalar(
            select(func.count()).where(
                Order.assignee_volunteer_id == world.volunteers["v11a"], Order.status == "accepted"
            )
        )
        grabs = await session.scalar(select(func.count()).where(OrderEvent.action == "grab"))
    assert held == 1 and grabs == 1
