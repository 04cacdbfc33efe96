"""Contact phones are masked to everyone who does not need them."""

from __future__ import annotations

from app.domain import Status
from tests.world import World

FULL, MASKED = "13812345678", "138****5678"


async def phone_seen_by(world: World, user: str, order_id: int) -> str:
    response = await world.client.get(f"/orders/{order_id}", headers=world.h(user))
    assert response.status_code == 200, response.text
    phone: str = response.json()["contact_phone"]
    return phone


async def test_phone_visible_to_orderer_and_admins_in_scope(world: World) -> None:
    order = await world.place("r1")
    assert order["contact_phone"] == FULL
    for user in ("r1", "zhan11_admin", "suo1_admin", "center_admin"):
        assert await phone_seen_by(world, user, order["id"]) == FULL


async def test_volunteer_sees_phone_only_while_holding_the_order(world: World) -> None:
    order = await world.order_in(Status.POOLED)
    oid = order["id"]
    assert await phone_seen_by(world, "v11a", oid) == MASKED
    pool = (await world.client.get("/volunteer/tasks?kind=pool", headers=world.h("v11b"))).json()
    assert pool["items"][0]["contact_phone"] == MASKED
    grabbed = await world.ok("v11a", oid, "grab")
    assert grabbed["contact_phone"] == FULL
    await world.ok("v11a", oid, "check_in")
    assert await phone_seen_by(world, "v11a", oid) == FULL
    await world.ok("v11a", oid, "complete", world.complete_body("v11a"))
    assert await phone_seen_by(world, "v11a", oid) == MASKED


async def test_team_members_see_masked_phone_until_one_accepts(world: World) -> None:
    order = await world.order_in(Status.APPROVED)
    dispatched = await world.ok("zhan11_admin", order["id"], "dispatch", {"team_id": world.teams["team11"]})
    assert dispatched["contact_phone"] == MASKED  # the admin, in the answer to an action
    assert await phone_seen_by(world, "zhan11_admin", order["id"]) == FULL  # reading the order
    assert await phone_seen_by(world, "v11a", order["id"]) == MASKED
    await world.ok("v11b", order["id"], "accept")
    assert await phone_seen_by(world, "v11b", order["id"]) == FULL
    assert await phone_seen_by(world, "v11a", order["id"]) == MASKED


async def test_proxy_placer_sees_the_phone(world: World) -> None:
    order = await world.place("v11b", contact_phone="13698765432")
    assert order["contact_phone"] == "13698765432"
    assert await phone_seen_by(world, "zhan11_admin", order["id"]) == "13698765432"
