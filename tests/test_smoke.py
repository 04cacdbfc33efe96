from __future__ import annotations

from tests.world import World


async def test_resident_to_volunteer_loop(world: World) -> None:
    order = await world.place("r1")
    assert order["status"] == "submitted"
    oid = order["id"]
    await world.ok("zhan11_admin", oid, "approve")
    await world.ok("zhan11_admin", oid, "dispatch", {"volunteer_id": world.volunteers["v11a"]})
    await world.ok("v11a", oid, "accept")
    await world.ok("v11a", oid, "check_in", {"lat": 30.1, "lng": 120.2})
    await world.ok("v11a", oid, "complete", world.complete_body("v11a"))
    rated = await world.ok("r1", oid, "rate", {"stars": 5, "comment": "很好"})
    assert rated["status"] == "rated"
    events = (await world.client.get(f"/orders/{oid}/events", headers=world.h("r1"))).json()
    assert [e["action"] for e in events] == [
        "place",
        "approve",
        "dispatch",
        "accept",
        "check_in",
        "complete",
        "rate",
    ]
