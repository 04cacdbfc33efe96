"""签到核验 (app.services.presence) on orders: one-time codes, GPS within the unit's radius, an admin's
confirmation; what the unit's policy accepts; 未核验 hours. Every refusal is a clear 4xx that records
nothing (the order, its timeline and the used-codes record unchanged)."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from app.domain import Status
from app.models import HoursEntry, PresenceCodeUse, ServiceRecord
from app.services import presence
from tests.helpers import count, snapshot
from tests.world import World

PLACE = {"lat": 30.0, "lng": 120.0}  # the order's coordinates
# ~0.0009° of latitude is ~100 m.
METRES_PER_DEGREE = 111_195.0


def north_of_place(metres: float) -> dict[str, float]:
    return {"lat": PLACE["lat"] + metres / METRES_PER_DEGREE, "lng": PLACE["lng"]}


async def accepted_order(world: World, **overrides: Any) -> dict[str, Any]:
    """An order at 站11 with coordinates, placed by r1 and held by v11a (已接单)."""
    order = await world.place("r1", **(PLACE | overrides))
    oid = order["id"]
    await world.ok("zhan11_admin", oid, "approve")
    await world.ok("zhan11_admin", oid, "dispatch", {"volunteer_id": world.volunteers["v11a"]})
    return await world.ok("v11a", oid, "accept")


async def code_of(world: World, order_id: int, username: str = "r1") -> dict[str, Any]:
    response = await world.client.get(f"/orders/{order_id}/presence-code", headers=world.h(username))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def events(world: World, order_id: int) -> list[dict[str, Any]]:
    response = await world.client.get(f"/orders/{order_id}/events", headers=world.h("zhan11_admin"))
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()
    return result


async def refused(
    world: World, app: FastAPI, order_id: int, body: dict[str, Any], status: int, reason: str, who: str = "v11a"
) -> None:
    """``who`` checking in with ``body`` is refused with ``status`` for ``reason``; nothing changes."""
    before, uses = await snapshot(app, order_id), await count(app, PresenceCodeUse)
    action = "confirm_presence" if who.endswith("_admin") else "check_in"
    response = await world.act(who, order_id, action, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["details"].get("reason") == reason, error
    assert error["message"]  # a message a person can read
    assert await snapshot(app, order_id) == before
    assert await count(app, PresenceCodeUse) == uses


async def set_policy(world: World, unit: str, **presence_policy: Any) -> None:
    response = await world.client.put(
        f"/admin/units/{world.units[unit]}/policy", json=presence_policy, headers=world.h("center_admin")
    )
    assert response.status_code == 200, response.text


# --- the one-time code ----------------------------------------------------------------------------------


async def test_a_code_proves_presence_once_and_shows_in_the_timeline_and_the_record(world: World, app: FastAPI) -> None:
    order = await accepted_order(world)
    oid = order["id"]
    shown = await code_of(world, oid)
    assert len(shown["code"]) == 6 and shown["code"].isdigit()
    assert shown["qr"].startswith(presence.QR_PREFIX) and shown["qr"].endswith(shown["code"])
    assert datetime.fromisoformat(shown["expires_at"]) > datetime.now(UTC)

    checked = await world.ok("v11a", oid, "check_in", {"code": shown["code"]})
    assert checked["status"] == "in_service"
    assert checked["presence_proof"] == "code"
    check_in = (await events(world, oid))[-1]
    assert check_in["action"] == "check_in"
    assert check_in["payload"]["presence_proof"] == "code"
    assert check_in["payload"]["presence"] == "签到码"
    assert shown["code"] not in str(check_in["payload"])  # the code itself is never stored
    assert await count(app, PresenceCodeUse) == 1

    completed = await world.ok("v11a", oid, "complete", world.complete_body("v11a"))
    assert completed["presence_proof"] == "code"
    assert (await events(world, oid))[-1]["payload"]["presence_proof"] == "code"
    async with app.state.sessionmaker() as session:
        record = (await session.execute(select(ServiceRecord).where(ServiceRecord.order_id == oid))).scalar_one()
        assert record.presence_proof == "code"
        entry = (await session.execute(select(HoursEntry).where(HoursEntry.order_id == oid))).scalar_one()
        assert entry.verified is True


async def test_a_scanned_qr_payload_proves_presence(world: World) -> None:
    order = await accepted_order(world)
    shown = await code_of(world, order["id"])
    checked = await world.ok("v11a", order["id"], "check_in", {"qr": shown["qr"]})
    assert checked["presence_proof"] == "code"


async def test_another_orders_code_or_qr_is_refused(world: World, app: FastAPI) -> None:
    mine, other = await accepted_order(world), await accepted_order(world)
    foreign = await code_of(world, other["id"])
    await refused(world, app, mine["id"], {"code": foreign["code"]}, 422, "code_invalid")
    await refused(world, app, mine["id"], {"qr": foreign["qr"]}, 422, "code_invalid")
    # A QR payload whose code was changed to another one does not pass either.
    own = await code_of(world, mine["id"])
    forged = own["qr"].rsplit(":", 1)[0] + ":" + ("000000" if own["code"] != "000000" else "111111")
    await refused(world, app, mine["id"], {"qr": forged}, 422, "code_invalid")
    await refused(world, app, mine["id"], {"qr": "not a qr code"}, 422, "code_invalid")
    unicode_digits = own["qr"].rsplit(":", 1)[0] + ":" + "١٢٣٤٥٦"  # digits, but not ASCII ones
    await refused(world, app, mine["id"], {"qr": unicode_digits}, 422, "code_invalid")


async def test_an_expired_code_is_refused(world: World, app: FastAPI) -> None:
    order = await accepted_order(world)
    subject = presence.order_subject(order["id"])
    stale = presence.issue(subject, datetime.now(UTC) - timedelta(minutes=10))  # shown ten minutes ago
    await refused(world, app, order["id"], {"code": stale.code}, 422, "code_expired")
    await refused(world, app, order["id"], {"qr": stale.qr}, 422, "code_expired")


async def test_a_replayed_code_is_refused(world: World, app: FastAPI) -> None:
    """The code of the first round, replayed at the next round's check-in (after 返工)."""
    order = await accepted_order(world)
    oid = order["id"]
    code = (await code_of(world, oid))["code"]
    await world.ok("v11a", oid, "check_in", {"code": code})
    await world.ok("v11a", oid, "complete", world.complete_body("v11a"))
    await world.ok("zhan11_admin", oid, "reopen", {"reason": "返工"})
    await world.ok("zhan11_admin", oid, "dispatch", {"volunteer_id": world.volunteers["v11a"]})
    await world.ok("v11a", oid, "accept")
    await refused(world, app, oid, {"code": code}, 409, "code_used")


async def test_concurrent_check_ins_with_one_code_use_it_once(world: World, app: FastAPI) -> None:
    order = await accepted_order(world)
    code = (await code_of(world, order["id"]))["code"]
    answers = await asyncio.gather(*(world.act("v11a", order["id"], "check_in", {"code": code}) for _ in range(8)))
    assert sorted(a.status_code for a in answers).count(200) == 1
    assert all(a.status_code in (200, 409) for a in answers)
    assert await count(app, PresenceCodeUse) == 1


async def test_guessing_codes_is_limited_per_order_and_caller(world: World, app: FastAPI) -> None:
    """Six digits are 10⁶ codes: a volunteer may submit ``presence_code_attempts`` codes per order in
    15 minutes, counted in PostgreSQL under concurrency; past it even the right code is 429 and nothing
    is recorded. A check-in without a code is not a guess."""
    order = await accepted_order(world)
    oid, limit = order["id"], world.settings.presence_code_attempts
    right = (await code_of(world, oid))["code"]
    wrong = "000000" if right != "000000" else "111111"
    before = await snapshot(app, oid)
    guesses = await asyncio.gather(*(world.act("v11a", oid, "check_in", {"code": wrong}) for _ in range(limit + 6)))
    assert sorted(g.status_code for g in guesses) == [422] * limit + [429] * 6
    late = await world.act("v11a", oid, "check_in", {"code": right})
    assert late.status_code == 429, late.text
    assert int(late.headers["Retry-After"]) > 0
    assert await snapshot(app, oid) == before
    assert await count(app, PresenceCodeUse) == 0
    other = await accepted_order(world)  # another order's count is its own
    other_code = (await code_of(world, other["id"]))["code"]
    assert (await world.ok("v11a", other["id"], "check_in", {"code": other_code}))["presence_proof"] == "code"
    assert (await world.ok("v11a", oid, "check_in", {}))["presence_proof"] is None  # 未核验, where allowed


async def test_the_code_is_for_the_orderer_only_and_only_while_it_is_held(world: World) -> None:
    order = await accepted_order(world)
    path = f"/orders/{order['id']}/presence-code"
    for username, status in (("v11a", 403), ("zhan11_admin", 403), ("r3", 404), ("r2", 404)):
        response = await world.client.get(path, headers=world.h(username))
        assert response.status_code == status, (username, response.text)
    fresh = await world.place("r1")
    response = await world.client.get(f"/orders/{fresh['id']}/presence-code", headers=world.h("r1"))
    assert response.status_code == 409


# --- GPS ---------------------------------------------------------------------------------------------


async def test_a_position_within_the_radius_proves_presence(world: World) -> None:
    order = await accepted_order(world)
    # 200 m away, accurate to 50 m: the whole circle lies within the default 300 m.
    checked = await world.ok("v11a", order["id"], "check_in", north_of_place(200) | {"accuracy_m": 50})
    assert checked["presence_proof"] == "gps"
    payload = (await events(world, order["id"]))[-1]["payload"]
    assert payload["presence_proof"] == "gps" and payload["distance_m"] == 200 and payload["accuracy_m"] == 50


async def test_a_position_outside_the_radius_is_refused(world: World, app: FastAPI) -> None:
    order = await accepted_order(world)
    await refused(world, app, order["id"], north_of_place(1_000) | {"accuracy_m": 10}, 422, "out_of_range")
    # The conservative rule: 260 m away with 60 m accuracy may be 320 m away: refused.
    await refused(world, app, order["id"], north_of_place(260) | {"accuracy_m": 60}, 422, "out_of_range")


async def test_a_position_whose_accuracy_is_too_poor_is_refused(world: World, app: FastAPI) -> None:
    order = await accepted_order(world)
    await refused(world, app, order["id"], north_of_place(0) | {"accuracy_m": 150}, 422, "accuracy_too_poor")


async def test_gps_needs_the_orders_coordinates(world: World, app: FastAPI) -> None:
    order = await accepted_order(world, lat=None, lng=None)
    await refused(world, app, order["id"], north_of_place(0) | {"accuracy_m": 5}, 422, "no_coordinates")


async def test_a_position_without_accuracy_is_recorded_but_proves_nothing(world: World) -> None:
    order = await accepted_order(world)
    checked = await world.ok("v11a", order["id"], "check_in", north_of_place(0))
    assert checked["presence_proof"] is None


async def test_the_radius_and_accuracy_come_from_the_units_policy(world: World, app: FastAPI) -> None:
    await set_policy(world, "suo1", presence_radius_m=2_000, presence_max_accuracy_m=300)  # 站11 inherits it
    order = await accepted_order(world)
    checked = await world.ok("v11a", order["id"], "check_in", north_of_place(1_000) | {"accuracy_m": 250})
    assert checked["presence_proof"] == "gps"


# --- the unit's policy -------------------------------------------------------------------------------


async def test_a_proof_the_units_policy_does_not_accept_is_refused(world: World, app: FastAPI) -> None:
    await set_policy(world, "suo1", presence_proofs=["gps"], allow_unproven=False)
    order = await accepted_order(world)
    oid = order["id"]
    code = (await code_of(world, oid))["code"]
    await refused(world, app, oid, {"code": code}, 422, "proof_not_accepted")
    await refused(world, app, oid, {}, 422, "proof_required")
    await refused(world, app, oid, north_of_place(0), 422, "proof_required")  # no accuracy: no proof
    await refused(world, app, oid, {"reason": "现场无信号"}, 422, "proof_not_accepted", who="zhan11_admin")
    checked = await world.ok("v11a", oid, "check_in", north_of_place(10) | {"accuracy_m": 20})
    assert checked["presence_proof"] == "gps"


async def test_a_unit_may_refuse_gps(world: World, app: FastAPI) -> None:
    await set_policy(world, "zhan11", presence_proofs=["code", "admin"])
    order = await accepted_order(world)
    await refused(world, app, order["id"], north_of_place(0) | {"accuracy_m": 5}, 422, "proof_not_accepted")
    policy = await world.client.get(f"/admin/units/{world.units['zhan11']}/policy", headers=world.h("zhan11_admin"))
    assert sorted(policy.json()["presence_proofs"]) == ["admin", "code"]


# --- an admin's confirmation ----------------------------------------------------------------------------


async def test_an_admin_checks_in_for_the_volunteer_with_a_reason(world: World) -> None:
    order = await accepted_order(world)
    done = await world.ok("zhan11_admin", order["id"], "confirm_presence", {"reason": "山区无信号, 电话核实到场"})
    assert done["status"] == "in_service" and done["presence_proof"] == "admin"
    event = (await events(world, order["id"]))[-1]
    assert event["action"] == "confirm_presence" and event["actor_role"] == "admin"
    assert event["reason"] == "山区无信号, 电话核实到场"
    assert event["payload"]["on_behalf_of_volunteer_id"] == world.volunteers["v11a"]


async def test_an_admin_proves_an_unproven_check_in_once(world: World, app: FastAPI) -> None:
    order = await accepted_order(world)
    oid = order["id"]
    assert (await world.ok("v11a", oid, "check_in"))["presence_proof"] is None
    confirmed = await world.ok("zhan11_admin", oid, "confirm_presence", {"reason": "已电话核实"})
    assert confirmed["status"] == "in_service" and confirmed["presence_proof"] == "admin"
    before = await snapshot(app, oid)
    again = await world.act("zhan11_admin", oid, "confirm_presence", {"reason": "再次确认"})
    assert again.status_code == 409
    assert await snapshot(app, oid) == before
    await world.ok("v11a", oid, "complete", world.complete_body("v11a"))
    async with app.state.sessionmaker() as session:
        entry = (await session.execute(select(HoursEntry).where(HoursEntry.order_id == oid))).scalar_one()
        assert entry.verified is True


async def test_who_may_confirm_presence(world: World, app: FastAPI) -> None:
    order = await accepted_order(world)
    oid = order["id"]
    before = await snapshot(app, oid)
    body = {"reason": "核实"}
    for username, status in (("r1", 403), ("v11a", 403), ("zhan21_admin", 404), ("zhan12_admin", 404)):
        response = await world.act(username, oid, "confirm_presence", body)
        assert response.status_code == status, (username, response.text)
    assert (await world.act("zhan11_admin", oid, "confirm_presence", {})).status_code == 422  # a reason is required
    assert await snapshot(app, oid) == before
    # 所1's admin is in scope (站11 is theirs).
    assert (await world.ok("suo1_admin", oid, "confirm_presence", body))["presence_proof"] == "admin"
    rated = await world.order_in(Status.RATED)
    assert (await world.act("zhan11_admin", rated["id"], "confirm_presence", body)).status_code == 409


# --- 未核验 hours ---------------------------------------------------------------------------------------


async def test_hours_of_an_unproven_span_are_marked_unverified(world: World, app: FastAPI) -> None:
    order = await accepted_order(world)
    oid = order["id"]
    await world.ok("v11a", oid, "check_in")
    completed = await world.ok("v11a", oid, "complete", world.complete_body("v11a"))
    assert completed["presence_proof"] is None
    assert (await events(world, oid))[-1]["payload"]["presence"] == "未核验"
    hours = (await world.client.get("/volunteer/me/hours", headers=world.h("v11a"))).json()
    assert [e["verified"] for e in hours["items"]] == [False]
    assert hours["totals"]["unverified"] == 0.5 and hours["totals"]["credit"] == 0.5
    records = (await world.client.get("/volunteer/me/records", headers=world.h("v11a"))).json()
    assert records["items"][0]["presence_proof"] is None


async def test_unverified_hours_are_flagged_in_stats_and_exports(world: World) -> None:
    proven, unproven = await accepted_order(world), await accepted_order(world)
    code = (await code_of(world, proven["id"]))["code"]
    await world.ok("v11a", proven["id"], "check_in", {"code": code})
    await world.ok("v11a", unproven["id"], "check_in")
    for order in (proven, unproven):
        await world.ok("v11a", order["id"], "complete", world.complete_body("v11a"))
    day = datetime.now(UTC)
    period = {"from": (day - timedelta(days=2)).date().isoformat(), "to": (day + timedelta(days=2)).date().isoformat()}
    overall = (await world.client.get("/admin/stats", params=period, headers=world.h("suo1_admin"))).json()["overall"]
    assert overall["credit_hours"] == 1.0 and overall["credit_hours_unverified"] == 0.5

    def rows_of(content: bytes) -> list[list[str]]:
        return list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))

    async def download(name: str) -> list[list[str]]:
        response = await world.client.get(f"/admin/exports/{name}.csv", params=period, headers=world.h("suo1_admin"))
        assert response.status_code == 200
        return rows_of(response.content)

    orders = await download("orders")
    assert orders[0][-1] == "签到核验"
    assert sorted(r[-1] for r in orders[1:]) == ["未核验", "签到码"]
    records = await download("service-records")
    assert records[0][-2:] == ["签到核验", "未核验"]
    assert sorted((r[-2], r[-1]) for r in records[1:]) == [("未核验", "是"), ("签到码", "否")]
    hours = await download("volunteer-hours")
    assert hours[0][-1] == "其中未核验(小时)"
    assert hours[1][hours[0].index("信用时长合计(小时)")] == "1.0" and hours[1][-1] == "0.5"  # of which 0.5 未核验
