"""活动招募: publishing in scope, who may see and join, waitlist and promotion, the capacity exact under a
sign-up storm across two service instances, check-in and check-out with the proofs of orders, hours in
the same ledger."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.auth import issue_token
from app.config import Settings
from app.main import create_app
from app.models import ActivitySignup, ActivitySlot, HoursEntry, OutboxMessage, PresenceCodeUse, User, Volunteer
from app.services import activity_reports
from tests.helpers import count, lock_holder, lock_waiters
from tests.world import World

PLACE = {"lat": 30.0, "lng": 120.0}
METRES_PER_DEGREE = 111_195.0


def near(metres: float = 0) -> dict[str, float]:
    return {"lat": PLACE["lat"] + metres / METRES_PER_DEGREE, "lng": PLACE["lng"], "accuracy_m": 20}


def activity_body(world: World, unit: str = "suo1", capacity: int = 2, **overrides: Any) -> dict[str, Any]:
    start = datetime.now(UTC) + timedelta(minutes=30)
    body: dict[str, Any] = {
        "unit_id": world.units[unit],
        "kind": "clinic",
        "title": "重阳节义诊",
        "description": "为老人量血压、测血糖",
        "address": "城关镇幸福村文化礼堂",
        **PLACE,
        "required_skills": [],
        "slots": [
            {"starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=2)).isoformat(), "capacity": capacity}
        ],
    }
    return body | overrides


async def publish(world: World, admin: str = "suo1_admin", **kwargs: Any) -> dict[str, Any]:
    response = await world.client.post("/admin/activities", json=activity_body(world, **kwargs), headers=world.h(admin))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def sign_up(world: World, username: str, slot_id: int) -> httpx.Response:
    return await world.client.post(f"/activity-slots/{slot_id}/signup", headers=world.h(username))


async def signed(world: World, username: str, slot_id: int) -> dict[str, Any]:
    response = await sign_up(world, username, slot_id)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def step(world: World, username: str, signup_id: int, what: str, body: Any = None) -> httpx.Response:
    return await world.client.post(f"/activity-signups/{signup_id}/{what}", json=body, headers=world.h(username))


# --- publishing and scope --------------------------------------------------------------------------------


async def test_staff_publish_in_their_subtree_and_see_only_theirs(world: World) -> None:
    activity = await publish(world)
    assert activity["kind_label"] == "义诊" and activity["slots"][0]["capacity"] == 2
    path = f"/admin/activities/{activity['id']}"
    assert (await world.client.get(path, headers=world.h("center_admin"))).status_code == 200
    assert (await world.client.get(path, headers=world.h("suo2_admin"))).status_code == 404
    assert (await world.client.get(path, headers=world.h("zhan11_admin"))).status_code == 404  # above 站11
    listed = (await world.client.get("/admin/activities", headers=world.h("suo2_admin"))).json()
    assert listed["items"] == []
    # Outside the subtree, or at a 中心 (activities are run by a 所 or 站): 422, nothing published.
    for admin, unit in (("zhan11_admin", "zhan21"), ("center_admin", "center")):
        body = activity_body(world, unit=unit)
        response = await world.client.post("/admin/activities", json=body, headers=world.h(admin))
        assert response.status_code == 422, response.text
    assert (
        await world.client.post("/admin/activities", json=activity_body(world), headers=world.h("v11a"))
    ).status_code == 403


async def test_only_volunteers_of_the_units_subtree_see_and_join(world: World) -> None:
    activity = await publish(world, unit="zhan11")
    slot = activity["slots"][0]["id"]
    path = f"/activities/{activity['id']}"
    assert (await world.client.get(path, headers=world.h("v11a"))).status_code == 200
    for outsider in ("v21", "v12", "vsuo1"):  # another branch, a sibling 站, the 所 above
        assert (await world.client.get(path, headers=world.h(outsider))).status_code == 404
        assert (await sign_up(world, outsider, slot)).status_code == 404
    assert (await world.client.get(path, headers=world.h("r1"))).status_code == 403
    assert (await sign_up(world, "v11x", slot)).status_code == 403  # suspended
    listed = (await world.client.get("/activities", headers=world.h("v21"))).json()
    assert listed["items"] == []


async def test_a_required_skill_is_needed_to_sign_up(world: World, app: FastAPI) -> None:
    activity = await publish(world, required_skills=["急救"])
    response = await sign_up(world, "v11a", activity["slots"][0]["id"])
    assert response.status_code == 422
    assert response.json()["error"]["details"]["missing_skills"] == ["急救"]
    assert await count(app, ActivitySignup) == 0


# --- waitlist ----------------------------------------------------------------------------------------------


async def test_the_waitlist_promotes_the_next_in_order(world: World) -> None:
    activity = await publish(world, capacity=2)
    slot = activity["slots"][0]["id"]
    a, b, c, d = [await signed(world, v, slot) for v in ("v11a", "v11b", "v12", "vsuo1")]
    assert [s["status"] for s in (a, b, c, d)] == ["confirmed", "confirmed", "waitlisted", "waitlisted"]
    assert (c["waitlist_position"], d["waitlist_position"]) == (1, 2)
    assert (await sign_up(world, "v11a", slot)).status_code == 409  # once per slot

    cancelled = await step(world, "v11a", a["id"], "cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    roll = (await world.client.get(f"/admin/activity-slots/{slot}/signups", headers=world.h("suo1_admin"))).json()
    by_id = {s["id"]: s for s in roll}
    assert by_id[c["id"]]["status"] == "confirmed"  # the first of the waitlist
    assert by_id[d["id"]]["status"] == "waitlisted" and by_id[d["id"]]["waitlist_position"] == 1
    # A waitlisted sign-up cancelled frees no place; someone else's sign-up is not yours (404).
    assert (await step(world, "v11b", d["id"], "cancel")).status_code == 404
    assert (await step(world, "vsuo1", d["id"], "cancel")).json()["status"] == "cancelled"
    assert (await step(world, "vsuo1", d["id"], "cancel")).status_code == 409
    shown = (await world.client.get(f"/activities/{activity['id']}", headers=world.h("v11b"))).json()
    assert shown["slots"][0]["confirmed"] == 2 and shown["slots"][0]["waitlisted"] == 0


@pytest.fixture
async def two_instances(settings: Settings, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    """Two more service instances on the same database, each with its own pool of 8 connections (the
    test server is shared: a small pool keeps the storm within its connection limit, and requests queue
    for a connection as they would in production)."""
    small = settings.model_copy(update={"db_pool_size": 8, "db_max_overflow": 0})
    clients = []
    async with AsyncExitStack() as stack:
        for _ in range(2):
            application = create_app(small, database_url=database_url)
            await stack.enter_async_context(application.router.lifespan_context(application))
            transport = httpx.ASGITransport(app=application)
            http = httpx.AsyncClient(transport=transport, base_url="http://test/api/v1", timeout=120)
            clients.append(await stack.enter_async_context(http))
        yield tuple(clients)


async def _volunteers(app: FastAPI, world: World, n: int) -> list[str]:
    """``n`` active volunteers of 站11; their tokens."""
    async with app.state.sessionmaker() as session, session.begin():
        users = [
            User(username=f"storm{i}", role="volunteer", unit_id=world.units["zhan11"], display_name=f"storm{i}")
            for i in range(n)
        ]
        session.add_all(users)
        await session.flush()
        session.add_all(
            Volunteer(user_id=u.id, real_name=f"风暴{i}", phone=f"1360000{i:04d}", home_unit_id=world.units["zhan11"])
            for i, u in enumerate(users)
        )
        await session.flush()
        for u in users:
            await session.refresh(u)
        return [issue_token(world.settings, u) for u in users]


async def test_capacity_is_exact_under_a_sign_up_storm_across_instances(
    world: World, app: FastAPI, two_instances: tuple[httpx.AsyncClient, ...]
) -> None:
    """200 volunteers sign up for 20 places at once, half through each of two instances: exactly 20
    are confirmed and 180 waitlisted; a cancellation promotes exactly the first of the waitlist."""
    activity = await publish(world, capacity=20)
    slot = activity["slots"][0]["id"]
    tokens = await _volunteers(app, world, 200)
    clients = two_instances
    answers = await asyncio.gather(
        *(
            clients[i % 2].post(f"/activity-slots/{slot}/signup", headers={"Authorization": f"Bearer {token}"})
            for i, token in enumerate(tokens)
        )
    )
    assert [a.status_code for a in answers] == [201] * 200, {a.status_code for a in answers}
    statuses = [a.json()["status"] for a in answers]
    assert statuses.count("confirmed") == 20 and statuses.count("waitlisted") == 180
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(ActivitySlot.confirmed).where(ActivitySlot.id == slot)) == 20
        live = select(func.count()).where(ActivitySignup.slot_id == slot, ActivitySignup.status == "confirmed")
        assert await session.scalar(live) == 20
        head = await session.scalar(
            select(func.min(ActivitySignup.id)).where(
                ActivitySignup.slot_id == slot, ActivitySignup.status == "waitlisted"
            )
        )
    confirmed = next(i for i, a in enumerate(answers) if a.json()["status"] == "confirmed")
    cancelled = await clients[1].post(
        f"/activity-signups/{answers[confirmed].json()['id']}/cancel",
        headers={"Authorization": f"Bearer {tokens[confirmed]}"},
    )
    assert cancelled.status_code == 200
    async with app.state.sessionmaker() as session:
        rows = dict(
            (
                await session.execute(
                    select(ActivitySignup.id, ActivitySignup.status).where(ActivitySignup.slot_id == slot)
                )
            ).all()
        )
    assert rows[head] == "confirmed"
    assert list(rows.values()).count("confirmed") == 20 and list(rows.values()).count("waitlisted") == 179


# --- editing an activity and its slots ----------------------------------------------------------------------


async def _edit(world: World, admin: str, path: str, body: Any) -> httpx.Response:
    return await world.client.patch(path, json=body, headers=world.h(admin))


async def test_staff_edit_an_activity_and_those_signed_up_hear_of_a_new_place(world: World, app: FastAPI) -> None:
    activity = await publish(world, capacity=1)
    path = f"/admin/activities/{activity['id']}"
    slot = activity["slots"][0]["id"]
    await signed(world, "v11a", slot)
    await signed(world, "v11b", slot)  # waitlisted: told too
    for refused in ({}, {"title": None}, {"lat": 30.1}, {"status": "cancelled"}, {"title": "  "}):
        assert (await _edit(world, "suo1_admin", path, refused)).status_code == 422, refused
    assert (await _edit(world, "suo2_admin", path, {"title": "别人的"})).status_code == 404
    assert (await _edit(world, "v11a", path, {"title": "志愿者改"})).status_code == 403

    retitled = await _edit(
        world, "suo1_admin", path, {"title": "重阳节义诊（上午场）", "required_skills": ["医护", "医护"]}
    )
    assert retitled.status_code == 200, retitled.text
    assert (retitled.json()["title"], retitled.json()["required_skills"]) == ("重阳节义诊（上午场）", ["医护"])
    assert retitled.json()["address"] == activity["address"]  # what was not given stays
    assert await _activity_notices(app) == []  # a new title is no news to those coming

    moved = await _edit(world, "suo1_admin", path, {"address": "城关镇卫生院二楼", "lat": None, "lng": None})
    assert moved.status_code == 200 and (moved.json()["lat"], moved.json()["lng"]) == (None, None)
    notices = await _activity_notices(app)
    assert [(t, u) for t, u, _ in notices] == [
        ("activity.change", world.users["v11a"]),
        ("activity.change", world.users["v11b"]),
    ]
    assert notices[0][2]["address"] == "城关镇卫生院二楼" and notices[0][2]["status"] == "changed"

    assert (await _cancel(world, "suo1_admin", activity["id"], {"reason": "暴雨"})).status_code == 200
    late = await _edit(world, "suo1_admin", path, {"title": "取消后再改"})
    assert late.status_code == 409 and late.json()["error"]["details"]["status"] == "cancelled"


async def test_more_room_confirms_the_waitlist_in_order_and_less_than_confirmed_is_refused(
    world: World, app: FastAPI
) -> None:
    activity = await publish(world, capacity=1)
    slot = activity["slots"][0]["id"]
    path = f"/admin/activity-slots/{slot}"
    first = await signed(world, "v11a", slot)
    waiting = [await signed(world, name, slot) for name in ("v11b", "v12")]
    assert [w["status"] for w in waiting] == ["waitlisted", "waitlisted"]
    assert (await _edit(world, "suo2_admin", path, {"capacity": 5})).status_code == 404
    for refused in (
        {},
        {"capacity": 0},
        {"capacity": "3"},
        {"capacity": None},
        {"starts_at": "2026-12-24T09:00:00+08:00"},
    ):
        assert (await _edit(world, "suo1_admin", path, refused)).status_code == 422, refused

    grown = await _edit(world, "suo1_admin", path, {"capacity": 3})
    assert grown.status_code == 200, grown.text
    assert grown.json()["slots"][0] | {"capacity": 3, "confirmed": 3} == grown.json()["slots"][0]
    listed = (await world.client.get(f"{path}/signups", headers=world.h("suo1_admin"))).json()
    statuses = {s["id"]: s["status"] for s in listed}
    assert [statuses[x["id"]] for x in (first, *waiting)] == ["confirmed"] * 3
    promoted = [(t, u) for t, u, _ in await _activity_notices(app)]
    assert promoted == [("activity.promote", world.users["v11b"]), ("activity.promote", world.users["v12"])]

    shrunk = await _edit(world, "suo1_admin", path, {"capacity": 2})
    assert shrunk.status_code == 409 and shrunk.json()["error"]["details"]["confirmed"] == 3
    unchanged = (await world.client.get(f"/admin/activities/{activity['id']}", headers=world.h("suo1_admin"))).json()
    assert unchanged["slots"][0]["capacity"] == 3
    assert (await _edit(world, "suo1_admin", path, {"capacity": 3})).status_code == 200  # as many as confirmed
    assert len(await _activity_notices(app)) == 2


async def test_slot_times_change_until_someone_checks_in(world: World, app: FastAPI) -> None:
    activity = await publish(world, capacity=2)
    slot = activity["slots"][0]
    path = f"/admin/activity-slots/{slot['id']}"
    signup = await signed(world, "v11a", slot["id"])
    later = datetime.fromisoformat(slot["starts_at"]) + timedelta(minutes=20)
    body = {"starts_at": later.isoformat(), "ends_at": (later + timedelta(hours=2)).isoformat()}
    assert (await _edit(world, "suo1_admin", path, body | {"ends_at": later.isoformat()})).status_code == 422
    moved = await _edit(world, "suo1_admin", path, body)
    assert moved.status_code == 200, moved.text
    assert datetime.fromisoformat(moved.json()["slots"][0]["starts_at"]) == later
    [(topic, user_id, payload)] = await _activity_notices(app)
    assert (topic, user_id) == ("activity.change", world.users["v11a"])
    assert datetime.fromisoformat(payload["slot_starts_at"]) == later

    assert (await step(world, "v11a", signup["id"], "check-in", near(10))).status_code == 200
    again = {"starts_at": (later + timedelta(hours=1)).isoformat(), "ends_at": (later + timedelta(hours=3)).isoformat()}
    refused = await _edit(world, "suo1_admin", path, again)
    assert refused.status_code == 409, refused.text
    assert len(await _activity_notices(app)) == 1


async def test_room_added_during_a_sign_up_storm_is_filled_exactly_across_instances(
    world: World, app: FastAPI, two_instances: tuple[httpx.AsyncClient, ...]
) -> None:
    """60 volunteers sign up for 10 places through two instances while staff raise the capacity to 25
    through both: exactly 25 are confirmed whatever the order, the rest waitlisted, and the slot's count
    is the count of confirmed rows."""
    activity = await publish(world, capacity=10)
    slot = activity["slots"][0]["id"]
    tokens = await _volunteers(app, world, 60)
    clients = two_instances
    admin = world.h("suo1_admin")
    sign_ups = [
        clients[i % 2].post(f"/activity-slots/{slot}/signup", headers={"Authorization": f"Bearer {token}"})
        for i, token in enumerate(tokens)
    ]
    raises = [
        clients[i % 2].patch(f"/admin/activity-slots/{slot}", json={"capacity": 25}, headers=admin) for i in range(4)
    ]
    answers = await asyncio.gather(*sign_ups[:30], *raises, *sign_ups[30:])
    assert [a.status_code for a in answers] == [201] * 30 + [200] * 4 + [201] * 30
    async with app.state.sessionmaker() as session:
        counted = await session.scalar(select(ActivitySlot.confirmed).where(ActivitySlot.id == slot))
        rows = [
            status
            for (status,) in await session.execute(select(ActivitySignup.status).where(ActivitySignup.slot_id == slot))
        ]
    assert counted == rows.count("confirmed") == 25 and rows.count("waitlisted") == 35


# --- check-in and check-out with proofs, hours in the ledger -----------------------------------------------


async def test_check_in_and_out_with_proofs_credit_verified_hours(world: World, app: FastAPI) -> None:
    activity = await publish(world)
    slot = activity["slots"][0]["id"]
    signup = await signed(world, "v11a", slot)
    code = (await world.client.get(f"/admin/activity-slots/{slot}/presence-code", headers=world.h("suo1_admin"))).json()
    checked = await step(world, "v11a", signup["id"], "check-in", {"code": code["code"]})
    assert checked.status_code == 200 and checked.json()["checked_in_proof"] == "code"
    assert (await step(world, "v11a", signup["id"], "check-in", {})).status_code == 409  # once

    # The same code again at check-out: used (409), nothing recorded.
    replay = await step(world, "v11a", signup["id"], "check-out", {"qr": code["qr"]})
    assert replay.status_code == 409 and replay.json()["error"]["code"] == "presence_code_used"
    far = await step(world, "v11a", signup["id"], "check-out", near(5_000))
    assert far.status_code == 422 and far.json()["error"]["details"]["reason"] == "out_of_range"
    assert await count(app, HoursEntry) == 0 and await count(app, PresenceCodeUse) == 1

    out = await step(world, "v11a", signup["id"], "check-out", near(50))
    assert out.status_code == 200, out.text
    assert out.json()["checked_out_proof"] == "gps" and out.json()["hours"] == 0.5 and out.json()["verified"]
    hours = (await world.client.get("/volunteer/me/hours", headers=world.h("v11a"))).json()
    assert [(e["activity_signup_id"], e["verified"], e["hours"]) for e in hours["items"]] == [(signup["id"], True, 0.5)]
    assert hours["totals"]["credit"] == 0.5 and hours["totals"]["unverified"] == 0


async def test_unproven_span_hours_are_unverified(world: World) -> None:
    activity = await publish(world)
    signup = await signed(world, "v11b", activity["slots"][0]["id"])
    assert (await step(world, "v11b", signup["id"], "check-in")).json()["checked_in_proof"] is None
    out = (await step(world, "v11b", signup["id"], "check-out")).json()
    assert out["verified"] is False
    hours = (await world.client.get("/volunteer/me/hours", headers=world.h("v11b"))).json()
    assert hours["totals"]["unverified"] == 0.5


async def test_the_units_policy_governs_activity_proofs(world: World, app: FastAPI) -> None:
    await world.client.put(
        f"/admin/units/{world.units['suo1']}/policy",
        json={"presence_proofs": ["code"], "allow_unproven": False},
        headers=world.h("suo1_admin"),
    )
    activity = await publish(world)
    signup = await signed(world, "v11a", activity["slots"][0]["id"])
    for body, reason in (({}, "proof_required"), (near(0), "proof_not_accepted")):
        response = await step(world, "v11a", signup["id"], "check-in", body)
        assert response.status_code == 422 and response.json()["error"]["details"]["reason"] == reason
    confirm = await world.client.post(
        f"/admin/activity-signups/{signup['id']}/confirm-presence",
        json={"reason": "无信号"},
        headers=world.h("suo1_admin"),
    )
    assert confirm.status_code == 422
    async with app.state.sessionmaker() as session:
        assert (
            await session.scalar(select(ActivitySignup.checked_in_at).where(ActivitySignup.id == signup["id"])) is None
        )


async def test_an_admin_confirms_a_participants_presence(world: World) -> None:
    activity = await publish(world)
    signup = await signed(world, "v11a", activity["slots"][0]["id"])
    path = f"/admin/activity-signups/{signup['id']}/confirm-presence"
    body = {"reason": "现场签到表核实"}
    assert (await world.client.post(path, json=body, headers=world.h("suo2_admin"))).status_code == 404
    assert (await world.client.post(path, json=body, headers=world.h("v11a"))).status_code == 403
    assert (await world.client.post(path, json={}, headers=world.h("suo1_admin"))).status_code == 422
    done = await world.client.post(path, json=body, headers=world.h("zhan11_admin"))
    assert done.status_code == 404  # the activity is 所1's, above 站11's admin
    done = await world.client.post(path, json=body, headers=world.h("suo1_admin"))
    assert done.status_code == 200 and done.json()["checked_in_proof"] == "admin"
    assert (await world.client.post(path, json=body, headers=world.h("suo1_admin"))).status_code == 409


# --- statistics and exports beside orders -------------------------------------------------------------------


def _today() -> dict[str, str]:
    day = datetime.now(UTC)
    return {"from": (day - timedelta(days=2)).date().isoformat(), "to": (day + timedelta(days=2)).date().isoformat()}


async def test_activities_appear_in_stats_and_the_export(world: World) -> None:
    activity = await publish(world, capacity=1)
    slot = activity["slots"][0]["id"]
    first, second = await signed(world, "v11a", slot), await signed(world, "v11b", slot)
    assert second["status"] == "waitlisted"
    await step(world, "v11a", first["id"], "check-in", near(10))
    await step(world, "v11a", first["id"], "check-out")  # unproven check-out: 未核验
    stats = await world.client.get("/admin/stats", params=_today(), headers=world.h("suo1_admin"))
    assert stats.status_code == 200, stats.text
    figures = stats.json()["activities"]
    assert figures == {
        "activities": 1,
        "slots": 1,
        "places": 1,
        "confirmed": 1,
        "waitlisted": 1,
        "participants": 1,
        "participations": 1,
        "hours": 0.5,
        "unverified_hours": 0.5,
    }
    other = await world.client.get("/admin/stats", params=_today(), headers=world.h("suo2_admin"))
    assert other.json()["activities"]["activities"] == 0  # another branch sees none of it

    export = await world.client.get("/admin/exports/activities.csv", params=_today(), headers=world.h("suo1_admin"))
    assert export.status_code == 200 and export.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert rows[0] == list(activity_reports.ACTIVITY_HEADER)
    assert len(rows) == 3
    done = next(r for r in rows[1:] if r[6] == str(world.volunteers["v11a"]))
    assert (done[8], done[10], done[12], done[13], done[14]) == ("已录取", "定位", "未核验", "0.5", "是")
    waiting = next(r for r in rows[1:] if r[6] == str(world.volunteers["v11b"]))
    assert waiting[8] == "候补" and waiting[13] == ""
    outside = await world.client.get("/admin/exports/activities.csv", params=_today(), headers=world.h("suo2_admin"))
    assert len(list(csv.reader(io.StringIO(outside.content.decode("utf-8-sig"))))) == 1  # the header only

    # The volunteers' hours: the activity's beside the orders', in the credit total and the unverified.
    hours = await world.client.get("/admin/exports/volunteer-hours.csv", params=_today(), headers=world.h("suo1_admin"))
    table = list(csv.DictReader(io.StringIO(hours.content.decode("utf-8-sig"))))
    mine = next(r for r in table if r["志愿者编号"] == str(world.volunteers["v11a"]))
    assert (mine["服务订单数"], mine["服务时长(小时)"], mine["活动时长(小时)"]) == ("0", "0.0", "0.5")
    assert (mine["信用时长合计(小时)"], mine["荣誉时长(小时)"], mine["其中未核验(小时)"]) == ("0.5", "0.0", "0.5")
    assert str(world.volunteers["v11b"]) not in [r["志愿者编号"] for r in table]  # waitlisted: no hours
    elsewhere = await world.client.get(
        "/admin/exports/volunteer-hours.csv", params=_today(), headers=world.h("suo2_admin")
    )
    assert str(world.volunteers["v11a"]) not in elsewhere.content.decode("utf-8-sig")


async def test_a_slot_code_serves_each_participant_once_even_at_once(world: World, app: FastAPI) -> None:
    activity = await publish(world)
    slot = activity["slots"][0]["id"]
    mine, theirs = await signed(world, "v11a", slot), await signed(world, "v11b", slot)
    code = (await world.client.get(f"/admin/activity-slots/{slot}/presence-code", headers=world.h("suo1_admin"))).json()
    answers = await asyncio.gather(
        *(step(world, "v11a", mine["id"], "check-in", {"code": code["code"]}) for _ in range(6))
    )
    assert sorted(a.status_code for a in answers) == [200] + [409] * 5
    assert (await step(world, "v11b", theirs["id"], "check-in", {"qr": code["qr"]})).status_code == 200
    assert await count(app, PresenceCodeUse) == 2  # one use per participant
    # Another slot's code is not this slot's.
    other = (await publish(world))["slots"][0]["id"]
    foreign = (
        await world.client.get(f"/admin/activity-slots/{other}/presence-code", headers=world.h("suo1_admin"))
    ).json()
    refused = await step(world, "v11a", mine["id"], "check-out", {"code": foreign["code"]})
    assert refused.status_code == 422 and refused.json()["error"]["details"]["reason"] == "code_invalid"


# --- cancelling an activity ---------------------------------------------------------------------------------


async def _cancel(world: World, admin: str, activity_id: int, body: Any) -> httpx.Response:
    return await world.client.post(f"/admin/activities/{activity_id}/cancel", json=body, headers=world.h(admin))


async def test_staff_cancel_an_activity_with_a_reason_and_the_checked_in_keep_their_hours(world: World) -> None:
    activity = await publish(world, capacity=2)
    slot = activity["slots"][0]["id"]
    present = await signed(world, "v11a", slot)
    assert (await step(world, "v11a", present["id"], "check-in", near(10))).status_code == 200
    confirmed, waiting = await signed(world, "v11b", slot), await signed(world, "v12", slot)
    assert (confirmed["status"], waiting["status"]) == ("confirmed", "waitlisted")

    assert (await _cancel(world, "suo2_admin", activity["id"], {"reason": "暴雨预警"})).status_code == 404
    assert (await _cancel(world, "suo1_admin", activity["id"], {})).status_code == 422
    assert (await _cancel(world, "v11a", activity["id"], {"reason": "暴雨预警"})).status_code == 403
    unchanged = await world.client.get(f"/admin/activities/{activity['id']}", headers=world.h("suo1_admin"))
    assert unchanged.json()["status"] == "published" and unchanged.json()["cancelled_at"] is None

    done = await _cancel(world, "suo1_admin", activity["id"], {"reason": "暴雨预警"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["status"], body["cancel_reason"]) == ("cancelled", "暴雨预警") and body["cancelled_at"]
    assert body["slots"][0]["confirmed"] == 1 and body["slots"][0]["waitlisted"] == 0  # the one checked in
    again = await _cancel(world, "suo1_admin", activity["id"], {"reason": "再次"})
    assert again.status_code == 409 and again.json()["error"]["details"]["status"] == "cancelled"

    mine = {s["id"]: s["status"] for s in (await world.client.get("/activities/mine", headers=world.h("v11b"))).json()}
    assert mine[confirmed["id"]] == "cancelled"
    assert (await step(world, "v11b", confirmed["id"], "check-in", near(10))).status_code == 409
    refused = await sign_up(world, "v12", slot)
    assert refused.status_code == 409 and refused.json()["error"]["details"]["status"] == "cancelled"
    listed = (await world.client.get("/activities", headers=world.h("v12"))).json()["items"]
    assert activity["id"] not in [a["id"] for a in listed]
    # Whoever was there already checks out as before: the hours served are theirs.
    out = await step(world, "v11a", present["id"], "check-out", near(10))
    assert out.status_code == 200 and out.json()["hours"] == 0.5


async def _activity_notices(app: FastAPI) -> list[tuple[str, int | None, dict[str, Any]]]:
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(OutboxMessage.topic, OutboxMessage.recipient_user_id, OutboxMessage.payload)
            .where(OutboxMessage.topic.like("activity.%"))
            .order_by(OutboxMessage.id)
        )
        return [(topic, user_id, payload) for topic, user_id, payload in rows]


async def test_a_volunteer_on_several_slots_hears_once_and_past_slots_are_no_news(world: World, app: FastAPI) -> None:
    start = datetime.now(UTC) + timedelta(minutes=30)
    slots = [
        {
            "starts_at": (start + timedelta(hours=h)).isoformat(),
            "ends_at": (start + timedelta(hours=h + 1)).isoformat(),
            "capacity": 2,
        }
        for h in (0, 2)
    ]
    activity = await publish(world, slots=slots)
    for slot in activity["slots"]:
        await signed(world, "v11a", slot["id"])
    moved = await _edit(world, "suo1_admin", f"/admin/activities/{activity['id']}", {"address": "新地点"})
    assert moved.status_code == 200
    assert (await _cancel(world, "suo1_admin", activity["id"], {"reason": "暴雨"})).status_code == 200
    assert [(t, u) for t, u, _ in await _activity_notices(app)] == [
        ("activity.change", world.users["v11a"]),
        ("activity.cancel", world.users["v11a"]),
    ]


async def test_volunteers_hear_of_a_place_freed_for_them_and_of_a_cancelled_activity(
    world: World, app: FastAPI
) -> None:
    """候补转正 tells the volunteer promoted; 取消活动 tells everyone whose sign-up it cancelled (the one
    already checked in keeps the place, and hears nothing), with the reason. Outbox rows, written in the
    transaction that decided it."""
    activity = await publish(world, capacity=1)
    slot = activity["slots"][0]["id"]
    first = await signed(world, "v11a", slot)
    second, third = await signed(world, "v11b", slot), await signed(world, "v12", slot)
    assert (second["status"], third["status"]) == ("waitlisted", "waitlisted")
    assert await _activity_notices(app) == []  # signing up is answered at once: nothing to send

    assert (await step(world, "v11a", first["id"], "cancel")).status_code == 200
    [(topic, user_id, payload)] = await _activity_notices(app)
    assert (topic, user_id) == ("activity.promote", world.users["v11b"])
    assert payload["activity_id"] == activity["id"] and payload["title"] == "重阳节义诊"
    assert (payload["status"], payload["action"]) == ("confirmed", "promote") and payload["slot_starts_at"]

    assert (await step(world, "v11b", second["id"], "check-in", near(10))).status_code == 200
    assert (await _cancel(world, "suo1_admin", activity["id"], {"reason": "暴雨预警"})).status_code == 200
    notices = await _activity_notices(app)
    assert [(t, u) for t, u, _ in notices] == [
        ("activity.promote", world.users["v11b"]),
        ("activity.cancel", world.users["v12"]),  # not v11b, who is there; not v11a, who had left
    ]
    cancelled = notices[1][2]
    assert len({(t, u) for t, u, _ in notices}) == len(notices)  # one message a volunteer
    assert (cancelled["status"], cancelled["reason"], cancelled["activity_id"]) == (
        "cancelled",
        "暴雨预警",
        activity["id"],
    )
    # A refused cancellation writes nothing.
    assert (await _cancel(world, "suo1_admin", activity["id"], {"reason": "再次"})).status_code == 409
    assert len(await _activity_notices(app)) == 2


async def test_a_sign_up_waiting_on_the_slot_while_the_activity_is_cancelled_is_refused(
    world: World, app: FastAPI, database_url: str
) -> None:
    """The sign-up's first read saw the activity published, then waited for the slot a cancellation
    held: once the cancellation commits, the sign-up must see it (no sign-up on a cancelled activity)."""
    activity = await publish(world, capacity=2)
    slot = activity["slots"][0]["id"]
    async with lock_holder(database_url) as (holder, transaction):
        await holder.execute("SELECT 1 FROM activity_slots WHERE id = $1 FOR UPDATE", slot)
        cancelling = asyncio.create_task(_cancel(world, "suo1_admin", activity["id"], {"reason": "场地取消"}))
        await lock_waiters(holder, 1)  # the cancellation holds the activity and waits for the slot
        signing = asyncio.create_task(sign_up(world, "v11a", slot))
        await lock_waiters(holder, 2)  # the sign-up read the activity published, and waits for the slot
        await transaction.rollback()
    assert (await cancelling).status_code == 200
    refused = await signing
    assert refused.status_code == 409, refused.text
    async with app.state.sessionmaker() as session:
        live = select(func.count()).where(ActivitySignup.slot_id == slot, ActivitySignup.status != "cancelled")
        assert await session.scalar(live) == 0
        assert await session.scalar(select(ActivitySlot.confirmed).where(ActivitySlot.id == slot)) == 0


async def test_a_check_in_that_waited_while_staff_moved_the_slot_is_judged_by_the_new_times(
    world: World, app: FastAPI, database_url: str
) -> None:
    """Staff move the slot two days on (holding the slot and its sign-ups, as ``edit_slot`` does) while a
    participant checks in: the check-in waits, and once the move commits it must be judged by the new
    times (not begun: 409), not by the times it would have read before waiting."""
    activity = await publish(world, capacity=2)
    slot = activity["slots"][0]["id"]
    signup = await signed(world, "v11a", slot)
    async with lock_holder(database_url) as (holder, transaction):
        await holder.execute("SELECT 1 FROM activity_slots WHERE id = $1 FOR UPDATE", slot)
        await holder.execute("SELECT 1 FROM activity_signups WHERE slot_id = $1 FOR UPDATE", slot)
        checking = asyncio.create_task(step(world, "v11a", signup["id"], "check-in", near(10)))
        await lock_waiters(holder, 1)
        await holder.execute(
            "UPDATE activity_slots SET starts_at = starts_at + interval '2 days',"
            " ends_at = ends_at + interval '2 days' WHERE id = $1",
            slot,
        )
        await transaction.commit()
    refused = await checking
    assert refused.status_code == 409, refused.text
    assert "不在活动时段内" in refused.json()["error"]["message"]
    async with app.state.sessionmaker() as session:
        checked_in = select(ActivitySignup.checked_in_at).where(ActivitySignup.id == signup["id"])
        assert await session.scalar(checked_in) is None


async def test_a_sign_up_is_never_both_cancelled_and_checked_in(world: World, app: FastAPI, database_url: str) -> None:
    """A check-in and the participant's cancellation of the same sign-up, queued one after the other
    behind a lock: the check-in is done, and the cancellation then finds it checked in (409). A
    cancellation that read the sign-up before the check-in landed would overwrite it."""
    activity = await publish(world, capacity=2)
    slot = activity["slots"][0]["id"]
    signup = await signed(world, "v11a", slot)
    async with lock_holder(database_url) as (holder, transaction):
        await holder.execute("SELECT 1 FROM activity_signups WHERE id = $1 FOR UPDATE", signup["id"])
        checking = asyncio.create_task(step(world, "v11a", signup["id"], "check-in", near(10)))
        await lock_waiters(holder, 1)
        cancelling = asyncio.create_task(step(world, "v11a", signup["id"], "cancel"))
        await lock_waiters(holder, 2)
        await transaction.rollback()
    assert (await checking).status_code == 200
    refused = await cancelling
    assert refused.status_code == 409, refused.text
    async with app.state.sessionmaker() as session:
        row = (
            await session.execute(
                select(ActivitySignup.status, ActivitySignup.checked_in_at).where(ActivitySignup.id == signup["id"])
            )
        ).one()
        assert row.status == "confirmed" and row.checked_in_at is not None


async def test_twenty_cancellations_at_once_across_instances_cancel_once(
    world: World, two_instances: tuple[httpx.AsyncClient, ...]
) -> None:
    """The activity's row is locked: of 20 simultaneous cancellations through two instances exactly one
    is done (and its reason kept); the others find it cancelled (409)."""
    activity = await publish(world, capacity=2)
    answers = await asyncio.gather(
        *(
            two_instances[i % 2].post(
                f"/admin/activities/{activity['id']}/cancel", json={"reason": f"原因{i}"}, headers=world.h("suo1_admin")
            )
            for i in range(20)
        )
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 19, codes
    winner = next(a.json() for a in answers if a.status_code == 200)
    kept = await world.client.get(f"/admin/activities/{activity['id']}", headers=world.h("suo1_admin"))
    assert kept.json()["cancel_reason"] == winner["cancel_reason"]
    assert kept.json()["cancelled_at"] == winner["cancelled_at"]
