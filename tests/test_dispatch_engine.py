"""The dispatch engine: deadlines as data, the sweeper (injected clock), auto-dispatch, policies."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain import Action, Status
from app.models import Order, OrderEvent, OrgUnit, Rating
from app.schemas.orders import EmptyBody
from app.services import applying, sweeper
from app.services.ordering import new_order_code
from tests.helpers import snapshot
from tests.world import World


def later(**delta: float) -> datetime:
    return datetime.now(UTC) + timedelta(**delta)


async def sweep(app: FastAPI, at: datetime) -> int:
    return await sweeper.sweep(app.state.sessionmaker, now=at)


async def get(world: World, order_id: int, user: str = "center_admin") -> dict[str, Any]:
    response = await world.client.get(f"/orders/{order_id}", headers=world.h(user))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def events(world: World, order_id: int) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = (
        await world.client.get(f"/orders/{order_id}/events", headers=world.h("center_admin"))
    ).json()
    return data


async def set_policy(world: World, admin: str, unit: str, **policy: Any) -> dict[str, Any]:
    response = await world.client.put(f"/admin/units/{world.units[unit]}/policy", json=policy, headers=world.h(admin))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_every_step_carries_its_deadline(world: World) -> None:
    order = await world.place("r1")
    assert order["deadline_at"] is not None  # review deadline
    approved = await world.ok("zhan11_admin", order["id"], "approve")
    assert approved["deadline_at"] is not None
    dispatched = await world.ok(
        "zhan11_admin", order["id"], "dispatch", {"volunteer_id": world.volunteers["v11a"], "accept_within_minutes": 30}
    )
    deadline = datetime.fromisoformat(dispatched["deadline_at"])
    assert timedelta(minutes=29) < deadline - datetime.now(UTC) <= timedelta(minutes=30)
    accepted = await world.ok("v11a", order["id"], "accept")
    assert accepted["deadline_at"] is None  # no preferred start given: nothing to be late for


async def test_accepted_order_is_due_at_the_preferred_start(world: World, app: FastAPI) -> None:
    start = "2030-12-05T09:00:00+08:00"
    order = await world.place("r1", preferred_start=start, preferred_end="2030-12-05T11:00:00+08:00")
    await world.ok("zhan11_admin", order["id"], "approve")
    await world.ok("zhan11_admin", order["id"], "dispatch", {"volunteer_id": world.volunteers["v11a"]})
    accepted = await world.ok("v11a", order["id"], "accept")
    assert datetime.fromisoformat(accepted["deadline_at"]) == datetime.fromisoformat(start)
    assert await sweep(app, datetime(2031, 1, 1, tzinfo=UTC)) == 0  # no timer acts on a held order


async def test_unreviewed_order_climbs_station_institute_center(world: World, app: FastAPI) -> None:
    order = await world.place("r1", unit="zhan11")
    assert await sweep(app, later(hours=23)) == 0
    assert await sweep(app, later(hours=25)) == 1
    at_suo = await get(world, order["id"])
    assert at_suo["unit_id"] == world.units["suo1"] and at_suo["status"] == "submitted"
    assert (await world.act("zhan11_admin", order["id"], "approve")).status_code == 404  # out of its hands now
    assert await sweep(app, later(hours=50)) == 1
    assert (await get(world, order["id"]))["unit_id"] == world.units["center"]
    assert await sweep(app, later(hours=80)) == 0  # the top: nobody to escalate to
    escalations = [e for e in await events(world, order["id"]) if e["action"] == "escalate"]
    assert [(e["actor_role"], e["actor_id"]) for e in escalations] == [("system", None)] * 2
    assert [e["payload"]["to_unit_id"] for e in escalations] == [world.units["suo1"], world.units["center"]]


async def test_policy_review_hours_are_inherited_and_overridable(world: World, app: FastAPI) -> None:
    await set_policy(world, "suo1_admin", "suo1", review_hours=2)
    inherited = (
        await world.client.get(f"/admin/units/{world.units['zhan11']}/policy", headers=world.h("zhan11_admin"))
    ).json()
    assert inherited["review_hours"] == 2 and inherited["inherited_from_unit_id"] == world.units["suo1"]
    order = await world.place("r1", unit="zhan11")
    assert await sweep(app, later(hours=3)) == 1
    assert (await get(world, order["id"]))["unit_id"] == world.units["suo1"]
    # A 站 admin cannot set the policy of the 所 above it.
    response = await world.client.put(
        f"/admin/units/{world.units['suo1']}/policy", json={"review_hours": 99}, headers=world.h("zhan11_admin")
    )
    assert response.status_code == 404


async def test_unaccepted_dispatch_expires_back_to_staff(world: World, app: FastAPI) -> None:
    order = await world.order_in(Status.DISPATCHED)
    assert await sweep(app, later(hours=3)) == 1
    expired = await get(world, order["id"])
    assert expired["status"] == "approved" and expired["assignee_volunteer_id"] is None
    last = (await events(world, order["id"]))[-1]
    assert last["action"] == "expire" and last["payload"]["previous_volunteer_id"] == world.volunteers["v11a"]


async def test_auto_assign_offers_the_next_candidate_after_expiry(world: World, app: FastAPI) -> None:
    await set_policy(world, "zhan11_admin", "zhan11", dispatch_mode="auto_assign", accept_minutes=30)
    order = await world.place("r1", unit="zhan11")
    first = await world.ok("zhan11_admin", order["id"], "approve")
    assert first["status"] == "dispatched"
    tried = [first["assignee_volunteer_id"]]
    while True:
        tried_before = len(tried)
        await sweep(app, later(minutes=31 * len(tried)))
        current = await get(world, order["id"])
        if current["status"] != "dispatched":
            break
        assert current["assignee_volunteer_id"] not in tried
        tried.append(current["assignee_volunteer_id"])
        assert len(tried) > tried_before
    # Everyone eligible at 站11 (v11a, v11b) was offered exactly once; then it waits for staff.
    assert sorted(tried) == sorted([world.volunteers["v11a"], world.volunteers["v11b"]])
    assert current["status"] == "approved"
    dispatches = [e for e in await events(world, order["id"]) if e["action"] == "dispatch"]
    assert all(e["actor_role"] == "system" for e in dispatches) and len(dispatches) == 2


async def test_auto_assign_after_decline_goes_to_someone_else(world: World) -> None:
    await set_policy(world, "zhan11_admin", "zhan11", dispatch_mode="auto_assign")
    order = await world.place("r1", unit="zhan11")
    first = await world.ok("zhan11_admin", order["id"], "approve")
    holder = next(name for name in ("v11a", "v11b") if world.volunteers[name] == first["assignee_volunteer_id"])
    declined = await world.ok(holder, order["id"], "decline", {"reason": "时间冲突"})
    assert declined["status"] == "dispatched"
    assert declined["assignee_volunteer_id"] not in (None, first["assignee_volunteer_id"])


async def test_auto_pool_publishes_on_approval(world: World) -> None:
    await set_policy(world, "suo1_admin", "suo1", dispatch_mode="auto_pool", pool_hours=6)
    order = await world.place("r1", unit="zhan12")
    pooled = await world.ok("zhan12_admin", order["id"], "approve")
    assert pooled["status"] == "pooled"
    assert (await world.client.get("/volunteer/tasks?kind=pool", headers=world.h("v12"))).json()["items"][0][
        "id"
    ] == order["id"]


async def test_auto_approve_item_skips_review(world: World) -> None:
    order = await world.place("r1", unit="zhan11", item_id=world.items["suo1_auto"])
    assert order["status"] == "approved"
    approve = (await events(world, order["id"]))[-1]
    assert approve["action"] == "approve" and approve["actor_role"] == "system"


async def test_unrated_order_closes_without_stars(world: World, app: FastAPI, sessionmaker: Any) -> None:
    order = await world.order_in(Status.COMPLETED)
    assert await sweep(app, later(days=6)) == 0
    assert await sweep(app, later(days=8)) == 1
    closed = await get(world, order["id"], "r1")
    assert closed["status"] == "closed"
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Rating)) == 0
    assert (await world.act("r1", order["id"], "rate", {"stars": 5})).status_code == 409


async def _due_orders(sessionmaker: async_sessionmaker[AsyncSession], world: World, n: int) -> list[int]:
    """``n`` pooled orders at 站11 whose pool deadline passed an hour ago, inserted in one statement."""
    past = datetime.now(UTC) - timedelta(hours=1)
    async with sessionmaker() as session, session.begin():
        path = await session.scalar(select(OrgUnit.path).where(OrgUnit.id == world.units["zhan11"]))
        rows = [
            {
                "code": new_order_code(past) + f"{i:05d}", "resident_id": world.users["r1"],
                "placed_by_id": world.users["r1"], "title": f"批量订单{i}", "unit_id": world.units["zhan11"],
                "unit_path": path, "address": "测试地址", "contact_name": "张三", "contact_phone": "13800000000",
                "channel": "miniprogram", "status": "pooled", "deadline_at": past, "created_at": past,
            }
            for i in range(n)
        ]  # fmt: skip
        ids = (await session.execute(insert(Order).returning(Order.id), rows)).scalars().all()
    return list(ids)


async def test_three_sweepers_fire_each_due_transition_exactly_once(
    world: World, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await _due_orders(sessionmaker, world, 500)
    now = datetime.now(UTC)
    counts = await asyncio.gather(*(sweeper.sweep(sessionmaker, now=now, batch=50) for _ in range(3)))
    assert sum(counts) == 500
    async with sessionmaker() as session:
        per_order = dict(
            (
                await session.execute(
                    select(OrderEvent.order_id, func.count())
                    .where(OrderEvent.action == "expire")
                    .group_by(OrderEvent.order_id)
                )
            ).all()
        )
        statuses = set((await session.execute(select(Order.status).where(Order.id.in_(ids)))).scalars())
    assert per_order == {order_id: 1 for order_id in ids}
    assert statuses == {"approved"}
    assert await sweeper.sweep(sessionmaker, now=now) == 0


async def test_a_crash_mid_sweep_loses_nothing(
    world: World, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _due_orders(sessionmaker, world, 30)
    real = applying.apply_as_system
    calls = 0

    async def crash_on_the_tenth(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 10:
            raise RuntimeError("process killed")
        return await real(*args, **kwargs)

    monkeypatch.setattr(sweeper, "apply_as_system", crash_on_the_tenth)
    with pytest.raises(RuntimeError):
        await sweeper.sweep(sessionmaker)
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).where(OrderEvent.action == "expire")) == 0
    monkeypatch.setattr(sweeper, "apply_as_system", real)
    assert await sweeper.sweep(sessionmaker) == len(ids)


async def test_a_sweeper_passes_over_a_row_another_holds_without_waiting(
    world: World, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """``SKIP LOCKED``: a due order locked by someone else (another sweeper's batch) is left to them; the
    sweeper fires the rest at once instead of waiting for the lock (5 s ``lock_timeout``)."""
    ids = await _due_orders(sessionmaker, world, 5)
    async with sessionmaker() as holder, holder.begin():
        await holder.execute(select(Order.id).where(Order.id == ids[0]).with_for_update())
        # Waiting for the lock would take the 5 s lock_timeout and then fail: 4 s is a bound, not a timing.
        fired = await asyncio.wait_for(sweeper.sweep(sessionmaker), timeout=4)
    assert fired == 4
    assert await sweeper.sweep(sessionmaker) == 1  # free again: now it is fired


async def test_a_timer_action_is_not_done_before_its_deadline(world: World, app: FastAPI) -> None:
    """``apply_as_system`` re-checks the deadline it reads: a sweeper whose list of due orders is out of
    date (the order moved on and has a new deadline) fires nothing."""
    order = await world.order_in(Status.DISPATCHED)
    before = await snapshot(app, order["id"])
    deadline = datetime.fromisoformat(order["deadline_at"])
    async with app.state.engine.connect() as connection:
        early = await applying.apply_as_system(
            connection, order["id"], Action.EXPIRE, EmptyBody(), deadline - timedelta(seconds=1)
        )
        assert early is None
        assert await snapshot(app, order["id"]) == before
        due = await applying.apply_as_system(connection, order["id"], Action.EXPIRE, EmptyBody(), deadline)
    assert due is not None and due.status == "approved"
