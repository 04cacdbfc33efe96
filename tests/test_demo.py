"""The demo county: what ``sidan serve --demo`` loads, and that a demo user can act on it at once."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.demo import DEMO_PASSWORD, seed_demo
from app.domain import Role, Status
from app.models import MenuCategory, MenuItem, Order, OrderEvent, OrgUnit, Team, User, Volunteer


async def _counts(session: AsyncSession) -> dict[str, int]:
    tables: dict[str, Any] = {
        "units": OrgUnit, "categories": MenuCategory, "items": MenuItem, "users": User,
        "volunteers": Volunteer, "teams": Team, "orders": Order, "events": OrderEvent,
    }  # fmt: skip
    return {name: await session.scalar(select(func.count()).select_from(model)) or 0 for name, model in tables.items()}


async def _login(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await client.post("/auth/login", json={"username": username, "password": DEMO_PASSWORD})
    assert response.status_code == 200, f"{username}: {response.text}"
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
async def seeded(app: FastAPI, database_url: str) -> None:
    """The demo loaded into the (empty) test database; ``app`` truncates every table afterwards."""
    assert await seed_demo(database_url) is True


async def test_demo_county_shape(seeded: None, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        levels = {
            level: n for level, n in await session.execute(select(OrgUnit.level, func.count()).group_by(OrgUnit.level))
        }
        roles = {role: n for role, n in await session.execute(select(User.role, func.count()).group_by(User.role))}
        counts = await _counts(session)
        units = {u.id: u for u in (await session.scalars(select(OrgUnit))).all()}
    assert levels == {"center": 1, "institute": 3, "station": 9}
    assert roles == {Role.ADMIN.value: 3, Role.VOLUNTEER.value: 30, Role.RESIDENT.value: 20}
    assert counts["categories"] == 12
    assert counts["volunteers"] == 30
    for unit in units.values():  # materialized paths: the parent's path plus the unit's own id
        parent_path = units[unit.parent_id].path if unit.parent_id else ""
        assert unit.path == f"{parent_path}{unit.id}."
        assert unit.depth == unit.path.count(".") - 1
    for institute in (u for u in units.values() if u.level == "institute"):
        assert sum(u.parent_id == institute.id for u in units.values()) == 3


async def test_every_state_has_orders_with_consistent_timelines(
    seeded: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session:
        orders = (await session.scalars(select(Order).order_by(Order.id))).all()
        events = (await session.scalars(select(OrderEvent).order_by(OrderEvent.id))).all()
    assert {Status(o.status) for o in orders} == set(Status)
    timeline: dict[int, list[OrderEvent]] = {}
    for event in events:
        timeline.setdefault(event.order_id, []).append(event)
    for order in orders:
        steps = timeline[order.id]
        assert steps[0].action == "place", order.title
        assert steps[-1].to_status == order.status, order.title
        for before, after in itertools.pairwise(steps):
            assert after.from_status == before.to_status, order.title
            assert after.created_at >= before.created_at, order.title
    assert any(o.placed_by_id != o.resident_id for o in orders)  # 代点单
    assert len({o.unit_id for o in orders}) >= 5
    assert {"escalate", "transfer", "decline", "grab", "reopen", "auto_close"} <= {e.action for e in events}


async def test_a_fresh_demo_is_not_due_for_the_sweeper(
    seeded: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Backdated history, but every open step has most of a day left: the demo stays as loaded."""
    async with sessionmaker() as session:
        soon = datetime.now(UTC) + timedelta(hours=12)
        due = (await session.execute(select(Order.title, Order.status).where(Order.deadline_at < soon))).all()
    assert due == []


async def test_seeding_twice_loads_nothing(
    seeded: None, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session:
        before = await _counts(session)
    assert await seed_demo(database_url) is False
    async with sessionmaker() as session:
        assert await _counts(session) == before


async def test_demo_accounts_and_ready_made_work(seeded: None, client: httpx.AsyncClient) -> None:
    for username in ("center_admin", "suo_admin", "volunteer30", "resident20"):
        await _login(client, username)
    wrong = await client.post("/auth/login", json={"username": "zhan_admin", "password": "wrong"})
    assert wrong.status_code == 401

    zhan = await _login(client, "zhan_admin")
    me = (await client.get("/me", headers=zhan)).json()
    assert me["role"] == "admin"
    station = me["unit_id"]
    page = (await client.get("/admin/orders", params={"limit": 200}, headers=zhan)).json()
    assert page["items"]
    assert {o["unit_id"] for o in page["items"]} == {station}
    by_status: dict[str, list[dict[str, Any]]] = {}
    for order in page["items"]:
        by_status.setdefault(order["status"], []).append(order)
    assert len(by_status["pooled"]) >= 2
    assert {"submitted", "approved", "dispatched"} <= by_status.keys()

    resident = await _login(client, "resident01")
    assert (await client.get("/me", headers=resident)).json()["unit_id"] == station
    menu = (await client.get("/menu", params={"unit_id": station})).json()
    assert len(menu["sections"]) == 12
    assert any(item["unit_id"] == station for s in menu["sections"] for item in s["items"])  # 本站特色
    mine = (await client.get("/orders/mine", headers=resident)).json()["items"]
    assert any(o["status"] == "completed" and "rate" in o["allowed_actions"] for o in mine)

    volunteer = await _login(client, "volunteer01")
    volunteer_id = (await client.get("/me", headers=volunteer)).json()["volunteer_id"]
    assigned = (await client.get("/volunteer/tasks", params={"kind": "assigned"}, headers=volunteer)).json()
    waiting = [o for o in assigned["items"] if o["status"] == "dispatched"]
    assert waiting
    assert waiting[0]["assignee_volunteer_id"] == volunteer_id
    assert "accept" in waiting[0]["allowed_actions"]
    pool = (await client.get("/volunteer/tasks", params={"kind": "pool"}, headers=volunteer)).json()
    assert len(pool["items"]) >= 2
    assert all("grab" in o["allowed_actions"] for o in pool["items"])
