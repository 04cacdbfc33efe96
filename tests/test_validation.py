"""Bad input: a clear 4xx error in the one error shape, and nothing changes. Never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from app.domain import Status
from app.models import Order, OrderEvent
from tests.helpers import count, snapshot
from tests.world import World


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


BAD_ORDERS: list[tuple[str, Any]] = [
    ("missing address", lambda w: _without(w.order_body(), "address")),
    ("no item and no title", lambda w: _without(w.order_body(), "item_id")),
    ("bad phone", lambda w: w.order_body(contact_phone="12345")),
    ("lat without lng", lambda w: w.order_body(lat=30.0)),
    ("lat out of range", lambda w: w.order_body(lat=120.0, lng=30.0)),
    ("NUL in text", lambda w: w.order_body(description="a\x00b")),
    ("huge unit id", lambda w: w.order_body(unit_id=2**70)),
    ("unit id zero", lambda w: w.order_body(unit_id=0)),
    ("unknown unit", lambda w: w.order_body(unit_id=999_999)),
    ("item not on this unit's menu", lambda w: w.order_body(item_id=w.items["zhan21_only"])),
    (
        "end before start",
        lambda w: w.order_body(preferred_start="2026-12-05T10:00:00+08:00", preferred_end="2026-12-05T09:00:00+08:00"),
    ),
    ("naive datetime", lambda w: w.order_body(preferred_start="2026-12-05T10:00:00")),
    ("number for a datetime", lambda w: w.order_body(preferred_start=1796436000)),
    ("numeric string for a datetime", lambda w: w.order_body(preferred_start="1796436000")),
    ("beneficiaries zero", lambda w: w.order_body(beneficiaries=0)),
    ("beneficiaries boolean", lambda w: w.order_body(beneficiaries=True)),
    ("unknown channel", lambda w: w.order_body(channel="fax")),
    ("overlong title", lambda w: w.order_body(title="长" * 201)),
    ("resident orders for someone else", lambda w: w.order_body(resident_id=w.users["r2"])),
    ("string for an int", lambda w: w.order_body(unit_id="abc")),
    ("not an object", lambda w: ["a", "list"]),
]


@pytest.mark.parametrize(("case", "make"), BAD_ORDERS, ids=[c for c, _ in BAD_ORDERS])
async def test_bad_order_is_422_and_creates_nothing(world: World, app: FastAPI, case: str, make: Any) -> None:
    response = await world.client.post("/orders", json=make(world), headers=world.h("r1"))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and error["message"]
    assert await count(app, Order) == 0


async def test_malformed_json_is_422(world: World, app: FastAPI) -> None:
    response = await world.client.post(
        "/orders", content=b"{not json", headers=world.h("r1") | {"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert await count(app, Order) == 0


async def test_admin_cannot_order_for_a_unit_outside_scope(world: World, app: FastAPI) -> None:
    response = await world.client.post("/orders", json=world.order_body(unit="zhan21"), headers=world.h("zhan11_admin"))
    assert response.status_code == 422
    assert await count(app, Order) == 0


async def test_proxy_for_a_non_resident_is_refused(world: World, app: FastAPI) -> None:
    body = world.order_body(resident_id=world.users["v11a"])
    assert (await world.client.post("/orders", json=body, headers=world.h("v11b"))).status_code == 422
    assert await count(app, Order) == 0


BAD_ACTIONS: list[tuple[Status, str, str, Any]] = [
    (Status.SUBMITTED, "zhan11_admin", "reject", {}),
    (Status.SUBMITTED, "zhan11_admin", "reject", {"reason": "   "}),
    (Status.APPROVED, "zhan11_admin", "dispatch", {}),
    (Status.APPROVED, "zhan11_admin", "dispatch", {"team_id": 1, "volunteer_id": 1}),
    (Status.APPROVED, "zhan11_admin", "dispatch", {"volunteer_id": 999_999}),
    (Status.APPROVED, "zhan11_admin", "dispatch", {"volunteer_id": "v11x"}),
    (Status.APPROVED, "zhan11_admin", "dispatch", {"team_id": "team21"}),
    (Status.APPROVED, "zhan11_admin", "publish", {"accept_within_minutes": 0}),
    (Status.APPROVED, "suo1_admin", "transfer", {"unit_id": "zhan21"}),
    (Status.APPROVED, "zhan11_admin", "transfer", {"unit_id": "zhan11"}),
    (Status.DISPATCHED, "v11a", "decline", {"reason": ""}),
    (Status.ACCEPTED, "v11a", "check_in", {"lat": 91, "lng": 0}),
    (Status.IN_SERVICE, "v11a", "complete", {"summary": "ok", "served_count": 1, "participants": []}),
    (
        Status.IN_SERVICE,
        "v11a",
        "complete",
        {"summary": "ok", "served_count": 1, "participants": [{"volunteer_id": "v11b", "hours": 2}]},
    ),
    (
        Status.IN_SERVICE,
        "v11a",
        "complete",
        {"summary": "ok", "served_count": 1, "participants": [{"volunteer_id": "v11a", "hours": 25}]},
    ),
    (
        Status.IN_SERVICE,
        "v11a",
        "complete",
        {
            "summary": "ok",
            "served_count": 1,
            "participants": [{"volunteer_id": "v11a", "hours": 2}, {"volunteer_id": "v11x", "hours": 2}],
        },
    ),
    (
        Status.IN_SERVICE,
        "v11a",
        "complete",
        {
            "summary": "ok",
            "served_count": 1,
            "photos": ["ftp://x"],
            "participants": [{"volunteer_id": "v11a", "hours": 2}],
        },
    ),
    (Status.COMPLETED, "r1", "rate", {"stars": 6}),
    (Status.COMPLETED, "r1", "rate", {"stars": 0}),
    (Status.COMPLETED, "r1", "rate", {}),
    (Status.COMPLETED, "r1", "rate", {"stars": True}),
    (Status.COMPLETED, "r1", "rate", {"stars": "5"}),
]


def _resolve(world: World, value: Any) -> Any:
    """Names in the table above stand for the world's ids."""
    if isinstance(value, dict):
        return {k: _resolve(world, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(world, v) for v in value]
    if isinstance(value, str):
        for table in (world.volunteers, world.teams, world.units):
            if value in table:
                return table[value]
    return value


@pytest.mark.parametrize(("status", "user", "action", "body"), BAD_ACTIONS)
async def test_bad_action_body_is_422_and_changes_nothing(
    world: World, app: FastAPI, status: Status, user: str, action: str, body: Any
) -> None:
    order = await world.order_in(status)
    before = await snapshot(app, order["id"])
    events = await count(app, OrderEvent)
    response = await world.act(user, order["id"], action, _resolve(world, body))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert await snapshot(app, order["id"]) == before
    assert await count(app, OrderEvent) == events


@pytest.mark.parametrize("order_id", ["0", "-1", "abc", str(2**64), "1.5"])
async def test_bad_order_ids_are_422(world: World, order_id: str) -> None:
    assert (await world.client.get(f"/orders/{order_id}", headers=world.h("r1"))).status_code == 422
    assert (
        await world.client.post(f"/orders/{order_id}/approve", json={}, headers=world.h("zhan11_admin"))
    ).status_code == 422


async def test_bad_cursor_and_limits_are_422(world: World) -> None:
    for query in ("cursor=%%%", "cursor=bm9wZQ", "limit=0", "limit=1000", "status=flying"):
        response = await world.client.get(f"/orders/mine?{query}", headers=world.h("r1"))
        assert response.status_code == 422, query


async def test_list_filters_take_dates_not_numbers(world: World) -> None:
    """Pydantic would read ``created_to=-600`` as a Unix timestamp (1969): refused, with a clear message;
    so is a time without a zone (it used to meet an aware one and answer 500)."""
    for query in ("created_to=-600", "created_from=1700000000", "created_from=1.5e9", "created_to=%20-1%20"):
        response = await world.client.get(f"/admin/orders?{query}", headers=world.h("zhan11_admin"))
        assert response.status_code == 422, query
        assert "ISO 8601" in response.text
    for query in ("created_to=2030-01-01", "created_from=2025-01-01T00:00:00&created_to=2030-01-01T00:00:00Z"):
        response = await world.client.get(f"/admin/orders?{query}", headers=world.h("zhan11_admin"))
        assert response.status_code == 422, query
    await world.place("r1")
    fine = await world.client.get(
        "/admin/orders?created_from=2025-01-01T00:00:00%2B08:00&created_to=2099-01-01T00:00:00Z",
        headers=world.h("zhan11_admin"),
    )
    assert fine.status_code == 200, fine.text
    assert len(fine.json()["items"]) == 1


async def test_bad_if_match_is_422(world: World) -> None:
    order = await world.place("r1")
    response = await world.act("zhan11_admin", order["id"], "approve", headers={"If-Match": "abc"})
    assert response.status_code == 422


async def test_actions_without_a_required_field_take_no_body(world: World) -> None:
    """approve, accept, grab, check-in, publish: a request with no body at all is the empty
    body, as a newcomer's curl sends it; a body that needs a field (reject's reason) is still 422."""
    order = await world.order_in(Status.APPROVED)
    headers = world.h("zhan11_admin")
    published = await world.client.post(f"/orders/{order['id']}/publish", headers=headers)
    assert published.status_code == 200 and published.json()["status"] == "pooled", published.text
    grabbed = await world.client.post(f"/orders/{order['id']}/grab", headers=world.h("v11a"))
    assert grabbed.status_code == 200, grabbed.text
    checked_in = await world.client.post(f"/orders/{order['id']}/check-in", headers=world.h("v11a"))
    assert checked_in.status_code == 200 and checked_in.json()["status"] == "in_service", checked_in.text
    other = await world.place()
    refused = await world.client.post(f"/orders/{other['id']}/reject", headers=headers)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_input"
