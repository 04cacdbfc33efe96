"""A small county built straight into the database, and helpers to drive orders through the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import issue_token
from app.config import Settings
from app.domain import Role, Status
from app.models import MenuCategory, MenuItem, OrgUnit, Team, TeamMember, User, Volunteer, volunteer_categories

# name: (parent, level)
UNITS: dict[str, tuple[str | None, str]] = {
    "center": (None, "center"),
    "suo1": ("center", "institute"),
    "suo2": ("center", "institute"),
    "zhan11": ("suo1", "station"),
    "zhan12": ("suo1", "station"),
    "zhan21": ("suo2", "station"),
}
ADMINS = {f"{u}_admin": u for u in UNITS}
# username: (home unit, status)
VOLUNTEERS = {
    "v11a": ("zhan11", "active"),
    "v11b": ("zhan11", "active"),
    "v12": ("zhan12", "active"),
    "v21": ("zhan21", "active"),
    "vsuo1": ("suo1", "active"),
    "v11x": ("zhan11", "suspended"),
}
TEAMS = {"team11": ("zhan11", ["v11a", "v11b"]), "team21": ("zhan21", ["v21"])}
RESIDENTS = {"r1": "zhan11", "r2": "zhan11", "r3": "zhan21"}


@dataclass
class World:
    client: httpx.AsyncClient
    settings: Settings
    units: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    volunteers: dict[str, int] = field(default_factory=dict)
    teams: dict[str, int] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def h(self, username: str) -> dict[str, str]:
        """Authorization header for ``username``."""
        return {"Authorization": f"Bearer {self.tokens[username]}"}

    def order_body(self, unit: str = "zhan11", **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "item_id": self.items["center_lecture"],
            "description": "社区老人想听一场防诈骗讲座",
            "unit_id": self.units[unit],
            "address": "城关镇幸福村文化礼堂",
            "contact_name": "王大爷",
            "contact_phone": "13812345678",
        }
        body.update(overrides)
        return body

    async def act(
        self, username: str, order_id: int, action: str, body: dict[str, Any] | None = None, **kwargs: Any
    ) -> httpx.Response:
        path = action.replace("_", "-")
        headers = self.h(username) | kwargs.pop("headers", {})
        return await self.client.post(f"/orders/{order_id}/{path}", json=body or {}, headers=headers, **kwargs)

    async def place(self, username: str = "r1", **overrides: Any) -> dict[str, Any]:
        response = await self.client.post("/orders", json=self.order_body(**overrides), headers=self.h(username))
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    async def ok(self, username: str, order_id: int, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.act(username, order_id, action, body)
        assert response.status_code == 200, f"{action} by {username}: {response.text}"
        data: dict[str, Any] = response.json()
        return data

    async def order_in(self, status: Status, resident: str = "r1", unit: str = "zhan11") -> dict[str, Any]:
        """A fresh order of ``resident`` at ``unit`` driven through the API into ``status``.

        Held orders are held by volunteer ``v11a`` (or ``v21`` in 站21); pools are published by the 站 admin.
        """
        admin = f"{unit}_admin"
        volunteer = "v21" if unit == "zhan21" else "v11a"
        order = await self.place(resident, unit=unit)
        oid = order["id"]
        if status is Status.SUBMITTED:
            return order
        if status is Status.REJECTED:
            return await self.ok(admin, oid, "reject", {"reason": "重复提交"})
        if status is Status.CANCELLED:
            return await self.ok(resident, oid, "cancel", {"reason": "不需要了"})
        order = await self.ok(admin, oid, "approve")
        if status is Status.APPROVED:
            return order
        if status is Status.DISPATCHED:
            return await self.ok(admin, oid, "dispatch", {"volunteer_id": self.volunteers[volunteer]})
        order = await self.ok(admin, oid, "publish")
        if status is Status.POOLED:
            return order
        order = await self.ok(volunteer, oid, "grab")
        if status is Status.ACCEPTED:
            return order
        order = await self.ok(volunteer, oid, "check_in")
        if status is Status.IN_SERVICE:
            return order
        order = await self.ok(volunteer, oid, "complete", self.complete_body(volunteer))
        if status is Status.COMPLETED:
            return order
        if status is Status.RATED:
            return await self.ok(resident, oid, "rate", {"stars": 5})
        raise AssertionError(f"no API path into {status}")  # CLOSED needs the system (auto_close)

    def complete_body(self, *volunteers: str, hours: str = "0.5") -> dict[str, Any]:
        # 0.5 h fits any check-in → complete span (rounded up to the next half hour); more needs a
        # check-in set back in time (see tests/test_ledger.py).
        return {
            "summary": "讲座顺利完成, 发放宣传册 40 份",
            "served_count": 40,
            "participants": [{"volunteer_id": self.volunteers[v], "hours": hours} for v in volunteers],
            "photos": ["https://example.invalid/p/1.jpg"],
        }


def _path(parent: OrgUnit | None, unit_id: int) -> str:
    return f"{parent.path if parent else ''}{unit_id}."


async def build_world(sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient) -> World:
    app_settings: Settings = client._transport.app.state.settings  # type: ignore[attr-defined]
    world = World(client=client, settings=app_settings)
    async with sessionmaker() as session, session.begin():
        units: dict[str, OrgUnit] = {}
        for name, (parent_name, level) in UNITS.items():
            parent = units[parent_name] if parent_name else None
            unit = OrgUnit(
                parent_id=parent.id if parent else None,
                level=level,
                name=f"测试{name}",
                code=name,
                path="pending",
                depth=(parent.depth + 1) if parent else 0,
            )
            session.add(unit)
            await session.flush()
            unit.path = _path(parent, unit.id)
            units[name] = unit
        await session.flush()
        users: dict[str, User] = {}
        for username, unit_name in ADMINS.items():
            users[username] = User(
                username=username, role=Role.ADMIN.value, unit_id=units[unit_name].id, display_name=username
            )
        for username, (unit_name, _) in VOLUNTEERS.items():
            users[username] = User(
                username=username,
                role=Role.VOLUNTEER.value,
                unit_id=units[unit_name].id,
                display_name=username,
            )
        for i, (username, unit_name) in enumerate(RESIDENTS.items()):
            users[username] = User(
                username=username,
                role=Role.RESIDENT.value,
                unit_id=units[unit_name].id,
                display_name=username,
                phone=f"1390000{i:04d}",  # r1 13900000000, r2 …01, r3 …02
            )
        session.add_all(users.values())
        await session.flush()
        volunteers: dict[str, Volunteer] = {}
        for i, (username, (unit_name, status)) in enumerate(VOLUNTEERS.items()):
            volunteers[username] = Volunteer(
                user_id=users[username].id,
                real_name=f"志愿者{username}",
                phone=f"1370000{i:04d}",
                home_unit_id=units[unit_name].id,
                status=status,
                skills=["讲解"],
            )
        session.add_all(volunteers.values())
        cat_lecture = MenuCategory(name="理论宣讲", code="lecture", sort_order=1)
        cat_health = MenuCategory(name="爱心医疗", code="health", sort_order=2)
        session.add_all([cat_lecture, cat_health])
        await session.flush()
        # Every world volunteer serves both categories; tests that need otherwise change it.
        await session.execute(
            insert(volunteer_categories),
            [
                {"volunteer_id": v.id, "category_id": c.id}
                for v in volunteers.values()
                for c in (cat_lecture, cat_health)
            ],
        )
        teams: dict[str, Team] = {}
        for name, (unit_name, members) in TEAMS.items():
            team = Team(unit_id=units[unit_name].id, name=f"测试{name}", leader_volunteer_id=volunteers[members[0]].id)
            session.add(team)
            await session.flush()
            session.add_all(TeamMember(team_id=team.id, volunteer_id=volunteers[m].id) for m in members)
            teams[name] = team
        items = {
            "center_lecture": MenuItem(unit_id=units["center"].id, category_id=cat_lecture.id, name="防诈骗宣讲"),
            "zhan11_health": MenuItem(unit_id=units["zhan11"].id, category_id=cat_health.id, name="上门量血压"),
            "suo1_auto": MenuItem(unit_id=units["suo1"].id, category_id=cat_health.id, name="义诊", auto_approve=True),
            "zhan21_only": MenuItem(unit_id=units["zhan21"].id, category_id=cat_lecture.id, name="村史讲解"),
        }
        session.add_all(items.values())
        await session.flush()
    world.units = {k: v.id for k, v in units.items()}
    world.users = {k: v.id for k, v in users.items()}
    world.volunteers = {k: v.id for k, v in volunteers.items()}
    world.teams = {k: v.id for k, v in teams.items()}
    world.categories = {"lecture": cat_lecture.id, "health": cat_health.id}
    world.items = {k: v.id for k, v in items.items()}
    world.tokens = {name: issue_token(app_settings, user) for name, user in users.items()}
    return world
