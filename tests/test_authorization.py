"""Role × scope boundaries: outside scope is 404 (no existence leaks), a forbidden role is 403."""

from __future__ import annotations

import pytest

from app.domain import Status
from tests.world import World


async def test_resident_cannot_read_another_residents_order(world: World) -> None:
    order = await world.place("r1")
    for path in (f"/orders/{order['id']}", f"/orders/{order['id']}/events"):
        assert (await world.client.get(path, headers=world.h("r2"))).status_code == 404
        assert (await world.client.get(path, headers=world.h("r1"))).status_code == 200
    mine = (await world.client.get("/orders/mine", headers=world.h("r2"))).json()
    assert mine["items"] == []


async def test_unknown_order_and_foreign_order_answer_alike(world: World) -> None:
    order = await world.place("r1")
    foreign = await world.client.get(f"/orders/{order['id']}", headers=world.h("r2"))
    missing = await world.client.get("/orders/999999", headers=world.h("r2"))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


@pytest.mark.parametrize(
    ("admin", "expected"),
    [
        ("zhan11_admin", 200),
        ("suo1_admin", 200),
        ("center_admin", 200),
        ("zhan12_admin", 404),
        ("zhan21_admin", 404),
        ("suo2_admin", 404),
    ],
)
async def test_admin_scope_is_the_unit_subtree(world: World, admin: str, expected: int) -> None:
    order = await world.place("r1", unit="zhan11")
    assert (await world.client.get(f"/orders/{order['id']}", headers=world.h(admin))).status_code == expected
    response = await world.act(admin, order["id"], "approve")
    assert response.status_code == expected, response.text
    listed = (await world.client.get("/admin/orders", headers=world.h(admin))).json()["items"]
    assert ([o["id"] for o in listed] == [order["id"]]) is (expected == 200)


async def test_station_admin_cannot_dispatch_another_stations_order(world: World) -> None:
    order = await world.order_in(Status.APPROVED, unit="zhan11")
    response = await world.act("zhan12_admin", order["id"], "dispatch", {"volunteer_id": world.volunteers["v12"]})
    assert response.status_code == 404


async def test_admin_cannot_dispatch_to_a_volunteer_outside_its_jurisdiction(world: World) -> None:
    order = await world.order_in(Status.APPROVED, unit="zhan11")
    response = await world.act("zhan11_admin", order["id"], "dispatch", {"volunteer_id": world.volunteers["v21"]})
    assert response.status_code == 422
    assert (await world.client.get(f"/orders/{order['id']}", headers=world.h("r1"))).json()["status"] == "approved"


async def test_volunteer_cannot_accept_an_order_dispatched_to_someone_else(world: World) -> None:
    order = await world.order_in(Status.DISPATCHED)  # dispatched to v11a
    for other in ("v11b", "v12", "v21"):
        assert (await world.act(other, order["id"], "accept")).status_code == 404
    assert (await world.act("v11a", order["id"], "accept")).status_code == 200


async def test_team_dispatch_any_member_may_accept_and_outsiders_may_not(world: World) -> None:
    order = await world.order_in(Status.APPROVED)
    await world.ok("zhan11_admin", order["id"], "dispatch", {"team_id": world.teams["team11"]})
    assert (await world.act("v12", order["id"], "accept")).status_code == 404
    tasks = (await world.client.get("/volunteer/tasks", headers=world.h("v11b"))).json()["items"]
    assert [t["id"] for t in tasks] == [order["id"]]
    accepted = await world.ok("v11b", order["id"], "accept")
    assert accepted["assignee_volunteer_id"] == world.volunteers["v11b"]
    assert accepted["assignee_team_id"] == world.teams["team11"]
    # The team mate who did not accept may not check in.
    assert (await world.act("v11a", order["id"], "check_in")).status_code == 403


@pytest.mark.parametrize(
    ("user", "action", "body"),
    [
        ("r1", "approve", {}),
        ("v11a", "approve", {}),
        ("r1", "dispatch", {"volunteer_id": 1}),
        ("center_admin", "grab", {}),
        ("center_admin", "accept", {}),
        ("r1", "check_in", {}),
        ("zhan11_admin", "complete", None),
        ("v11a", "reopen", {"reason": "x"}),
    ],
)
async def test_roles_that_may_never_act_get_403(
    world: World, user: str, action: str, body: dict[str, object] | None
) -> None:
    order = await world.place("r1")
    payload = body if body is not None else world.complete_body("v11a")
    response = await world.act(user, order["id"], action, payload)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"


async def test_pool_is_open_only_to_active_volunteers_of_the_units_subtree(world: World) -> None:
    order = await world.order_in(Status.POOLED, unit="zhan11")
    for outsider in ("v21", "v12", "vsuo1", "v11x"):  # other 站, sibling 站, a level above, suspended
        pool = (await world.client.get("/volunteer/tasks?kind=pool", headers=world.h(outsider))).json()
        assert pool["items"] == [], outsider
        assert (await world.act(outsider, order["id"], "grab")).status_code == 404, outsider
    pool = (await world.client.get("/volunteer/tasks?kind=pool", headers=world.h("v11b"))).json()
    assert [o["id"] for o in pool["items"]] == [order["id"]]


async def test_escalated_pool_opens_to_the_whole_institute(world: World) -> None:
    order = await world.order_in(Status.APPROVED, unit="zhan11")
    escalated = await world.ok("zhan11_admin", order["id"], "escalate", {"reason": "本站无合适志愿者"})
    assert escalated["unit_id"] == world.units["suo1"]
    # Escalated out of the 站 admin's reach; the 所 admin now owns it.
    assert (await world.act("zhan11_admin", order["id"], "publish")).status_code == 404
    await world.ok("suo1_admin", order["id"], "publish")
    assert (await world.act("v12", order["id"], "grab")).status_code == 200  # 站12 is under 所1


async def test_resident_cannot_cancel_once_service_started(world: World) -> None:
    order = await world.order_in(Status.IN_SERVICE)
    response = await world.act("r1", order["id"], "cancel", {"reason": "不需要了"})
    assert response.status_code == 409
    assert response.json()["error"]["details"]["status"] == "in_service"


async def test_only_the_orderer_rates(world: World) -> None:
    order = await world.order_in(Status.COMPLETED)
    assert (await world.act("r2", order["id"], "rate", {"stars": 1})).status_code == 404
    assert (await world.act("v11a", order["id"], "rate", {"stars": 5})).status_code == 403  # can see, can't rate
    assert (await world.act("zhan11_admin", order["id"], "rate", {"stars": 5})).status_code == 403


async def test_proxy_order_rated_by_the_proxy_is_marked(world: World) -> None:
    proxied = await world.place("v11b", resident_id=world.users["r2"], channel="offline")
    assert proxied["by_proxy"] is True and proxied["resident_id"] == world.users["r2"]
    assert proxied["placed_by_id"] == world.users["v11b"]
    oid = proxied["id"]
    await world.ok("zhan11_admin", oid, "approve")
    await world.ok("zhan11_admin", oid, "dispatch", {"volunteer_id": world.volunteers["v11a"]})
    await world.ok("v11a", oid, "accept")
    await world.ok("v11a", oid, "check_in")
    await world.ok("v11a", oid, "complete", world.complete_body("v11a"))
    await world.ok("v11b", oid, "rate", {"stars": 4})
    events = (await world.client.get(f"/orders/{oid}/events", headers=world.h("r2"))).json()
    assert events[0]["payload"]["by_proxy"] is True
    assert events[-1]["payload"] == {"stars": 4, "by_proxy": True, "comment": "", "tags": []}


async def test_no_token_is_401(world: World) -> None:
    order = await world.place("r1")
    assert (await world.client.get(f"/orders/{order['id']}")).status_code == 401
    assert (await world.client.post(f"/orders/{order['id']}/approve", json={})).status_code == 401
    assert (await world.client.get("/admin/orders")).status_code == 401


async def test_role_gated_lists(world: World) -> None:
    assert (await world.client.get("/admin/orders", headers=world.h("r1"))).status_code == 403
    assert (await world.client.get("/admin/orders", headers=world.h("v11a"))).status_code == 403
    assert (await world.client.get("/volunteer/tasks", headers=world.h("r1"))).status_code == 403
    assert (await world.client.get("/volunteer/me", headers=world.h("center_admin"))).status_code == 403
