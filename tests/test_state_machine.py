"""Every (state, action) pair of the table, over HTTP: allowed pairs move the order, the others are
refused with nothing changed (409 with the allowed actions, or 404 when the caller cannot see it)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from app.domain import Action, Status
from app.workflow import TRANSITIONS, USER_ACTIONS
from tests.helpers import snapshot, system_act
from tests.world import World

# The natural caller of each action on an order of r1 at 站11 held by v11a (see World.order_in).
CALLER: dict[Action, str] = {
    Action.APPROVE: "zhan11_admin",
    Action.REJECT: "zhan11_admin",
    Action.ESCALATE: "zhan11_admin",
    Action.TRANSFER: "suo1_admin",
    Action.DISPATCH: "zhan11_admin",
    Action.PUBLISH: "zhan11_admin",
    Action.ACCEPT: "v11a",
    Action.DECLINE: "v11a",
    Action.GRAB: "v11b",
    Action.WITHDRAW: "zhan11_admin",
    Action.RELEASE: "v11a",
    Action.CHECK_IN: "v11a",
    Action.CONFIRM_PRESENCE: "zhan11_admin",
    Action.COMPLETE: "v11a",
    Action.RATE: "r1",
    Action.REOPEN: "zhan11_admin",
    Action.CANCEL: "r1",
}


def body(world: World, action: Action) -> dict[str, Any]:
    match action:
        case Action.TRANSFER:
            return {"unit_id": world.units["zhan12"], "reason": "就近服务"}
        case Action.DISPATCH:
            return {"volunteer_id": world.volunteers["v11b"], "accept_within_minutes": 30}
        case Action.COMPLETE:
            return world.complete_body("v11a")
        case Action.RATE:
            return {"stars": 4, "tags": ["准时"]}
        case Action.CHECK_IN | Action.PUBLISH | Action.APPROVE | Action.ACCEPT | Action.GRAB | Action.WITHDRAW:
            return {}
        case _:
            return {"reason": "测试原因"}


async def order_in(world: World, app: FastAPI, status: Status) -> dict[str, Any]:
    if status is Status.CLOSED:
        order = await world.order_in(Status.COMPLETED)
        return (await system_act(app, order["id"], Action.AUTO_CLOSE)).model_dump(mode="json")
    return await world.order_in(status)


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("action", USER_ACTIONS)
async def test_pair(world: World, app: FastAPI, status: Status, action: Action) -> None:
    order = await order_in(world, app, status)
    assert order["status"] == status.value
    caller = CALLER[action]
    rule = TRANSITIONS.get((status, action))
    before = await snapshot(app, order["id"])
    response = await world.act(caller, order["id"], action.value, body(world, action))

    if rule is not None:
        assert response.status_code == 200, response.text
        after = response.json()
        assert after["status"] == (rule.to or status).value
        assert after["version"] == order["version"] + 1
        events = (await world.client.get(f"/orders/{order['id']}/events", headers=world.h("center_admin"))).json()
        assert (events[-1]["action"], events[-1]["from_status"], events[-1]["to_status"]) == (
            action.value,
            status.value,
            after["status"],
        )
        return

    visible = (await world.client.get(f"/orders/{order['id']}", headers=world.h(caller))).status_code == 200
    if action is Action.GRAB:
        # Volunteers of the region an order was published to hear "taken" (409), not "no such order".
        events = (await world.client.get(f"/orders/{order['id']}/events", headers=world.h("center_admin"))).json()
        visible = visible or any(e["action"] == "publish" for e in events)
    if visible:
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "illegal_transition"
        assert error["details"]["status"] == status.value
        assert action.path not in error["details"]["allowed_actions"]  # as the URL spells it
    else:
        assert response.status_code == 404, response.text
    assert await snapshot(app, order["id"]) == before


async def test_system_actions_fire_from_their_states(world: World, app: FastAPI) -> None:
    dispatched = await world.order_in(Status.DISPATCHED)
    expired = await system_act(app, dispatched["id"], Action.EXPIRE)
    assert expired.status is Status.APPROVED
    assert expired.assignee_volunteer_id is None
    assert expired.deadline_at is not None  # back at 待派单: the review deadline runs again

    pooled = await world.order_in(Status.POOLED)
    assert (await system_act(app, pooled["id"], Action.EXPIRE)).status is Status.APPROVED

    completed = await world.order_in(Status.COMPLETED)
    closed = await system_act(app, completed["id"], Action.AUTO_CLOSE)
    assert closed.status is Status.CLOSED
    events = (await world.client.get(f"/orders/{completed['id']}/events", headers=world.h("r1"))).json()
    assert events[-1]["action"] == "auto_close" and events[-1]["actor_role"] == "system"
    assert events[-1]["actor_id"] is None


async def test_system_only_actions_are_not_http_endpoints(world: World) -> None:
    order = await world.order_in(Status.DISPATCHED)
    for action in ("expire", "auto-close", "auto_close", "place"):
        response = await world.act("center_admin", order["id"], action)
        assert response.status_code in (404, 405), action


async def test_reopen_starts_a_new_round_and_keeps_the_old_rating(world: World) -> None:
    rated = await world.order_in(Status.RATED)
    reopened = await world.ok("zhan11_admin", rated["id"], "reopen", {"reason": "群众反映未解决, 返工"})
    assert reopened["status"] == "approved" and reopened["round"] == 2
    assert reopened["assignee_volunteer_id"] is None
    await world.ok("zhan11_admin", rated["id"], "publish")
    await world.ok("v11b", rated["id"], "grab")
    await world.ok("v11b", rated["id"], "check_in")
    await world.ok("v11b", rated["id"], "complete", world.complete_body("v11b"))
    again = await world.ok("r1", rated["id"], "rate", {"stars": 3})
    assert again["status"] == "rated"
    second = await world.act("r1", rated["id"], "rate", {"stars": 5})
    assert second.status_code == 409


async def _refused(world: World, app: FastAPI, username: str, order_id: int, action: str, body: dict[str, Any]) -> None:
    """``username`` may not ``action`` the order: 403, and nothing about it changed."""
    before = await snapshot(app, order_id)
    response = await world.act(username, order_id, action, body)
    assert response.status_code == 403, (action, response.text)
    assert await snapshot(app, order_id) == before


async def test_a_volunteer_who_sees_the_order_but_is_not_its_target_or_assignee_is_refused(
    world: World, app: FastAPI
) -> None:
    """The guards, tried by someone scope lets through: v11b placed the order for r1 (代点单), so sees it,
    but it was dispatched to v11a. Accepting, declining, checking in, releasing and completing are v11a's
    alone."""
    order = await world.place("v11b", resident_id=world.users["r1"])
    oid = order["id"]
    await world.ok("zhan11_admin", oid, "approve")
    await world.ok("zhan11_admin", oid, "dispatch", {"volunteer_id": world.volunteers["v11a"]})
    assert (await world.client.get(f"/orders/{oid}", headers=world.h("v11b"))).status_code == 200
    await _refused(world, app, "v11b", oid, "accept", {})
    await _refused(world, app, "v11b", oid, "decline", {"reason": "没空"})
    await world.ok("v11a", oid, "accept")
    await _refused(world, app, "v11b", oid, "check_in", {})
    await _refused(world, app, "v11b", oid, "release", {"reason": "有事"})
    await world.ok("v11a", oid, "check_in")
    hours = [{"volunteer_id": world.volunteers["v11b"], "hours": "0.5"}]
    await _refused(world, app, "v11b", oid, "complete", {"summary": "陪护", "served_count": 1, "participants": hours})


async def test_a_volunteer_who_sees_a_pooled_order_outside_their_region_may_not_grab_it(
    world: World, app: FastAPI
) -> None:
    """POOL_ELIGIBLE, tried by someone scope lets through: v21 (站21) ordered for r1 at 站11 by proxy, so
    sees the order in 站11's pool, but 站11 is not their region: 403, nothing changes. v11a, whose region
    it is, grabs it."""
    order = await world.place("v21", resident_id=world.users["r1"])
    await world.ok("zhan11_admin", order["id"], "approve")
    await world.ok("zhan11_admin", order["id"], "publish")
    assert (await world.client.get(f"/orders/{order['id']}", headers=world.h("v21"))).status_code == 200
    await _refused(world, app, "v21", order["id"], "grab", {})
    assert (await world.ok("v11a", order["id"], "grab"))["assignee_volunteer_id"] == world.volunteers["v11a"]
