"""常态化服务: standing orders run for simulated weeks (injected clock) under three concurrent sweepers on
separate engines, pause/resume/end, who may manage one, RRULE validation, the unit's dispatch policy
and keeping the same volunteer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import Actor
from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.domain import Role
from app.models import Order, OrderEvent, StandingOccurrence, StandingOrder, Volunteer
from app.services import standing
from app.services.standing_spawn import spawn_due
from tests.helpers import count
from tests.world import World

LOCAL = ZoneInfo("Asia/Shanghai")
SWEEPERS = 3


def next_tuesday_nine(days_ahead: int = 10) -> datetime:
    """A Tuesday 09:00 Asia/Shanghai at least ``days_ahead`` days from now."""
    day = (datetime.now(LOCAL) + timedelta(days=days_ahead)).date()
    while day.weekday() != 1:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 9, 0, tzinfo=LOCAL)


def standing_body(world: World, starts_at: datetime, rrule: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "item_id": world.items["center_lecture"],
        "description": "独居老人王奶奶: 每周二上午探访",
        "unit_id": world.units["zhan11"],
        "address": "城关镇幸福村 3 组 12 号",
        "contact_name": "王奶奶",
        "contact_phone": "13812345678",
        "rrule": rrule,
        "starts_at": starts_at.isoformat(),
    }
    return body | overrides


async def create(world: World, user: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await world.client.post("/standing-orders", json=body, headers=world.h(user))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


@pytest.fixture
async def sweepers(database_url: str, settings: Settings) -> AsyncIterator[list[async_sessionmaker[AsyncSession]]]:
    """Three sessionmakers on three engines of their own: three service instances' sweepers."""
    engines = [create_engine(database_url, settings) for _ in range(SWEEPERS)]
    try:
        yield [create_sessionmaker(engine) for engine in engines]
    finally:
        for engine in engines:
            await engine.dispose()


async def sweep_all(sweepers: list[async_sessionmaker[AsyncSession]], settings: Settings, now: datetime) -> int:
    counts = await asyncio.gather(*(spawn_due(maker, settings, now=now) for maker in sweepers))
    return sum(counts)


async def occurrence_orders(app: FastAPI, standing_id: int) -> list[Order]:
    async with app.state.sessionmaker() as session:
        return list(
            (
                await session.scalars(
                    select(Order)
                    .join(StandingOccurrence, StandingOccurrence.order_id == Order.id)
                    .where(StandingOccurrence.standing_order_id == standing_id)
                    .order_by(Order.preferred_start)
                )
            ).all()
        )


async def test_weeks_of_sweeping_by_three_instances_place_each_occurrence_once(
    world: World, app: FastAPI, settings: Settings, sweepers: list[async_sessionmaker[AsyncSession]]
) -> None:
    first = next_tuesday_nine()
    weekly = await create(world, "r1", standing_body(world, first, "FREQ=WEEKLY;BYDAY=TU;COUNT=6"))
    assert weekly["status"] == "active" and datetime.fromisoformat(weekly["next_occurrence_at"]) == first
    assert weekly["lead_minutes"] == settings.standing_order_lead_hours * 60
    # A second one whose six occurrences all fall due at once: three sweepers race for each.
    daily = await create(
        world, "r2", standing_body(world, first + timedelta(hours=2), "FREQ=DAILY;COUNT=6", lead_hours=24 * 7)
    )
    expected = [first + timedelta(weeks=i) for i in range(6)]

    clock, placed = datetime.now(UTC), 0
    while clock < expected[-1] + timedelta(days=2):
        placed += await sweep_all(sweepers, settings, clock)
        clock += timedelta(hours=6)
    assert placed == 12

    orders = await occurrence_orders(app, weekly["id"])
    assert [o.preferred_start for o in orders] == expected
    for order, at in zip(orders, expected, strict=True):
        assert at - timedelta(hours=24) <= order.created_at < at  # spawned within the lead time
        assert order.preferred_end == at + timedelta(minutes=60)
        assert order.status == "submitted" and order.resident_id == world.users["r1"]
    assert len(await occurrence_orders(app, daily["id"])) == 6
    async with app.state.sessionmaker() as session:
        slots = await session.scalar(
            select(func.count()).select_from(StandingOccurrence).where(StandingOccurrence.order_id.is_not(None))
        )
        statuses = set((await session.scalars(select(StandingOrder.status))).all())
    assert slots == 12 and statuses == {"finished"}
    assert await sweep_all(sweepers, settings, clock + timedelta(weeks=10)) == 0

    # Each occurrence is an ordinary order: the resident's list, its own timeline naming the standing order.
    mine = await world.client.get("/orders/mine", headers=world.h("r1"))
    assert {o["id"] for o in mine.json()["items"]} >= {o.id for o in orders}
    events = (await world.client.get(f"/orders/{orders[0].id}/events", headers=world.h("r1"))).json()
    assert events[0]["action"] == "place" and events[0]["payload"]["standing_order_id"] == weekly["id"]
    listed = (await world.client.get(f"/standing-orders/{weekly['id']}/occurrences", headers=world.h("r1"))).json()
    assert [o["order_id"] for o in listed] == [o.id for o in orders]


async def test_the_unique_slot_stops_a_second_order_for_one_occurrence(
    world: World, app: FastAPI, settings: Settings
) -> None:
    """Even a sweeper that gets past the row lock (its cursor set back, as by a stale resume) places
    nothing for an occurrence already placed: the slot is claimed in the order's own transaction."""
    first = next_tuesday_nine()
    weekly = await create(world, "r1", standing_body(world, first, "FREQ=WEEKLY;BYDAY=TU;COUNT=3"))
    assert await spawn_due(app.state.sessionmaker, settings, now=first - timedelta(hours=1)) == 1
    async with app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(StandingOrder)
            .where(StandingOrder.id == weekly["id"])
            .values(next_occurrence_at=first, next_spawn_at=first - timedelta(hours=24))
        )
    assert await spawn_due(app.state.sessionmaker, settings, now=first - timedelta(minutes=30)) == 0
    assert len(await occurrence_orders(app, weekly["id"])) == 1
    async with app.state.sessionmaker() as session:
        cursor = await session.scalar(select(StandingOrder.next_occurrence_at).where(StandingOrder.id == weekly["id"]))
    assert cursor == first + timedelta(weeks=1)  # and the schedule goes on


async def test_pause_stops_spawning_resume_skips_what_was_missed_end_is_forever(
    world: World, app: FastAPI, settings: Settings, sweepers: list[async_sessionmaker[AsyncSession]]
) -> None:
    first = next_tuesday_nine()
    daily = await create(world, "r1", standing_body(world, first, "FREQ=DAILY;COUNT=10", lead_hours=2))
    sid = daily["id"]
    assert await sweep_all(sweepers, settings, first - timedelta(hours=1)) == 1

    paused = await world.client.post(f"/standing-orders/{sid}/pause", json={"reason": "住院"}, headers=world.h("r1"))
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    for day in range(1, 4):
        assert await sweep_all(sweepers, settings, first + timedelta(days=day)) == 0
    again = await world.client.post(f"/standing-orders/{sid}/pause", headers=world.h("r1"))
    assert again.status_code == 409 and again.json()["error"]["details"]["status"] == "paused"

    # Resumed on day 3 at noon: the next occurrence is day 4; days 1–3 are not made up.
    resume_at = first + timedelta(days=3, hours=3)
    async with app.state.sessionmaker() as session:
        resumed = await standing.change_status(session, _actor_r1(world), sid, "resume", None, now=resume_at)
    assert resumed.status == "active" and resumed.next_occurrence_at == first + timedelta(days=4)
    assert await sweep_all(sweepers, settings, first + timedelta(days=4, hours=-1)) == 1
    starts = [o.preferred_start for o in await occurrence_orders(app, sid)]
    assert starts == [first, first + timedelta(days=4)]

    ended = await world.client.post(f"/standing-orders/{sid}/end", json={"reason": "搬走了"}, headers=world.h("r1"))
    assert ended.status_code == 200 and ended.json()["status"] == "ended"
    assert ended.json()["next_occurrence_at"] is None
    assert await sweep_all(sweepers, settings, first + timedelta(days=30)) == 0
    for move in ("resume", "pause", "end"):
        refused = await world.client.post(f"/standing-orders/{sid}/{move}", headers=world.h("r1"))
        assert refused.status_code == 409, move
    assert len(await occurrence_orders(app, sid)) == 2


def _actor_r1(world: World) -> Actor:
    return Actor(
        user_id=world.users["r1"], role=Role.RESIDENT, username="r1", unit_id=world.units["zhan11"], unit_path=None
    )


async def test_only_the_resident_and_admins_in_scope_manage_a_standing_order(world: World, app: FastAPI) -> None:
    sid = (await create(world, "r1", standing_body(world, next_tuesday_nine(), "FREQ=WEEKLY;COUNT=4")))["id"]
    for user in ("r2", "r3", "suo2_admin", "zhan12_admin"):
        assert (await world.client.get(f"/standing-orders/{sid}", headers=world.h(user))).status_code == 404, user
        for move in ("pause", "end"):
            response = await world.client.post(f"/standing-orders/{sid}/{move}", headers=world.h(user))
            assert response.status_code == 404, (user, move)
        listed = await world.client.get("/standing-orders", headers=world.h(user))
        assert sid not in {s["id"] for s in listed.json()}
    for path in (f"/standing-orders/{sid}", "/standing-orders"):  # volunteers: never
        assert (await world.client.get(path, headers=world.h("v11a"))).status_code == 403
    assert (await world.client.post(f"/standing-orders/{sid}/pause", headers=world.h("v11a"))).status_code == 403
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(StandingOrder.status).where(StandingOrder.id == sid)) == "active"
    # A volunteer does not set standing orders up; a resident only for themself.
    body = standing_body(world, next_tuesday_nine(), "FREQ=WEEKLY;COUNT=4")
    assert (await world.client.post("/standing-orders", json=body, headers=world.h("v11a"))).status_code == 403
    for_other = body | {"resident_id": world.users["r2"]}
    assert (await world.client.post("/standing-orders", json=for_other, headers=world.h("r1"))).status_code == 422
    # Out-of-scope admin cannot set one up at zhan11; the 站 admin can, for a resident.
    assert (
        await world.client.post("/standing-orders", json=for_other, headers=world.h("suo2_admin"))
    ).status_code == 422
    assert (await create(world, "zhan11_admin", for_other))["resident_id"] == world.users["r2"]
    # Admins above the unit manage it; the resident sees it.
    paused = await world.client.post(f"/standing-orders/{sid}/pause", headers=world.h("suo1_admin"))
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert (await world.client.post(f"/standing-orders/{sid}/resume", headers=world.h("r1"))).status_code == 200


@pytest.mark.parametrize(
    "rrule",
    [
        "",
        "garbage",
        "FREQ=WEEKLY",  # unbounded
        "FREQ=HOURLY;COUNT=5",
        "FREQ=MINUTELY;COUNT=5",
        "FREQ=DAILY;BYHOUR=9,15;COUNT=4",  # twice a day
        "FREQ=DAILY;COUNT=5000",
        "FREQ=WEEKLY;BYDAY=XX;COUNT=3",
        "FREQ=WEEKLY;COUNT=abc",
        "FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=30;COUNT=3",  # never: refused before dateutil searches to 9999
        "FREQ=MONTHLY;BYMONTHDAY=32;COUNT=3",
        "FREQ=WEEKLY;INTERVAL=0;COUNT=3",
        "FREQ=DAILY;UNTIL=20200101T000000",  # all in the past
        "FREQ=DAILY;UNTIL=20991231T000000Z",
        "DTSTART:20270101T090000\nRRULE:FREQ=DAILY;COUNT=3",
        "FREQ=DAILY;UNTIL=21001231T000000",  # more than 3 years
    ],
)
async def test_a_bad_rrule_is_422_and_creates_nothing(world: World, app: FastAPI, rrule: str) -> None:
    body = standing_body(world, next_tuesday_nine(), rrule)
    response = await world.client.post("/standing-orders", json=body, headers=world.h("r1"))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert await count(app, StandingOrder) == 0


async def test_occurrences_follow_the_units_policy_auto_approve_and_pool(
    world: World, app: FastAPI, settings: Settings
) -> None:
    policy = {"dispatch_mode": "auto_pool"}
    response = await world.client.put(
        f"/admin/units/{world.units['suo1']}/policy", json=policy, headers=world.h("suo1_admin")
    )
    assert response.status_code == 200, response.text
    first = next_tuesday_nine()
    body = standing_body(world, first, "FREQ=WEEKLY;COUNT=2", item_id=world.items["suo1_auto"])  # 免审
    sid = (await create(world, "r1", body))["id"]
    assert await spawn_due(app.state.sessionmaker, settings, now=first - timedelta(hours=2)) == 1
    [order] = await occurrence_orders(app, sid)
    assert order.status == "pooled"
    async with app.state.sessionmaker() as session:
        actions = list(
            await session.scalars(
                select(OrderEvent.action).where(OrderEvent.order_id == order.id).order_by(OrderEvent.id)
            )
        )
    assert actions == ["place", "approve", "publish"]


async def test_keep_volunteer_dispatches_to_the_previous_volunteer_while_they_are_free(
    world: World, app: FastAPI, settings: Settings
) -> None:
    policy = {"dispatch_mode": "auto_assign"}
    response = await world.client.put(
        f"/admin/units/{world.units['suo1']}/policy", json=policy, headers=world.h("suo1_admin")
    )
    assert response.status_code == 200, response.text
    first = next_tuesday_nine()
    body = standing_body(world, first, "FREQ=WEEKLY;COUNT=4", item_id=world.items["suo1_auto"], keep_volunteer=True)
    sid = (await create(world, "r1", body))["id"]
    sessionmaker = app.state.sessionmaker

    assert await spawn_due(sessionmaker, settings, now=first - timedelta(hours=2)) == 1
    [one] = await occurrence_orders(app, sid)
    assert one.status == "dispatched" and one.assignee_volunteer_id is not None
    keeper = one.assignee_volunteer_id
    name = next(n for n, v in world.volunteers.items() if v == keeper)
    await world.ok(name, one.id, "accept")  # now holding one order: no longer the top candidate

    second_at = first + timedelta(weeks=1)
    assert await spawn_due(sessionmaker, settings, now=second_at - timedelta(hours=2)) == 1
    two = (await occurrence_orders(app, sid))[1]
    assert two.status == "dispatched" and two.assignee_volunteer_id == keeper
    ranked = (await world.client.get(f"/admin/orders/{two.id}/candidates", headers=world.h("zhan11_admin"))).json()
    assert ranked["volunteers"][0]["id"] != keeper  # policy alone would have chosen someone else

    # The keeper at their limit: the next occurrence goes by the unit's policy.
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Volunteer).where(Volunteer.id == keeper).values(max_open_orders=2))
    third_at = first + timedelta(weeks=2)
    assert await spawn_due(sessionmaker, settings, now=third_at - timedelta(hours=2)) == 1
    three = (await occurrence_orders(app, sid))[2]
    assert three.status == "dispatched" and three.assignee_volunteer_id not in (None, keeper)

    # Each occurrence is served, timed and rated on its own.
    await world.ok(name, one.id, "check_in")
    await world.ok(name, one.id, "complete", world.complete_body(name))
    rated = await world.ok("r1", one.id, "rate", {"stars": 5})
    assert rated["status"] == "rated"
