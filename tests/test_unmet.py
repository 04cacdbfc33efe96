"""未满足需求 (``GET /admin/stats/unmet``): counts match the orders a test makes, scope like ``/admin/stats``."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from app.domain import Action, Status
from tests.helpers import system_act
from tests.world import World


async def _seed(world: World, app: FastAPI) -> dict[str, int]:
    """One order of each kind (ids by name), all placed by residents in 站11 but one in 站21."""
    ids: dict[str, int] = {}
    ids["rejected"] = (await world.order_in(Status.REJECTED))["id"]
    ids["cancelled"] = (await world.order_in(Status.CANCELLED))["id"]
    top = (await world.order_in(Status.APPROVED))["id"]
    await world.ok("zhan11_admin", top, "escalate", {"reason": "本站无人"})
    await world.ok("suo1_admin", top, "escalate", {"reason": "本所无人"})  # now at the 中心: the top
    ids["escalated_to_top"] = top
    expired = (await world.order_in(Status.DISPATCHED))["id"]
    await system_act(app, expired, Action.EXPIRE)
    ids["expired"] = expired
    halfway = (await world.order_in(Status.APPROVED))["id"]
    await world.ok("zhan11_admin", halfway, "escalate", {"reason": "请所里协调"})  # at the 所: still in play
    ids["escalated_once"] = halfway
    ids["rated"] = (await world.order_in(Status.RATED))["id"]
    taken = (await world.order_in(Status.ACCEPTED))["id"]
    await world.ok("zhan11_admin", taken, "cancel", {"reason": "群众另有安排"})  # cancelled after acceptance
    ids["cancelled_after_accept"] = taken
    ids["waiting"] = (await world.order_in(Status.SUBMITTED))["id"]
    ids["rejected_21"] = (await world.order_in(Status.REJECTED, resident="r3", unit="zhan21"))["id"]
    return ids


def _cell(body: dict[str, Any], unit_id: int) -> dict[str, Any]:
    cells = [c for c in body["cells"] if c["unit_id"] == unit_id]
    assert len(cells) == 1, body["cells"]
    cell: dict[str, Any] = cells[0]
    return cell


async def test_unmet_counts_match_the_orders(world: World, app: FastAPI) -> None:
    await _seed(world, app)
    response = await world.client.get("/admin/stats/unmet", headers=world.h("center_admin"))
    assert response.status_code == 200, response.text
    body = response.json()
    lecture = world.categories["lecture"]
    assert body["placed"] == 9 and body["unmet"] == 5
    center = _cell(body, world.units["center"])  # 本级: the order escalated to the top now sits here
    assert (center["placed"], center["unmet"], center["escalated_to_top"]) == (1, 1, 1)
    assert center["category_id"] == lecture and center["active_volunteers"] == 0
    suo1 = _cell(body, world.units["suo1"])
    assert suo1["placed"] == 7
    assert (suo1["rejected"], suo1["cancelled_before_accept"], suo1["expired"], suo1["escalated_to_top"]) == (
        1,
        1,
        1,
        0,
    )
    assert suo1["unmet"] == 3 and suo1["unmet_rate"] == pytest.approx(3 / 7)
    assert suo1["wait_median_seconds"] is not None and suo1["wait_median_seconds"] >= 0
    assert suo1["wait_p90_seconds"] >= suo1["wait_median_seconds"]
    # v11a, v11b, v12 and vsuo1 are active under 所1 and serve 理论宣讲; v11x is suspended.
    assert suo1["active_volunteers"] == 4 and suo1["orders_per_volunteer"] == pytest.approx(7 / 4)
    suo2 = _cell(body, world.units["suo2"])
    assert (suo2["placed"], suo2["unmet"], suo2["rejected"], suo2["active_volunteers"]) == (1, 1, 1, 1)
    assert body["cells"][0]["unit_id"] == world.units["suo1"]  # most unmet first
    assert sum(map(sum, body["arrivals"])) == 9
    assert sum(map(sum, body["acceptances"])) == 2  # the rated order and the one cancelled after acceptance
    assert len(body["arrivals"]) == 7 and all(len(row) == 24 for row in body["arrivals"])


async def test_unmet_is_scoped_to_the_callers_subtree(world: World, app: FastAPI) -> None:
    await _seed(world, app)
    zhan = await world.client.get("/admin/stats/unmet", headers=world.h("zhan11_admin"))
    assert zhan.status_code == 200
    body = zhan.json()
    # 站11 still owns: rejected, cancelled, expired, rated, cancelled after acceptance, waiting.
    assert body["placed"] == 6 and body["unmet"] == 3
    assert [c["unit_id"] for c in body["cells"]] == [world.units["zhan11"]]
    outside = await world.client.get(
        "/admin/stats/unmet", params={"unit_id": world.units["suo1"]}, headers=world.h("zhan21_admin")
    )
    assert outside.status_code == 404
    volunteer = await world.client.get("/admin/stats/unmet", headers=world.h("v11a"))
    assert volunteer.status_code == 403
    empty = await world.client.get(
        "/admin/stats/unmet", params={"from": "2020-01-01", "to": "2020-12-31"}, headers=world.h("center_admin")
    )
    assert empty.status_code == 200 and empty.json()["cells"] == [] and empty.json()["unmet"] == 0
    bad = await world.client.get("/admin/stats/unmet", params={"from": "2025-13-01"}, headers=world.h("center_admin"))
    assert bad.status_code == 422
