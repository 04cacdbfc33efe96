"""Ranked candidates: each part of the score must matter, and eligibility must hold."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain import Status
from app.models import OrgUnit, Volunteer, team_categories, volunteer_categories
from tests.world import World

Sessions = async_sessionmaker[AsyncSession]
ORDER_AT = {"lat": 30.0, "lng": 120.0}


async def ranked(world: World, order_id: int, admin: str = "zhan11_admin") -> dict[str, Any]:
    response = await world.client.get(f"/admin/orders/{order_id}/candidates", headers=world.h(admin))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def volunteer_ids(data: dict[str, Any]) -> list[int]:
    return [c["id"] for c in data["volunteers"]]


async def set_volunteer(sessionmaker: Sessions, world: World, name: str, **values: Any) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Volunteer).where(Volunteer.id == world.volunteers[name]).values(**values))


async def approved_order(world: World, **overrides: Any) -> dict[str, Any]:
    order = await world.place("r1", unit="zhan11", **(ORDER_AT | overrides))
    return await world.ok("zhan11_admin", order["id"], "approve")


async def test_only_eligible_volunteers_and_teams_are_listed(world: World) -> None:
    order = await approved_order(world)
    data = await ranked(world, order["id"])
    # 站11's active volunteers; not the suspended v11x, nor v12/v21 (other subtrees), nor vsuo1 (above).
    assert sorted(volunteer_ids(data)) == sorted([world.volunteers["v11a"], world.volunteers["v11b"]])
    assert data["teams"] == []  # team11 serves no category yet
    for candidate in data["volunteers"]:
        assert set(candidate["parts"]) == {"distance", "category", "load", "reliability", "rating", "skill"}
        assert candidate["score"] == round(sum(candidate["parts"].values()), 2)


async def test_candidates_are_scoped_to_the_admin(world: World) -> None:
    order = await approved_order(world)
    for outsider in ("zhan12_admin", "suo2_admin"):
        response = await world.client.get(f"/admin/orders/{order['id']}/candidates", headers=world.h(outsider))
        assert response.status_code == 404
    assert (
        await world.client.get(f"/admin/orders/{order['id']}/candidates", headers=world.h("v11a"))
    ).status_code == 403
    assert volunteer_ids(await ranked(world, order["id"], "center_admin"))


async def test_distance_matters(world: World, sessionmaker: Sessions) -> None:
    order = await approved_order(world)
    await set_volunteer(sessionmaker, world, "v11a", lat=30.001, lng=120.001)  # ~150 m
    await set_volunteer(sessionmaker, world, "v11b", lat=30.1, lng=120.1)  # ~14 km
    assert volunteer_ids(await ranked(world, order["id"]))[0] == world.volunteers["v11a"]
    await set_volunteer(sessionmaker, world, "v11a", lat=30.12, lng=120.12)
    data = await ranked(world, order["id"])
    assert volunteer_ids(data)[0] == world.volunteers["v11b"]
    assert data["volunteers"][0]["details"]["distance_km"] < data["volunteers"][1]["details"]["distance_km"]


async def test_category_matters_and_is_required(world: World, sessionmaker: Sessions) -> None:
    order = await approved_order(world)
    async with sessionmaker() as session, session.begin():
        # v11b no longer signs up for 理论宣讲 itself, but team11 (v11a, v11b) serves it.
        await session.execute(
            delete(volunteer_categories).where(
                volunteer_categories.c.volunteer_id == world.volunteers["v11b"],
                volunteer_categories.c.category_id == world.categories["lecture"],
            )
        )
        await session.execute(
            team_categories.insert().values(team_id=world.teams["team11"], category_id=world.categories["lecture"])
        )
    data = await ranked(world, order["id"])
    parts = {c["id"]: c["parts"]["category"] for c in data["volunteers"]}
    assert parts == {world.volunteers["v11a"]: 30.0, world.volunteers["v11b"]: 20.0}
    assert volunteer_ids(data)[0] == world.volunteers["v11a"]
    assert [t["id"] for t in data["teams"]] == [world.teams["team11"]]
    # Without the team either, v11b no longer serves the category: not a candidate at all.
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(team_categories))
    assert volunteer_ids(await ranked(world, order["id"])) == [world.volunteers["v11a"]]


async def test_load_matters_and_the_limit_excludes(world: World, sessionmaker: Sessions) -> None:
    busy = await world.order_in(Status.ACCEPTED)  # held by v11a
    assert busy["assignee_volunteer_id"] == world.volunteers["v11a"]
    order = await approved_order(world)
    data = await ranked(world, order["id"])
    assert volunteer_ids(data)[0] == world.volunteers["v11b"]
    loads = {c["id"]: c["details"]["open_orders"] for c in data["volunteers"]}
    assert loads[world.volunteers["v11a"]] == 1 and loads[world.volunteers["v11b"]] == 0
    await set_volunteer(sessionmaker, world, "v11a", max_open_orders=1)
    assert volunteer_ids(await ranked(world, order["id"])) == [world.volunteers["v11b"]]


async def test_reliability_matters(world: World, sessionmaker: Sessions) -> None:
    order = await approved_order(world)
    await set_volunteer(sessionmaker, world, "v11b", declined_count=4, expired_count=2)
    assert volunteer_ids(await ranked(world, order["id"]))[0] == world.volunteers["v11a"]
    await set_volunteer(sessionmaker, world, "v11b", declined_count=0, expired_count=0, accepted_count=5)
    await set_volunteer(sessionmaker, world, "v11a", released_count=3)
    assert volunteer_ids(await ranked(world, order["id"]))[0] == world.volunteers["v11b"]


async def test_reliability_counters_follow_real_actions(world: World) -> None:
    order = await world.order_in(Status.DISPATCHED)  # to v11a
    await world.ok("v11a", order["id"], "decline", {"reason": "生病"})
    other = await approved_order(world)
    data = await ranked(world, other["id"])
    v11a = next(c for c in data["volunteers"] if c["id"] == world.volunteers["v11a"])
    assert v11a["details"]["declined"] == 1
    assert v11a["parts"]["reliability"] < 10.0  # (0 + 1) / (1 + 2) × 20


async def test_rating_matters(world: World) -> None:
    for stars, holder in ((1, "v11a"), (5, "v11b")):
        order = await world.place("r1", unit="zhan11")
        await world.ok("zhan11_admin", order["id"], "approve")
        await world.ok("zhan11_admin", order["id"], "dispatch", {"volunteer_id": world.volunteers[holder]})
        await world.ok(holder, order["id"], "accept")
        await world.ok(holder, order["id"], "check_in")
        await world.ok(holder, order["id"], "complete", world.complete_body(holder))
        await world.ok("r1", order["id"], "rate", {"stars": stars})
    data = await ranked(world, (await approved_order(world))["id"])
    ratings = {c["id"]: c["parts"]["rating"] for c in data["volunteers"]}
    assert ratings == {world.volunteers["v11a"]: 0.0, world.volunteers["v11b"]: 10.0}
    assert volunteer_ids(data)[0] == world.volunteers["v11b"]


async def test_team_distance_uses_the_units_location(world: World, sessionmaker: Sessions) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(
            team_categories.insert().values(team_id=world.teams["team11"], category_id=world.categories["lecture"])
        )
        await session.execute(update(OrgUnit).where(OrgUnit.id == world.units["zhan11"]).values(lat=30.0, lng=120.05))
    data = await ranked(world, (await approved_order(world))["id"])
    team = data["teams"][0]
    assert 4.0 < team["details"]["distance_km"] < 6.0
    assert 25.0 < team["parts"]["distance"] < 32.0


async def test_pool_lists_eligible_orders_nearest_first(world: World, sessionmaker: Sessions) -> None:
    await set_volunteer(sessionmaker, world, "v11b", lat=30.0, lng=120.0)
    far = await world.place("r1", unit="zhan11", lat=30.2, lng=120.2)
    near = await world.place("r1", unit="zhan11", lat=30.01, lng=120.0)
    nowhere = await world.place("r1", unit="zhan11")
    health = await world.place("r1", unit="zhan11", item_id=world.items["zhan11_health"], lat=30.0, lng=120.0)
    for order in (far, near, nowhere, health):
        await world.ok("zhan11_admin", order["id"], "approve")
        await world.ok("zhan11_admin", order["id"], "publish")
    pool = (await world.client.get("/volunteer/tasks?kind=pool", headers=world.h("v11b"))).json()["items"]
    assert [o["id"] for o in pool] == [health["id"], near["id"], far["id"], nowhere["id"]]
    # v11b stops serving 爱心医疗: that order leaves its pool and cannot be grabbed by it.
    async with sessionmaker() as session, session.begin():
        await session.execute(
            delete(volunteer_categories).where(
                volunteer_categories.c.volunteer_id == world.volunteers["v11b"],
                volunteer_categories.c.category_id == world.categories["health"],
            )
        )
    pool = (await world.client.get("/volunteer/tasks?kind=pool", headers=world.h("v11b"))).json()["items"]
    assert health["id"] not in [o["id"] for o in pool]
    assert (await world.act("v11b", health["id"], "grab")).status_code in (403, 404)
    assert (await world.act("v11a", health["id"], "grab")).status_code == 200


async def test_grab_respects_the_open_order_limit(world: World, sessionmaker: Sessions) -> None:
    await set_volunteer(sessionmaker, world, "v11a", max_open_orders=1)
    await world.order_in(Status.ACCEPTED)  # v11a holds one
    pooled = await world.order_in(Status.POOLED)
    response = await world.act("v11a", pooled["id"], "grab")
    assert response.status_code == 409
    assert response.json()["error"]["details"]["limit"] == 1
