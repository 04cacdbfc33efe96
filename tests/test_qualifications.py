"""技能与资质: required skills score (a sixth, explained part), required qualifications (with expiry) decide
who is offered an order and who may accept or grab it — through the actions' own rules."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain import Status
from app.models import Volunteer, VolunteerQualification, team_categories
from tests.helpers import count, snapshot
from tests.world import World

Sessions = async_sessionmaker[AsyncSession]
HEALTH = "zhan11_health"  # 上门量血压, a 站11 item


async def require(world: World, item: str = HEALTH, admin: str = "zhan11_admin", **body: Any) -> dict[str, Any]:
    response = await world.client.put(
        f"/admin/menu/items/{world.items[item]}/requirements", json=body, headers=world.h(admin)
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def qualify(
    world: World, volunteer: str, kind: str = "急救证", expires_on: date | None = None, admin: str = "zhan11_admin"
) -> Any:
    body = {"kind": kind, "number": "JJZ-2026-0001", "expires_on": expires_on.isoformat() if expires_on else None}
    return await world.client.put(
        f"/admin/volunteers/{world.volunteers[volunteer]}/qualifications", json=body, headers=world.h(admin)
    )


async def candidates(world: World, order_id: int) -> dict[str, Any]:
    response = await world.client.get(f"/admin/orders/{order_id}/candidates", headers=world.h("zhan11_admin"))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def approved(world: World, **overrides: Any) -> dict[str, Any]:
    order = await world.place("r1", unit="zhan11", item_id=world.items[HEALTH], **overrides)
    return await world.ok("zhan11_admin", order["id"], "approve")


async def set_skills(sessionmaker: Sessions, world: World, name: str, skills: list[str]) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Volunteer).where(Volunteer.id == world.volunteers[name]).values(skills=skills))


async def test_skill_match_is_a_sixth_explained_part_that_decides_between_equals(
    world: World, sessionmaker: Sessions
) -> None:
    """v11a and v11b are alike in everything (no coordinates, no history, same load) but v11b's skill:
    without the skill part the tie goes to the lower id, v11a."""
    await require(world, required_skills=["量血压", "健康宣讲"])
    await set_skills(sessionmaker, world, "v11a", ["讲解"])
    await set_skills(sessionmaker, world, "v11b", ["量血压", "健康宣讲", "剪发"])
    order = await approved(world)
    data = await candidates(world, order["id"])
    ranked = {c["id"]: c for c in data["volunteers"]}
    skilled, other = ranked[world.volunteers["v11b"]], ranked[world.volunteers["v11a"]]
    assert data["volunteers"][0]["id"] == world.volunteers["v11b"]
    assert skilled["parts"]["skill"] == 15.0 and other["parts"]["skill"] == 0.0
    assert {k: v for k, v in skilled["parts"].items() if k != "skill"} == {
        k: v for k, v in other["parts"].items() if k != "skill"
    }
    assert skilled["details"]["skills_matched"] == ["量血压", "健康宣讲"]
    assert "skill" in data["scoring"]
    # Half the skills, half the part.
    await set_skills(sessionmaker, world, "v11a", ["健康宣讲"])
    half = {c["id"]: c for c in (await candidates(world, order["id"]))["volunteers"]}
    assert half[world.volunteers["v11a"]]["parts"]["skill"] == 7.5


async def test_a_required_qualification_decides_who_is_offered_with_its_expiry(world: World, app: FastAPI) -> None:
    await require(world, required_qualifications=["急救证"])
    service_day = datetime.now(UTC) + timedelta(days=10)
    order = await approved(
        world, preferred_start=service_day.isoformat(), preferred_end=(service_day + timedelta(hours=1)).isoformat()
    )
    async with app.state.sessionmaker() as session, session.begin():  # team11 serves the category
        await session.execute(
            team_categories.insert().values(team_id=world.teams["team11"], category_id=world.categories["health"])
        )
    nobody = await candidates(world, order["id"])
    assert nobody["volunteers"] == [] and nobody["teams"] == []

    assert (await qualify(world, "v11a", expires_on=date.today() + timedelta(days=365))).status_code == 200
    offered = await candidates(world, order["id"])
    assert [c["id"] for c in offered["volunteers"]] == [world.volunteers["v11a"]]
    assert [c["id"] for c in offered["teams"]] == [world.teams["team11"]]  # v11a is a member

    # Expired today, or before the service day: not offered.
    assert (await qualify(world, "v11a", expires_on=date.today() - timedelta(days=1))).status_code == 200
    assert (await candidates(world, order["id"]))["volunteers"] == []
    assert (await qualify(world, "v11a", expires_on=date.today() + timedelta(days=5))).status_code == 200
    assert (await candidates(world, order["id"]))["volunteers"] == []
    # No expiry: offered. A qualification of another kind does not count.
    assert (await qualify(world, "v11a", expires_on=None)).status_code == 200
    assert (await qualify(world, "v11b", kind="心理咨询师证")).status_code == 200
    assert [c["id"] for c in (await candidates(world, order["id"]))["volunteers"]] == [world.volunteers["v11a"]]
    listed = await world.client.get(
        f"/admin/volunteers/{world.volunteers['v11a']}/qualifications", headers=world.h("zhan11_admin")
    )
    assert [(q["kind"], q["expires_on"], q["verified_by_id"]) for q in listed.json()] == [
        ("急救证", None, world.users["zhan11_admin"])
    ]


async def test_without_the_qualification_a_volunteer_cannot_grab_accept_or_be_dispatched_to(
    world: World, app: FastAPI
) -> None:
    await require(world, required_qualifications=["急救证"])
    assert (await qualify(world, "v11a", expires_on=date.today() + timedelta(days=30))).status_code == 200

    pooled = await world.ok("zhan11_admin", (await approved(world))["id"], "publish")
    pools = {
        name: [
            o["id"]
            for o in (await world.client.get("/volunteer/tasks?kind=pool", headers=world.h(name))).json()["items"]
        ]
        for name in ("v11a", "v11b")
    }
    assert pooled["id"] in pools["v11a"] and pooled["id"] not in pools["v11b"]
    before = await snapshot(app, pooled["id"])
    refused = await world.act("v11b", pooled["id"], "grab")
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["details"]["missing_qualifications"] == ["急救证"]
    assert await snapshot(app, pooled["id"]) == before
    assert (await world.act("v11a", pooled["id"], "grab")).status_code == 200

    # A team dispatch: only a qualified member accepts it.
    to_team = await world.ok(
        "zhan11_admin", (await approved(world))["id"], "dispatch", {"team_id": world.teams["team11"]}
    )
    before = await snapshot(app, to_team["id"])
    assert (await world.act("v11b", to_team["id"], "accept")).status_code == 403
    assert await snapshot(app, to_team["id"]) == before
    assert (await world.act("v11a", to_team["id"], "accept")).status_code == 200

    # Staff cannot dispatch to an unqualified volunteer either (nor would they be offered).
    order = await approved(world)
    before = await snapshot(app, order["id"])
    wrong = await world.act("zhan11_admin", order["id"], "dispatch", {"volunteer_id": world.volunteers["v11b"]})
    assert wrong.status_code == 422 and wrong.json()["error"]["details"]["missing_qualifications"] == ["急救证"]
    assert await snapshot(app, order["id"]) == before

    # A requirement set after an order went to the pool holds from then on.
    await require(world, required_qualifications=["急救证", "护士执业证"])
    later = await world.ok("zhan11_admin", (await approved(world))["id"], "publish")
    denied = await world.act("v11a", later["id"], "grab")
    assert denied.status_code == 403 and denied.json()["error"]["details"]["missing_qualifications"] == ["护士执业证"]


async def test_auto_assign_offers_only_the_qualified(world: World, app: FastAPI) -> None:
    policy = {"dispatch_mode": "auto_assign"}
    response = await world.client.put(
        f"/admin/units/{world.units['zhan11']}/policy", json=policy, headers=world.h("zhan11_admin")
    )
    assert response.status_code == 200
    await require(world, required_qualifications=["急救证"])
    assert (await qualify(world, "v11b")).status_code == 200
    order = await approved(world)
    assert order["status"] == Status.DISPATCHED.value
    assert order["assignee_volunteer_id"] == world.volunteers["v11b"]
    declined = await world.ok("v11b", order["id"], "decline", {"reason": "今天没空"})
    assert declined["status"] == Status.APPROVED.value  # v11a lacks it: nobody else to offer it to


async def test_requirement_and_qualification_endpoints_are_scoped_and_validated(world: World, app: FastAPI) -> None:
    item = world.items[HEALTH]
    for admin in ("suo2_admin", "zhan12_admin"):
        response = await world.client.put(
            f"/admin/menu/items/{item}/requirements", json={"required_skills": ["x"]}, headers=world.h(admin)
        )
        assert response.status_code == 404, admin
    assert (await qualify(world, "v21", admin="zhan11_admin")).status_code == 404
    assert (await qualify(world, "v11a", admin="suo2_admin")).status_code == 404
    denied = await world.client.put(
        f"/admin/menu/items/{item}/requirements", json={"required_skills": ["x"]}, headers=world.h("v11a")
    )
    assert denied.status_code == 403
    for bad in (
        {"required_qualifications": ["x" * 33]},
        {"required_skills": [""]},
        {"required_skills": [f"s{i}" for i in range(11)]},
        {"required_skills": "量血压"},
    ):
        response = await world.client.put(
            f"/admin/menu/items/{item}/requirements", json=bad, headers=world.h("zhan11_admin")
        )
        assert response.status_code == 422, bad
    for bad_q in (
        {"kind": "急救证", "number": "", "expires_on": None},
        {"kind": "急救证", "number": "1", "expires_on": "not-a-date"},
        {"kind": "急救证", "number": "1", "expires_on": "9999-12-31"},
        {"kind": "", "number": "1"},
    ):
        response = await world.client.put(
            f"/admin/volunteers/{world.volunteers['v11a']}/qualifications", json=bad_q, headers=world.h("zhan11_admin")
        )
        assert response.status_code == 422, bad_q
    assert await count(app, VolunteerQualification) == 0
    # Skills stay plain strings on the volunteer; the item shows what it requires; removal works once.
    shown = await require(world, required_skills=["量血压", "量血压"], required_qualifications=["急救证"])
    assert shown["required_skills"] == ["量血压"] and shown["required_qualifications"] == ["急救证"]
    assert (await qualify(world, "v11a")).status_code == 200
    path = f"/admin/volunteers/{world.volunteers['v11a']}/qualifications/急救证"
    assert (await world.client.delete(path, headers=world.h("zhan11_admin"))).status_code == 204
    assert (await world.client.delete(path, headers=world.h("zhan11_admin"))).status_code == 404


async def test_a_qualification_must_be_valid_on_the_orders_own_service_day_to_grab_accept_or_be_dispatched(
    world: World, app: FastAPI
) -> None:
    """The check reads *this* order's service day. Other orders (here one placed today, without a
    preferred start) must not lend theirs: a 急救证 valid today but expiring before the service day
    does not qualify."""
    await require(world, required_qualifications=["急救证"])
    assert (await qualify(world, "v11a", expires_on=date.today() + timedelta(days=5))).status_code == 200
    await approved(world)  # another order, served today
    service_day = datetime.now(UTC) + timedelta(days=10)
    window = {
        "preferred_start": service_day.isoformat(),
        "preferred_end": (service_day + timedelta(hours=1)).isoformat(),
    }

    pooled = await world.ok("zhan11_admin", (await approved(world, **window))["id"], "publish")
    pool = (await world.client.get("/volunteer/tasks?kind=pool", headers=world.h("v11a"))).json()["items"]
    assert pooled["id"] not in [o["id"] for o in pool]
    before = await snapshot(app, pooled["id"])
    refused = await world.act("v11a", pooled["id"], "grab")
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["details"]["missing_qualifications"] == ["急救证"]
    assert await snapshot(app, pooled["id"]) == before

    order = await approved(world, **window)
    wrong = await world.act("zhan11_admin", order["id"], "dispatch", {"volunteer_id": world.volunteers["v11a"]})
    assert wrong.status_code == 422 and wrong.json()["error"]["details"]["missing_qualifications"] == ["急救证"]

    to_team = await world.ok(
        "zhan11_admin", (await approved(world, **window))["id"], "dispatch", {"team_id": world.teams["team11"]}
    )
    before = await snapshot(app, to_team["id"])
    assert (await world.act("v11a", to_team["id"], "accept")).status_code == 403
    assert await snapshot(app, to_team["id"]) == before

    # Valid through the service day: the same volunteer may.
    assert (await qualify(world, "v11a", expires_on=date.today() + timedelta(days=11))).status_code == 200
    assert (await world.act("v11a", pooled["id"], "grab")).status_code == 200


async def test_grab_and_accept_are_offered_only_to_the_qualified(world: World, app: FastAPI) -> None:
    """``allowed_actions`` does not offer what the action would refuse: a volunteer who can see a pooled
    order, or a team order, but lacks the item's qualification is not offered grab or accept."""
    await require(world, required_qualifications=["急救证"])
    assert (await qualify(world, "v11a", expires_on=date.today() + timedelta(days=30))).status_code == 200
    pooled = await world.ok("zhan11_admin", (await approved(world))["id"], "publish")
    to_team = await world.ok(
        "zhan11_admin", (await approved(world))["id"], "dispatch", {"team_id": world.teams["team11"]}
    )

    async def offered(name: str, order_id: int) -> list[str]:
        response = await world.client.get(f"/orders/{order_id}", headers=world.h(name))
        assert response.status_code == 200, response.text
        actions: list[str] = response.json()["allowed_actions"]
        return actions

    assert "grab" in await offered("v11a", pooled["id"])
    assert "grab" not in await offered("v11b", pooled["id"])  # sees it (its region), may not grab it
    assert "accept" in await offered("v11a", to_team["id"])
    assert {"accept", "grab"}.isdisjoint(await offered("v11b", to_team["id"]))
    assert "decline" in await offered("v11b", to_team["id"])  # what does not need the qualification stays

    async def assigned(name: str) -> dict[int, list[str]]:
        page = await world.client.get("/volunteer/tasks?kind=assigned", headers=world.h(name))
        return {o["id"]: o["allowed_actions"] for o in page.json()["items"]}

    assert "accept" in (await assigned("v11a"))[to_team["id"]]
    assert "accept" not in (await assigned("v11b"))[to_team["id"]]
    # Staff are offered what they were: the rule is the volunteer's.
    assert "withdraw" in await offered("zhan11_admin", to_team["id"])
