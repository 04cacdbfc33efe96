"""统计: figures checked against hand-computed values on a small county with known timestamps.

The orders are written straight into the database (with their events, service records, hours and
ratings) so every timestamp — and so every median — is exact. Period: March–April 2025, Asia/Shanghai.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain import Status
from app.models import HoursEntry, Order, OrderEvent, OrgUnit, Rating, ServiceParticipant, ServiceRecord
from tests.world import World

SHANGHAI = ZoneInfo("Asia/Shanghai")
PERIOD = {"from": "2025-03-01", "to": "2025-04-30"}  # Shanghai dates; "to" includes April 30


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@dataclass
class Spec:
    """One order of the fixture and what happened to it."""

    unit: str
    status: Status
    created: str  # Asia/Shanghai wall time
    category: str | None = "lecture"
    accept_after: int | None = None  # seconds after placing
    complete_after: int | None = None
    served: int = 0
    participants: list[tuple[str, str]] = field(default_factory=list)  # (volunteer, hours)
    adjustments: list[tuple[str, str]] = field(default_factory=list)  # (volunteer, hours delta)
    stars: int | None = None
    events: list[str] = field(default_factory=list)  # besides "place"
    title: str = "防诈骗宣讲"
    contact_name: str = "王大爷"


HOUR = 3600
ORDERS: dict[str, Spec] = {
    # 站11 (所1). A is placed at 06:00 on March 1 in Shanghai — still February 28 in UTC.
    "A": Spec("zhan11", Status.RATED, "2025-03-01 06:00", "lecture", HOUR, 5 * HOUR, 40,
              [("v11a", "2.0"), ("v11b", "1.5")], [("v11a", "0.5")], 5,
              ["approve", "publish", "grab", "check_in", "complete", "rate"]),
    "B": Spec("zhan11", Status.CLOSED, "2025-03-10 09:00", "health", 2 * HOUR, 10 * HOUR, 10, [("v11a", "3.0")],
              events=["escalate", "approve", "dispatch", "expire", "dispatch", "accept", "check_in", "complete",
                      "auto_close"]),
    # C is placed at 07:00 on April 1 in Shanghai — still March 31 in UTC: it belongs to April.
    "C": Spec("zhan11", Status.RATED, "2025-04-01 07:00", "lecture", 3 * HOUR, 20 * HOUR, 5, [("v11b", "1.0")],
              stars=3, events=["approve", "dispatch", "accept", "check_in", "complete", "rate"]),
    "D": Spec("zhan11", Status.CANCELLED, "2025-04-06 10:00", "lecture", events=["approve", "cancel"]),
    "E": Spec("zhan11", Status.CANCELLED, "2025-04-07 10:00", None, events=["cancel"],
              title="=HYPERLINK(\"http://evil.invalid\")", contact_name="@SUM(A1)"),
    # 站12 (所1)
    "F": Spec("zhan12", Status.REJECTED, "2025-03-15 10:00", "health", events=["escalate", "reject"]),
    "G": Spec("zhan12", Status.ACCEPTED, "2025-04-20 12:00", "lecture", 4 * HOUR,
              events=["approve", "dispatch", "expire", "dispatch", "accept"]),
    # 所1 itself, late on the last day of the period
    "H": Spec("suo1", Status.SUBMITTED, "2025-04-30 23:30", None, events=["escalate"]),
    # 站21 (所2)
    "I": Spec("zhan21", Status.RATED, "2025-03-20 10:00", "health", HOUR, 2 * HOUR, 100, [("v21", "2.5")], stars=4,
              events=["approve", "dispatch", "accept", "check_in", "complete", "rate"]),
    # Outside the period: a minute before it, and 03:00 on May 1 in Shanghai (still April 30 in UTC).
    "J": Spec("zhan11", Status.RATED, "2025-02-28 23:59", "lecture", HOUR, 2 * HOUR, 7, [("v11a", "1.0")], stars=1,
              events=["approve", "publish", "grab", "check_in", "complete", "rate"]),
    "K": Spec("zhan11", Status.REJECTED, "2025-05-01 03:00", "lecture", events=["escalate", "reject"]),
}  # fmt: skip
# The status each action of the fixture leads to (escalate keeps it).
NEXT_STATUS = {
    "place": "submitted",
    "approve": "approved",
    "reject": "rejected",
    "publish": "pooled",
    "dispatch": "dispatched",
    "expire": "approved",
    "grab": "accepted",
    "accept": "accepted",
    "check_in": "in_service",
    "complete": "completed",
    "rate": "rated",
    "auto_close": "closed",
    "cancel": "cancelled",
}
# 荣誉时长: (volunteer, hours, entered at). vsuo1's is outside the period.
HONOR = [("v11a", "10.0", "2025-03-05 12:00"), ("v21", "4.0", "2025-04-10 12:00"), ("vsuo1", "2.0", "2025-06-01 12:00")]


async def seed_orders(world: World, sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Write ``ORDERS`` and ``HONOR`` into the database; returns the order ids by name."""
    ids: dict[str, int] = {}
    async with sessionmaker() as session, session.begin():
        for name, spec in ORDERS.items():
            unit = await session.get(OrgUnit, world.units[spec.unit])
            assert unit is not None
            created = local(spec.created)
            accepted = created + timedelta(seconds=spec.accept_after) if spec.accept_after else None
            completed = created + timedelta(seconds=spec.complete_after) if spec.complete_after else None
            order = Order(
                code=f"T-{name}",
                resident_id=world.users["r1"],
                placed_by_id=world.users["r1"],
                category_id=world.categories[spec.category] if spec.category else None,
                title=spec.title,
                unit_id=unit.id,
                unit_path=unit.path,
                address="城关镇幸福村文化礼堂",
                contact_name=spec.contact_name,
                contact_phone="13812345678",
                channel="miniprogram",
                status=spec.status.value,
                accepted_at=accepted,
                checked_in_at=accepted,
                completed_at=completed,
                created_at=created,
                updated_at=created,
            )
            session.add(order)
            await session.flush()
            ids[name] = order.id
            current: str | None = None
            for i, action in enumerate(["place", *spec.events]):
                after = NEXT_STATUS.get(action, current or "submitted")
                session.add(
                    OrderEvent(
                        order_id=order.id,
                        action=action,
                        from_status=current,
                        to_status=after,
                        actor_role="system",
                        created_at=created + timedelta(minutes=i),
                    )
                )
                current = after
            assert current == spec.status.value, name
            if completed is None:
                continue
            record = ServiceRecord(
                order_id=order.id,
                round=1,
                summary="服务完成",
                served_count=spec.served,
                submitted_by_id=world.users["v11a"],
                created_at=completed,
            )
            session.add(record)
            await session.flush()
            for volunteer, hours in spec.participants:
                vid = world.volunteers[volunteer]
                session.add(ServiceParticipant(record_id=record.id, volunteer_id=vid, hours=Decimal(hours)))
                session.add(
                    HoursEntry(
                        volunteer_id=vid,
                        kind="service",
                        hours=Decimal(hours),
                        order_id=order.id,
                        record_id=record.id,
                        created_at=completed,
                    )
                )
            for volunteer, hours in spec.adjustments:
                session.add(
                    HoursEntry(
                        volunteer_id=world.volunteers[volunteer],
                        kind="adjustment",
                        hours=Decimal(hours),
                        order_id=order.id,
                        record_id=record.id,
                        reason="补登准备时间",
                        actor_id=world.users["center_admin"],
                        created_at=completed + timedelta(days=1),
                    )
                )
            if spec.stars is not None:
                session.add(
                    Rating(
                        order_id=order.id,
                        round=1,
                        stars=spec.stars,
                        rated_by_id=world.users["r1"],
                        created_at=completed,
                    )
                )
        for volunteer, hours, entered in HONOR:
            session.add(
                HoursEntry(
                    volunteer_id=world.volunteers[volunteer],
                    kind="honor",
                    hours=Decimal(hours),
                    reason="年度表彰",
                    actor_id=world.users["center_admin"],
                    created_at=local(entered),
                )
            )
    return ids


@pytest.fixture
async def seeded(world: World, sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    return await seed_orders(world, sessionmaker)


async def get_stats(
    world: World, user: str, expect: int = 200, period: dict[str, str] | None = None, **params: Any
) -> dict[str, Any]:
    """``GET /admin/stats`` over ``period`` (default: March–April 2025) as ``user``."""
    query = (period or PERIOD) | params
    response = await world.client.get("/admin/stats", params=query, headers=world.h(user))
    assert response.status_code == expect, response.text
    data: dict[str, Any] = response.json()
    return data


def statuses(figures: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in figures["orders_by_status"].items() if v}


# --- figures --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("seeded")
async def test_county_figures_match_hand_computed_values(world: World) -> None:
    body = await get_stats(world, "center_admin")
    assert body["unit_id"] == world.units["center"] and body["groups"] == []
    assert body["period_from"].startswith("2025-02-28T16:00:00")  # March 1, 00:00 in Shanghai
    assert body["period_to"].startswith("2025-04-30T16:00:00")  # through April 30 in Shanghai
    o = body["overall"]
    assert o["placed"] == 9  # A–I; J and K fall outside
    assert statuses(o) == {"rated": 3, "closed": 1, "cancelled": 2, "rejected": 1, "accepted": 1, "submitted": 1}
    assert set(o["orders_by_status"]) == {s.value for s in Status}
    # Passed review: A B C G I by status, and D, cancelled after its approval; E was cancelled before.
    assert (o["approved"], o["rejected"], o["cancelled"], o["completed"]) == (6, 1, 2, 4)
    assert o["completion_rate"] == pytest.approx(4 / 6, abs=1e-4)
    # Accept: 1h 1h 2h 3h 4h → median 2h; p90 = 3h + 0.6 × 1h (linear interpolation, percentile_cont).
    assert o["time_to_accept"] == {"count": 5, "median_seconds": 7200.0, "p90_seconds": 12960.0}
    # Complete: 2h 5h 10h 20h → median 7.5h; p90 = 10h + 0.7 × 10h.
    assert o["time_to_complete"] == {"count": 4, "median_seconds": 27000.0, "p90_seconds": 61200.0}
    assert (o["service_events"], o["people_served"]) == (4, 155)
    assert o["credit_hours"] == pytest.approx(2.0 + 1.5 + 0.5 + 3.0 + 1.0 + 2.5)
    assert o["honor_hours"] == pytest.approx(14.0)  # v11a 10 + v21 4; vsuo1's is in June
    assert o["active_volunteers"] == 3  # v11a, v11b, v21
    assert (o["ratings"], o["rating_average"]) == (3, 4.0)
    assert o["satisfaction_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert (o["escalations"], o["expiries"]) == (3, 2)


@pytest.mark.usefixtures("seeded")
async def test_group_by_unit_rolls_each_child_subtree_up(world: World) -> None:
    body = await get_stats(world, "center_admin", group_by="unit")
    groups = {g["unit_id"]: g for g in body["groups"]}
    assert [g["unit_id"] for g in body["groups"]] == [world.units[u] for u in ("center", "suo1", "suo2")]
    own, suo1, suo2 = groups[world.units["center"]], groups[world.units["suo1"]], groups[world.units["suo2"]]
    assert own["label"].endswith("(本级)") and own["placed"] == 0 and own["completion_rate"] is None
    assert own["time_to_accept"] == {"count": 0, "median_seconds": None, "p90_seconds": None}
    assert suo1["label"] == "测试suo1"
    assert (suo1["placed"], suo1["approved"], suo1["completed"], suo1["rejected"]) == (8, 5, 3, 1)
    assert suo1["completion_rate"] == pytest.approx(0.6)
    assert suo1["time_to_accept"] == {"count": 4, "median_seconds": 9000.0, "p90_seconds": 13320.0}
    assert (suo1["service_events"], suo1["people_served"], suo1["active_volunteers"]) == (3, 55, 2)
    assert suo1["credit_hours"] == pytest.approx(8.0) and suo1["honor_hours"] == pytest.approx(10.0)
    assert (suo1["ratings"], suo1["rating_average"], suo1["satisfaction_rate"]) == (2, 4.0, 0.5)
    assert (suo1["escalations"], suo1["expiries"]) == (3, 2)
    assert (suo2["placed"], suo2["completed"], suo2["people_served"]) == (1, 1, 100)
    assert suo2["credit_hours"] == pytest.approx(2.5) and suo2["honor_hours"] == pytest.approx(4.0)
    assert (suo2["rating_average"], suo2["satisfaction_rate"]) == (4.0, 1.0)
    # The groups add up to the whole where figures are additive.
    for name in ("placed", "approved", "completed", "service_events", "people_served", "escalations", "expiries"):
        assert sum(g[name] for g in body["groups"]) == body["overall"][name]


@pytest.mark.usefixtures("seeded")
async def test_group_by_unit_of_an_institute_shows_its_own_orders_and_stations(world: World) -> None:
    body = await get_stats(world, "suo1_admin", group_by="unit")  # unit_id defaults to the admin's unit
    assert body["unit_id"] == world.units["suo1"]
    groups = {g["unit_id"]: g for g in body["groups"]}
    assert list(groups) == [world.units[u] for u in ("suo1", "zhan11", "zhan12")]
    own, zhan11, zhan12 = (groups[world.units[u]] for u in ("suo1", "zhan11", "zhan12"))
    assert (own["placed"], own["escalations"], statuses(own)) == (1, 1, {"submitted": 1})
    assert (zhan11["placed"], zhan11["approved"], zhan11["completed"], zhan11["cancelled"]) == (5, 4, 3, 2)
    assert zhan11["credit_hours"] == pytest.approx(8.0) and zhan11["honor_hours"] == pytest.approx(10.0)
    assert (zhan12["placed"], zhan12["approved"], zhan12["rejected"], zhan12["completed"]) == (2, 1, 1, 0)
    assert zhan12["completion_rate"] == 0.0
    assert (zhan12["escalations"], zhan12["expiries"]) == (1, 1)
    assert body["overall"]["placed"] == 8


@pytest.mark.usefixtures("seeded")
async def test_group_by_category(world: World) -> None:
    body = await get_stats(world, "center_admin", group_by="category")
    groups = {g["key"]: g for g in body["groups"]}
    lecture, health = str(world.categories["lecture"]), str(world.categories["health"])
    assert list(groups) == [lecture, health, "none"]
    assert (groups[lecture]["label"], groups[lecture]["category_id"]) == ("理论宣讲", world.categories["lecture"])
    assert [groups[k]["placed"] for k in (lecture, health, "none")] == [4, 3, 2]  # A C D G · B F I · E H
    assert (groups[lecture]["approved"], groups[lecture]["completed"]) == (4, 2)
    assert groups[lecture]["credit_hours"] == pytest.approx(5.0)
    assert groups[health]["time_to_complete"]["median_seconds"] == pytest.approx(6 * HOUR)  # B 10h, I 2h
    assert groups["none"]["label"] == "自定义需求" and groups["none"]["category_id"] is None
    assert all(g["honor_hours"] is None for g in body["groups"])  # 荣誉时长 has no category
    assert body["overall"]["honor_hours"] == pytest.approx(14.0)


@pytest.mark.usefixtures("seeded")
async def test_group_by_month_uses_shanghai_time(world: World) -> None:
    body = await get_stats(world, "center_admin", group_by="month")
    assert [g["key"] for g in body["groups"]] == ["2025-03", "2025-04"]
    march, april = body["groups"]
    assert march["month"] == "2025-03" and march["placed"] == 4  # A (Feb 28 in UTC) B F I
    assert april["placed"] == 5  # C (March 31 in UTC) D E G H
    assert march["honor_hours"] == pytest.approx(10.0) and april["honor_hours"] == pytest.approx(4.0)
    assert march["time_to_accept"]["median_seconds"] == HOUR  # A 1h, B 2h, I 1h
    assert april["time_to_accept"]["median_seconds"] == 3.5 * HOUR  # C 3h, G 4h


@pytest.mark.usefixtures("seeded")
async def test_months_without_orders_are_reported_as_zeros(world: World) -> None:
    body = await get_stats(world, "center_admin", group_by="month", period={"from": "2024-12-01", "to": "2025-05-31"})
    assert [g["key"] for g in body["groups"]] == ["2024-12", "2025-01", "2025-02", "2025-03", "2025-04", "2025-05"]
    assert [g["placed"] for g in body["groups"]] == [0, 0, 1, 4, 5, 1]  # J in February, K in May


@pytest.mark.usefixtures("seeded")
async def test_timestamps_bound_the_period_exactly(world: World) -> None:
    # From A's placing (inclusive) to H's (exclusive).
    period = {"from": "2025-03-01T06:00:00+08:00", "to": "2025-04-30T15:30:00Z"}
    body = await get_stats(world, "center_admin", period=period)
    assert body["overall"]["placed"] == 8
    # "+08:00" sent unencoded arrives as " 08:00" and is still understood.
    response = await world.client.get(
        "/admin/stats?from=2025-03-01T06:00:01+08:00&to=2025-05-01T00:00:00+08:00", headers=world.h("center_admin")
    )
    assert response.status_code == 200, response.text
    assert response.json()["overall"]["placed"] == 8  # A excluded now, H included


async def test_empty_period_answers_zeros_not_nulls_or_errors(world: World) -> None:
    body = await get_stats(world, "zhan21_admin", group_by="unit")
    o = body["overall"]
    assert (o["placed"], o["completed"], o["credit_hours"], o["honor_hours"]) == (0, 0, 0.0, 0.0)
    assert (o["completion_rate"], o["rating_average"], o["satisfaction_rate"]) == (None, None, None)
    assert [g["unit_id"] for g in body["groups"]] == [world.units["zhan21"]]


async def test_orders_driven_through_the_api_count_as_reviewed(world: World) -> None:
    """Approvals come from the real timeline: an order cancelled after approval was approved, one
    cancelled before was not; auto-approved items count as approved."""
    await world.order_in(Status.REJECTED)
    await world.order_in(Status.ACCEPTED)
    approved = await world.order_in(Status.APPROVED)
    await world.ok("r1", approved["id"], "cancel", {"reason": "不需要了"})
    await world.order_in(Status.CANCELLED)
    await world.place("r1", unit="zhan11", item_id=world.items["suo1_auto"])
    now = datetime.now(SHANGHAI).date()
    body = await get_stats(world, "zhan11_admin", period={"from": str(now - timedelta(days=1)), "to": str(now)})
    o = body["overall"]
    assert (o["placed"], o["approved"], o["rejected"], o["cancelled"]) == (5, 3, 1, 2)
    assert statuses(o) == {"rejected": 1, "accepted": 1, "cancelled": 2, "approved": 1}
    assert o["time_to_accept"]["count"] == 1 and o["time_to_accept"]["median_seconds"] is not None


# --- scope ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("seeded")
async def test_a_station_admin_sees_only_its_station(world: World) -> None:
    body = await get_stats(world, "zhan12_admin", group_by="category")
    o = body["overall"]
    assert body["unit_id"] == world.units["zhan12"]
    assert (o["placed"], o["service_events"], o["credit_hours"], o["honor_hours"]) == (2, 0, 0.0, 0.0)  # F, G
    assert sum(g["placed"] for g in body["groups"]) == 2


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize("unit", ["zhan11", "suo1", "center", "zhan21"])
async def test_units_outside_the_subtree_are_not_found(world: World, unit: str) -> None:
    body = await get_stats(world, "zhan12_admin", expect=404, unit_id=world.units[unit])
    assert body["error"]["code"] == "not_found"


async def test_unknown_unit_is_not_found(world: World) -> None:
    await get_stats(world, "center_admin", expect=404, unit_id=999_999)


@pytest.mark.parametrize("user", ["r1", "v11a"])
async def test_residents_and_volunteers_are_forbidden(world: World, user: str) -> None:
    await get_stats(world, user, expect=403)


async def test_a_token_is_required(world: World) -> None:
    response = await world.client.get("/admin/stats")
    assert response.status_code == 401


# --- bad parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"group_by": "team"},
        {"from": "yesterday"},
        {"from": "2025-02-30"},
        {"to": "2025-13-01"},
        {"from": "2025-04-01", "to": "2025-03-01"},  # to before from
        {"from": "2025-04-01T10:00:00+08:00", "to": "2025-04-01T10:00:00+08:00"},  # empty
        {"from": "2019-01-01", "to": "2025-01-01"},  # more than five years
        {"from": "2025-03-01T00:00:00", "to": "2025-04-01"},  # no time zone
        {"unit_id": "0"},
        {"unit_id": "abc"},
        {"unit_id": str(2**63)},
        {"from": "x" * 100},
    ],
)
async def test_bad_parameters_are_422(world: World, params: dict[str, str]) -> None:
    response = await world.client.get("/admin/stats", params=PERIOD | params, headers=world.h("center_admin"))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"


async def test_five_years_is_allowed_and_defaults_cover_the_last_year(world: World) -> None:
    await get_stats(world, "center_admin", period={"from": "2020-01-01", "to": "2024-12-31"})
    response = await world.client.get("/admin/stats", headers=world.h("center_admin"))
    assert response.status_code == 200
    body = response.json()
    span = datetime.fromisoformat(body["period_to"]) - datetime.fromisoformat(body["period_from"])
    assert span == timedelta(days=365)
