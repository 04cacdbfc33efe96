"""Volunteer ledger: 信用 / 荣誉 hours, points, star levels, ratings, 回访 and the volunteer's history."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain import Status
from app.models import HoursEntry, Order, PiiAccess, PointsEntry, Rating, ServiceRecord, TeamMember
from app.schemas.common import mask_phone
from app.services.ledger import provable_hours
from app.services.volunteering import star_level
from tests.helpers import snapshot
from tests.world import World

Maker = async_sessionmaker[AsyncSession]


# --- helpers --------------------------------------------------------------------------------------


async def check_in_ago(sessionmaker: Maker, order_id: int, minutes: float) -> None:
    """Move the order's check-in back in time, so a longer service span can be reported."""
    async with sessionmaker() as session, session.begin():
        at = datetime.now(UTC) - timedelta(minutes=minutes)
        await session.execute(update(Order).where(Order.id == order_id).values(checked_in_at=at))


async def served(
    world: World,
    sessionmaker: Maker,
    hours: dict[str, str],
    *,
    span_minutes: float = 24 * 60,
    stars: int | None = None,
    resident: str = "r1",
) -> dict[str, Any]:
    """An order of 站11 held by v11a, checked in ``span_minutes`` ago, completed with ``hours`` per
    participant, and rated when ``stars`` is given."""
    order = await world.order_in(Status.IN_SERVICE, resident=resident)
    await check_in_ago(sessionmaker, order["id"], span_minutes)
    completed = await world.ok("v11a", order["id"], "complete", complete_body(world, hours))
    if stars is not None:
        return await world.ok(resident, order["id"], "rate", {"stars": stars})
    return completed


def complete_body(world: World, hours: dict[str, str]) -> dict[str, Any]:
    return world.complete_body() | {
        "participants": [{"volunteer_id": world.volunteers[v], "hours": h} for v, h in hours.items()]
    }


async def get(world: World, path: str, user: str, **params: Any) -> Any:
    response = await world.client.get(path, params=params, headers=world.h(user))
    assert response.status_code == 200, response.text
    return response.json()


async def post(world: World, path: str, user: str, body: dict[str, Any], expect: int = 201) -> Any:
    response = await world.client.post(path, json=body, headers=world.h(user))
    assert response.status_code == expect, response.text
    return response.json()


async def me(world: World, user: str = "v11a") -> dict[str, Any]:
    data: dict[str, Any] = await get(world, "/volunteer/me", user)
    return data


async def events(world: World, order_id: int) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = await get(world, f"/orders/{order_id}/events", "center_admin")
    return data


async def ledger_rows(sessionmaker: Maker) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every hours and points entry, as plain tuples (to prove a refused request wrote nothing)."""
    async with sessionmaker() as session:
        hours = (
            await session.execute(
                select(HoursEntry.volunteer_id, HoursEntry.kind, HoursEntry.hours, HoursEntry.order_id).order_by(
                    HoursEntry.id
                )
            )
        ).all()
        points = (
            await session.execute(
                select(PointsEntry.volunteer_id, PointsEntry.kind, PointsEntry.delta).order_by(PointsEntry.id)
            )
        ).all()
    return [tuple(r) for r in hours], [tuple(r) for r in points]


# --- 信用时长 through completed orders ------------------------------------------------------------


async def test_completion_credits_each_participant_once(world: World, sessionmaker: Maker) -> None:
    order = await world.order_in(Status.IN_SERVICE)
    await check_in_ago(sessionmaker, order["id"], 150)
    body = complete_body(world, {"v11a": "2", "v11b": "1.5"})
    key = {"Idempotency-Key": "complete-once"}
    first = await world.act("v11a", order["id"], "complete", body, headers=key)
    assert first.status_code == 200, first.text
    hours, points = await ledger_rows(sessionmaker)
    v11a, v11b = world.volunteers["v11a"], world.volunteers["v11b"]
    assert sorted(hours) == sorted(
        [(v11a, "service", Decimal("2.0"), order["id"]), (v11b, "service", Decimal("1.5"), order["id"])]
    )
    assert sorted(points) == sorted([(v11a, "earned", 20), (v11b, "earned", 15)])  # default 10 积分/小时
    async with sessionmaker() as session:
        record_id = await session.scalar(select(ServiceRecord.id).where(ServiceRecord.order_id == order["id"]))
        record_ids = set(await session.scalars(select(HoursEntry.record_id)))
    assert record_ids == {record_id}

    replay = await world.act("v11a", order["id"], "complete", body, headers=key)  # a client retry
    assert replay.status_code == 200 and replay.json() == first.json()
    again = await world.act("v11a", order["id"], "complete", body)  # a second submission
    assert again.status_code == 409
    assert await ledger_rows(sessionmaker) == (hours, points)

    profile = await me(world, "v11a")
    assert Decimal(profile["service_hours"]) == Decimal("2.0")
    assert profile["points"] == 20 and profile["service_count"] == 1
    assert Decimal((await me(world, "v11b"))["service_hours"]) == Decimal("1.5")


async def test_earned_points_follow_the_order_units_policy(world: World, sessionmaker: Maker) -> None:
    response = await world.client.put(
        f"/admin/units/{world.units['suo1']}/policy", json={"points_per_hour": 15}, headers=world.h("suo1_admin")
    )
    assert response.status_code == 200, response.text
    await served(world, sessionmaker, {"v11a": "1.5"})  # 1.5 × 15 = 22.5 → 23 (half up)
    assert (await me(world))["points"] == 23


async def test_hours_beyond_the_check_in_span_are_refused(world: World, app: FastAPI, sessionmaker: Maker) -> None:
    order = await world.order_in(Status.IN_SERVICE)
    await check_in_ago(sessionmaker, order["id"], 70)  # 1 h 10 min → at most 1.5 h
    before = await snapshot(app, order["id"])
    too_long = await world.act("v11a", order["id"], "complete", complete_body(world, {"v11a": "1.5", "v11b": "2"}))
    assert too_long.status_code == 422, too_long.text
    error = too_long.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["details"]["allowed_hours"] == "1.5"
    assert error["details"]["volunteer_ids"] == [world.volunteers["v11b"]]
    assert await snapshot(app, order["id"]) == before
    assert await ledger_rows(sessionmaker) == ([], [])
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ServiceRecord)) == 0

    done = await world.act("v11a", order["id"], "complete", complete_body(world, {"v11a": "1.5", "v11b": "1"}))
    assert done.status_code == 200, done.text
    assert Decimal((await me(world))["service_hours"]) == Decimal("1.5")


def test_provable_hours_round_up_to_the_next_half_hour() -> None:
    start = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
    assert provable_hours(start, start) == 0
    assert provable_hours(start, start + timedelta(seconds=1)) == Decimal("0.5")
    assert provable_hours(start, start + timedelta(minutes=30)) == Decimal("0.5")
    assert provable_hours(start, start + timedelta(minutes=31)) == Decimal("1")
    assert provable_hours(start, start + timedelta(hours=2, minutes=1)) == Decimal("2.5")
    assert provable_hours(start, start - timedelta(minutes=5)) == 0  # a clock running backwards proves nothing


# --- audited corrections (时长更正) ----------------------------------------------------------------


async def test_adjustment_is_audited_in_the_timeline_and_moves_points(world: World, sessionmaker: Maker) -> None:
    order = await served(world, sessionmaker, {"v11a": "2", "v11b": "2"}, stars=4)
    v11a = world.volunteers["v11a"]
    body = {"volunteer_id": v11a, "hours": "1", "reason": "签到后实际只服务了一小时 (群众回访核实)"}
    result = await post(world, f"/admin/orders/{order['id']}/hours", "zhan11_admin", body)
    assert Decimal(result["previous_hours"]) == Decimal("2.0")
    assert Decimal(result["delta"]) == Decimal("-1.0") and result["points_delta"] == -10
    assert result["entry"]["kind"] == "adjustment" and result["entry"]["actor_id"] == world.users["zhan11_admin"]

    last = (await events(world, order["id"]))[-1]
    assert last["action"] == "adjust_hours"
    assert last["from_status"] == last["to_status"] == "rated"
    assert last["actor_id"] == world.users["zhan11_admin"] and last["actor_role"] == "admin"
    assert last["reason"] == body["reason"]
    assert last["payload"] == {
        "volunteer_id": v11a,
        "previous_hours": 2.0,
        "hours": 1.0,
        "delta": -1.0,
        "points_delta": -10,
    }
    after = await get(world, f"/orders/{order['id']}", "center_admin")
    assert after["version"] == order["version"]  # not a state change
    assert after["updated_at"] > order["updated_at"]

    profile = await me(world)
    assert Decimal(profile["service_hours"]) == Decimal("1.0") and profile["points"] == 10
    summary = await get(world, f"/admin/volunteers/{v11a}/summary", "zhan11_admin")
    assert {k: Decimal(v) for k, v in summary["hours"].items()} == {
        "service": Decimal(2),
        "adjustment": Decimal(-1),
        "honor": Decimal(0),
        "credit": Decimal(1),
        "unverified": Decimal(2),  # checked in without a proof of presence (未核验)
    }
    # Corrected upward later: the total is what the admin says, the difference is what is appended.
    up = await post(world, f"/admin/orders/{order['id']}/hours", "suo1_admin", body | {"hours": "3"})
    assert Decimal(up["delta"]) == Decimal("2.0") and up["points_delta"] == 20
    assert (await me(world))["points"] == 30
    assert Decimal((await me(world, "v11b"))["service_hours"]) == Decimal("2.0")  # the other participant untouched
    assert [e["action"] for e in await events(world, order["id"])][-2:] == ["adjust_hours", "adjust_hours"]


async def test_an_hours_correction_never_takes_points_below_zero(world: World, sessionmaker: Maker) -> None:
    order = await served(world, sessionmaker, {"v11a": "2"})  # 20 points
    v11a = world.volunteers["v11a"]
    await post(world, f"/admin/volunteers/{v11a}/points", "zhan11_admin", {"delta": -15, "reason": "测试扣减"})
    body = {"volunteer_id": v11a, "hours": "0", "reason": "未实际到场"}
    result = await post(world, f"/admin/orders/{order['id']}/hours", "zhan11_admin", body)
    assert result["points_delta"] == -5  # capped at the balance, not -20
    profile = await me(world)
    assert profile["points"] == 0 and Decimal(profile["service_hours"]) == 0


async def test_refused_adjustments_change_nothing(world: World, app: FastAPI, sessionmaker: Maker) -> None:
    order = await served(world, sessionmaker, {"v11a": "2"})
    in_service = await world.order_in(Status.IN_SERVICE, resident="r2")
    v11a, v11b = world.volunteers["v11a"], world.volunteers["v11b"]
    good = {"volunteer_id": v11a, "hours": "1", "reason": "核实"}
    before = await ledger_rows(sessionmaker), await snapshot(app, order["id"])
    cases = [
        ("zhan21_admin", order["id"], good, 404),  # another subtree
        ("v11a", order["id"], good, 403),
        ("r1", order["id"], good, 403),
        ("zhan11_admin", in_service["id"], good, 409),  # not finished yet
        ("zhan11_admin", order["id"], good | {"volunteer_id": v11b}, 422),  # did not take part
        ("zhan11_admin", order["id"], good | {"hours": "2"}, 422),  # no change
        ("zhan11_admin", order["id"], good | {"hours": "25"}, 422),  # over 24 h in one round
        ("zhan11_admin", order["id"], good | {"hours": "-1"}, 422),
        ("zhan11_admin", order["id"], good | {"hours": "1.25"}, 422),
        ("zhan11_admin", order["id"], {"volunteer_id": v11a, "hours": "1"}, 422),  # reason required
        ("zhan11_admin", order["id"], good | {"reason": "   "}, 422),
        ("zhan11_admin", 999_999, good, 404),
    ]
    for user, order_id, body, expected in cases:
        response = await world.client.post(f"/admin/orders/{order_id}/hours", json=body, headers=world.h(user))
        assert response.status_code == expected, (user, body, response.text)
    assert (await ledger_rows(sessionmaker), await snapshot(app, order["id"])) == before


# --- 荣誉时长, bonuses, star levels ----------------------------------------------------------------


async def test_honor_hours_are_kept_apart_from_credit_hours(world: World, sessionmaker: Maker) -> None:
    await served(world, sessionmaker, {"v11a": "2"})
    v11a = world.volunteers["v11a"]
    honor = {"hours": "150", "reason": "2025 年度抗洪抢险志愿服务 (纸质证明已归档)"}
    result = await post(world, f"/admin/volunteers/{v11a}/honor-hours", "suo1_admin", honor)
    assert result["entry"]["kind"] == "honor" and result["entry"]["order_id"] is None
    assert result["entry"]["actor_id"] == world.users["suo1_admin"]
    profile = await me(world)
    assert Decimal(profile["service_hours"]) == Decimal("2.0")
    assert Decimal(profile["honor_hours"]) == Decimal("150.0")
    assert profile["star_level"]["stars"] == 0  # 150 荣誉 hours earn no star
    assert profile["points"] == 20  # and no points
    page = await get(world, "/volunteer/me/hours", "v11a", kind="honor")
    assert [e["kind"] for e in page["items"]] == ["honor"]
    assert Decimal(page["totals"]["credit"]) == Decimal(2) and Decimal(page["totals"]["honor"]) == Decimal(150)
    all_kinds = await get(world, "/volunteer/me/hours", "v11a")
    assert [e["kind"] for e in all_kinds["items"]] == ["honor", "service"]

    # Withdrawing an award: fine down to zero, never below.
    too_much = {"hours": "-151", "reason": "撤销"}
    assert await post(world, f"/admin/volunteers/{v11a}/honor-hours", "suo1_admin", too_much, 409)
    await post(world, f"/admin/volunteers/{v11a}/honor-hours", "suo1_admin", {"hours": "-150", "reason": "撤销"})
    assert Decimal((await me(world))["honor_hours"]) == 0
    # Scope and validation.
    await post(world, f"/admin/volunteers/{v11a}/honor-hours", "zhan21_admin", honor, 404)
    await post(world, f"/admin/volunteers/{v11a}/honor-hours", "suo1_admin", {"hours": "0", "reason": "x"}, 422)
    await post(world, f"/admin/volunteers/{v11a}/honor-hours", "suo1_admin", {"hours": "5"}, 422)


async def test_bonus_points_with_reason_and_never_a_negative_balance(world: World) -> None:
    v11a = world.volunteers["v11a"]
    path = f"/admin/volunteers/{v11a}/points"
    award = await post(world, path, "center_admin", {"delta": 50, "reason": "学雷锋日优秀志愿者"})
    assert award["balance"] == 50 and award["entry"]["kind"] == "bonus"
    assert (
        award["entry"]["reason"] == "学雷锋日优秀志愿者" and award["entry"]["actor_id"] == world.users["center_admin"]
    )
    refused = await post(world, path, "center_admin", {"delta": -60, "reason": "扣分"}, 409)
    assert refused["error"]["details"]["balance"] == 50
    assert (await post(world, path, "center_admin", {"delta": -50, "reason": "扣分"}))["balance"] == 0
    await post(world, path, "zhan21_admin", {"delta": 5, "reason": "越权"}, 404)
    await post(world, path, "center_admin", {"delta": 0, "reason": "零"}, 422)
    await post(world, path, "center_admin", {"delta": 5}, 422)
    ledger = await get(world, "/volunteer/me/points", "v11a")
    assert [e["delta"] for e in ledger["items"]] == [-50, 50] and ledger["balance"] == 0


@pytest.mark.parametrize(
    ("hours", "stars", "next_threshold"),
    [
        ("0", 0, 100),
        ("99.9", 0, 100),
        ("100", 1, 300),
        ("299.9", 1, 300),
        ("300", 2, 600),
        ("600", 3, 1000),
        ("999.5", 3, 1000),
        ("1000", 4, 1500),
        ("1500", 5, None),
        ("4000", 5, None),
    ],
)
def test_star_level_thresholds(hours: str, stars: int, next_threshold: int | None) -> None:
    level = star_level(Decimal(hours))
    assert level.stars == stars
    if next_threshold is None:
        assert level.next_stars is None and level.hours_to_next is None and level.progress == 1.0
    else:
        assert level.next_stars == stars + 1
        assert level.next_threshold == next_threshold
        assert level.hours_to_next == Decimal(next_threshold) - Decimal(hours)
        assert 0 <= level.progress < 1


async def test_star_level_on_the_profile_counts_credit_hours_only(world: World, sessionmaker: Maker) -> None:
    v11a = world.volunteers["v11a"]
    async with sessionmaker() as session, session.begin():  # a long record: 299.5 h of service already
        session.add(HoursEntry(volunteer_id=v11a, kind="service", hours=Decimal("299.5")))
    await post(world, f"/admin/volunteers/{v11a}/honor-hours", "center_admin", {"hours": "1000", "reason": "荣誉"})
    level = (await me(world))["star_level"]
    assert level["stars"] == 1 and Decimal(level["hours_to_next"]) == Decimal("0.5")
    assert level["progress"] == pytest.approx(199.5 / 200, abs=1e-4)
    await served(world, sessionmaker, {"v11a": "0.5"})
    level = (await me(world))["star_level"]
    assert level["stars"] == 2 and level["next_stars"] == 3 and Decimal(level["current_threshold"]) == 300


# --- ratings and 回访 ------------------------------------------------------------------------------


async def test_rating_averages_per_volunteer_and_team(world: World, sessionmaker: Maker) -> None:
    await served(world, sessionmaker, {"v11a": "1", "v11b": "1"}, stars=5)
    await served(world, sessionmaker, {"v11a": "1"}, stars=2, resident="r2")
    await served(world, sessionmaker, {"v11a": "1"})  # completed, not rated: no stars counted
    a = await me(world, "v11a")
    assert a["rating_avg"] == 3.5 and a["rating_count"] == 2
    b = await me(world, "v11b")
    assert b["rating_avg"] == 5.0 and b["rating_count"] == 1
    assert (await me(world, "v12"))["rating_avg"] is None

    summary = await get(world, f"/admin/volunteers/{world.volunteers['v11a']}/summary", "suo1_admin")
    assert summary["rating_avg"] == 3.5 and summary["rating_count"] == 2
    assert summary["orders_served"] == 3 and summary["points_balance"] == 30
    team = await get(world, f"/admin/teams/{world.teams['team11']}/summary", "zhan11_admin")
    # The order both members served is one order and one rating for the team.
    assert team["rating_avg"] == 3.5 and team["rating_count"] == 2
    assert team["orders_served"] == 3 and team["member_count"] == 2
    assert Decimal(team["hours"]["credit"]) == Decimal(4) and team["points_balance"] == 40


async def test_summaries_are_scoped_to_the_admins_subtree(world: World) -> None:
    v11a, team11 = world.volunteers["v11a"], world.teams["team11"]
    for user in ("zhan11_admin", "suo1_admin", "center_admin"):
        await get(world, f"/admin/volunteers/{v11a}/summary", user)
        await get(world, f"/admin/teams/{team11}/summary", user)
    for path in (f"/admin/volunteers/{v11a}/summary", f"/admin/teams/{team11}/summary"):
        assert (await world.client.get(path, headers=world.h("zhan21_admin"))).status_code == 404
        assert (await world.client.get(path, headers=world.h("zhan12_admin"))).status_code == 404
        assert (await world.client.get(path, headers=world.h("v11a"))).status_code == 403
        assert (await world.client.get(path, headers=world.h("r1"))).status_code == 403


async def test_low_rating_is_flagged_listed_and_cleared_by_a_followup(world: World, sessionmaker: Maker) -> None:
    bad = await served(world, sessionmaker, {"v11a": "1"}, stars=2)
    good = await served(world, sessionmaker, {"v11a": "1"}, stars=3, resident="r2")
    assert bad["needs_followup"] is True and good["needs_followup"] is False
    flagged = await get(world, "/admin/orders", "suo1_admin", needs_followup="true")
    assert [o["id"] for o in flagged["items"]] == [bad["id"]]
    unflagged = await get(world, "/admin/orders", "suo1_admin", needs_followup="false")
    assert bad["id"] not in [o["id"] for o in unflagged["items"]] and good["id"] in [
        o["id"] for o in unflagged["items"]
    ]

    path = f"/admin/orders/{bad['id']}/followup"
    note = {"note": "已电话回访王大爷: 志愿者迟到半小时, 已致歉并约定下次提前联系"}
    await post(world, path, "zhan21_admin", note, 404)
    await post(world, path, "v11a", note, 403)
    await post(world, path, "r1", note, 403)
    await post(world, path, "zhan11_admin", {"note": ""}, 422)
    logged = select(func.count()).select_from(PiiAccess).where(PiiAccess.order_id == bad["id"])
    async with sessionmaker() as session:
        reads_before = await session.scalar(logged)
    cleared = await post(world, path, "zhan11_admin", note, 200)
    assert cleared["needs_followup"] is False and cleared["status"] == "rated"
    # The answer to an action: staff see the phone masked, and there is no unmasked read to log.
    assert cleared["contact_phone"] == mask_phone(bad["contact_phone"]) != bad["contact_phone"]
    async with sessionmaker() as session:
        assert await session.scalar(logged) == reads_before
    assert cleared["version"] == bad["version"]
    last = (await events(world, bad["id"]))[-1]
    assert last["action"] == "followup" and last["reason"] == note["note"]
    assert last["from_status"] == last["to_status"] == "rated" and last["actor_id"] == world.users["zhan11_admin"]
    assert (await get(world, "/admin/orders", "suo1_admin", needs_followup="true"))["items"] == []
    await post(world, path, "zhan11_admin", note, 409)  # nothing left to follow up
    await post(world, f"/admin/orders/{good['id']}/followup", "zhan11_admin", note, 409)


# --- the volunteer's history ----------------------------------------------------------------------


async def test_history_is_newest_first_and_keyset_paginated(world: World, sessionmaker: Maker) -> None:
    orders = [await served(world, sessionmaker, {"v11a": h}) for h in ("1", "1.5", "2")]
    first = await get(world, "/volunteer/me/records", "v11a", limit=2)
    assert [r["order_id"] for r in first["items"]] == [orders[2]["id"], orders[1]["id"]]
    top = first["items"][0]
    assert top["order_code"] == orders[2]["code"] and top["title"] == orders[2]["title"]
    assert Decimal(top["hours"]) == Decimal(2) and Decimal(top["order_hours"]) == Decimal(2)
    assert top["completed_at"] and top["round"] == 1
    assert first["next_cursor"]
    second = await get(world, "/volunteer/me/records", "v11a", limit=2, cursor=first["next_cursor"])
    assert [r["order_id"] for r in second["items"]] == [orders[0]["id"]] and second["next_cursor"] is None
    assert (await get(world, "/volunteer/me/records", "v11b"))["items"] == []

    points = await get(world, "/volunteer/me/points", "v11a", limit=2)
    assert [p["delta"] for p in points["items"]] == [20, 15] and points["balance"] == 45
    rest = await get(world, "/volunteer/me/points", "v11a", limit=2, cursor=points["next_cursor"])
    assert [p["delta"] for p in rest["items"]] == [10] and rest["next_cursor"] is None
    assert [p["order_id"] for p in rest["items"]] == [orders[0]["id"]]

    # A correction shows up in the record's order total, not in the hours recorded for the round.
    body = {"volunteer_id": world.volunteers["v11a"], "hours": "0.5", "reason": "更正"}
    await post(world, f"/admin/orders/{orders[0]['id']}/hours", "zhan11_admin", body)
    oldest = (await get(world, "/volunteer/me/records", "v11a", cursor=first["next_cursor"], limit=2))["items"][0]
    assert Decimal(oldest["hours"]) == Decimal(1) and Decimal(oldest["order_hours"]) == Decimal("0.5")
    adjustments = await get(world, "/volunteer/me/hours", "v11a", kind="adjustment")
    assert [Decimal(e["hours"]) for e in adjustments["items"]] == [Decimal("-0.5")]

    bad = await world.client.get("/volunteer/me/records", params={"cursor": "nope"}, headers=world.h("v11a"))
    assert bad.status_code == 422
    for path in ("/volunteer/me/records", "/volunteer/me/points", "/volunteer/me/hours"):
        assert (await world.client.get(path, headers=world.h("r1"))).status_code == 403
        assert (await world.client.get(path, headers=world.h("zhan11_admin"))).status_code == 403


async def test_ledgers_are_append_only(world: World, sessionmaker: Maker) -> None:
    await served(world, sessionmaker, {"v11a": "1"})
    for table in ("hours_entries", "points_entries"):
        async with sessionmaker() as session:
            with pytest.raises(DBAPIError, match="append-only"):
                async with session.begin():
                    await session.execute(text(f"UPDATE {table} SET volunteer_id = volunteer_id"))


# --- integrity: only those who could have served are credited; no one rates their own service ------


async def test_only_people_who_could_have_served_are_credited(world: World, app: FastAPI, sessionmaker: Maker) -> None:
    """Participants are the holder, members of the team it was dispatched to, and active volunteers of
    the order's subtree. A volunteer of another 所 (v21) or a suspended one (v11x) is refused: 422, and
    no record, hours or points are written."""
    order = await world.order_in(Status.IN_SERVICE)
    before = await ledger_rows(sessionmaker), await snapshot(app, order["id"])
    for outsider in ("v21", "v11x"):
        body = complete_body(world, {"v11a": "0.5", outsider: "0.5"})
        response = await world.act("v11a", order["id"], "complete", body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"]["volunteer_ids"] == [world.volunteers[outsider]]
    assert (await ledger_rows(sessionmaker), await snapshot(app, order["id"])) == before
    await world.ok("v11a", order["id"], "complete", complete_body(world, {"v11a": "0.5", "v11b": "0.5"}))


async def test_an_hours_correction_needs_an_admin_of_the_volunteer_too_and_stays_in_the_window(
    world: World, app: FastAPI, sessionmaker: Maker
) -> None:
    """v12 (站12) serves a 站11 order through team11, which they joined. 站11's admin sees the order
    but v12 is not theirs: 404. 所1's admin (both) may correct, up to the check-in → completion
    window (1.5 h here), not beyond it."""
    async with sessionmaker() as session, session.begin():
        session.add(TeamMember(team_id=world.teams["team11"], volunteer_id=world.volunteers["v12"]))
    order = await world.order_in(Status.APPROVED)
    await world.ok("zhan11_admin", order["id"], "dispatch", {"team_id": world.teams["team11"]})
    await world.ok("v12", order["id"], "accept")
    await world.ok("v12", order["id"], "check_in")
    await check_in_ago(sessionmaker, order["id"], 80)
    await world.ok("v12", order["id"], "complete", complete_body(world, {"v12": "1"}))
    path = f"/admin/orders/{order['id']}/hours"
    body = {"volunteer_id": world.volunteers["v12"], "hours": "1.5", "reason": "回访核实"}
    before = await ledger_rows(sessionmaker)
    assert (await world.client.post(path, json=body, headers=world.h("zhan11_admin"))).status_code == 404
    too_long = await world.client.post(path, json=body | {"hours": "24"}, headers=world.h("suo1_admin"))
    assert too_long.status_code == 422 and too_long.json()["error"]["details"]["allowed_hours"] == "1.5"
    assert await ledger_rows(sessionmaker) == before
    corrected = await post(world, path, "suo1_admin", body)
    assert Decimal(corrected["hours"]) == Decimal("1.5")


async def test_no_one_rates_their_own_service(world: World, app: FastAPI, sessionmaker: Maker) -> None:
    """v11b ordered for r1 (代点单). Holding the order (dispatched to v11b), or credited as a participant
    of v11a's round, v11b may not rate it: 403, nothing written. r1 may."""
    for holder, credited in (("v11b", {"v11b": "0.5"}), ("v11a", {"v11a": "0.5", "v11b": "0.5"})):
        order = await world.place("v11b", resident_id=world.users["r1"])
        await world.ok("zhan11_admin", order["id"], "approve")
        await world.ok("zhan11_admin", order["id"], "dispatch", {"volunteer_id": world.volunteers[holder]})
        for action in ("accept", "check_in"):
            await world.ok(holder, order["id"], action)
        done = await world.ok(holder, order["id"], "complete", complete_body(world, credited))
        if holder == "v11b":
            assert "rate" not in done["allowed_actions"]
        before = await snapshot(app, order["id"])
        refused = await world.act("v11b", order["id"], "rate", {"stars": 5})
        assert refused.status_code == 403, refused.text
        assert await snapshot(app, order["id"]) == before
        rated = await world.ok("r1", order["id"], "rate", {"stars": 4})
        assert rated["status"] == "rated" and rated["rating"]["by_proxy"] is False  # the resident's own
    async with sessionmaker() as session:
        raters = set((await session.execute(select(Rating.rated_by_id))).scalars())
    assert raters == {world.users["r1"]}


async def test_a_proxy_rating_is_marked_in_the_answer_timeline_stats_and_exports(world: World) -> None:
    """v11b ordered for r1 (代点单); v11a served; v11b, who did not serve, rates it: a 代评, marked in the
    answer and the order, the timeline, counted apart in the statistics and marked in the orders export."""
    order = await world.place("v11b", resident_id=world.users["r1"])
    await world.ok("zhan11_admin", order["id"], "approve")
    await world.ok("zhan11_admin", order["id"], "dispatch", {"volunteer_id": world.volunteers["v11a"]})
    for action in ("accept", "check_in"):
        await world.ok("v11a", order["id"], action)
    await world.ok("v11a", order["id"], "complete", complete_body(world, {"v11a": "0.5"}))
    answer = await world.ok("v11b", order["id"], "rate", {"stars": 5})
    assert answer["rating"]["stars"] == 5 and answer["rating"]["by_proxy"] is True
    detail = await get(world, f"/orders/{order['id']}", "r1")
    assert detail["rating"]["by_proxy"] is True and detail["rating"]["stars"] == 5
    rated = (await events(world, order["id"]))[-1]
    assert rated["action"] == "rate" and rated["payload"]["by_proxy"] is True
    stats = await get(world, "/admin/stats", "zhan11_admin")
    assert stats["overall"]["ratings"] == 1 and stats["overall"]["proxy_ratings"] == 1
    response = await world.client.get("/admin/exports/orders.csv", headers=world.h("zhan11_admin"))
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["评价星级"] == "5" and row["代评"] == "是" and row["代点单"] == "是"
