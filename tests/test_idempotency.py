"""Idempotency-Key: a retry returns the first response and creates nothing new."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from app.domain import Status
from app.models import Order, OrderEvent
from tests.helpers import count
from tests.world import World


async def test_retried_order_creates_one_order(world: World, app: FastAPI) -> None:
    body = world.order_body()
    headers = world.h("r1") | {"Idempotency-Key": "order-abc-1"}
    first = await world.client.post("/orders", json=body, headers=headers)
    second = await world.client.post("/orders", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert await count(app, Order) == 1


async def test_concurrent_retries_create_one_order(world: World, app: FastAPI) -> None:
    body = world.order_body()
    headers = world.h("r1") | {"Idempotency-Key": "burst-1"}
    responses = await asyncio.gather(*(world.client.post("/orders", json=body, headers=headers) for _ in range(8)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert await count(app, Order) == 1


async def test_key_reused_with_another_body_is_refused(world: World, app: FastAPI) -> None:
    headers = world.h("r1") | {"Idempotency-Key": "k-2"}
    assert (await world.client.post("/orders", json=world.order_body(), headers=headers)).status_code == 201
    other = world.order_body(address="另一个地址")
    response = await world.client.post("/orders", json=other, headers=headers)
    assert response.status_code == 422
    assert await count(app, Order) == 1


async def test_keys_are_per_user(world: World, app: FastAPI) -> None:
    body = world.order_body()
    for user in ("r1", "r2"):
        response = await world.client.post("/orders", json=body, headers=world.h(user) | {"Idempotency-Key": "same"})
        assert response.status_code == 201
    assert await count(app, Order) == 2


async def test_retried_action_is_applied_once(world: World, app: FastAPI) -> None:
    order = await world.place("r1")
    headers = world.h("zhan11_admin") | {"Idempotency-Key": "approve-1"}
    url = f"/orders/{order['id']}/approve"
    first = await world.client.post(url, json={}, headers=headers)
    second = await world.client.post(url, json={}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json()["version"] == second.json()["version"] == order["version"] + 1
    assert await count(app, OrderEvent) == 2  # place + one approve
    # Without the key the second approve is a state conflict.
    assert (await world.client.post(url, json={}, headers=world.h("zhan11_admin"))).status_code == 409


async def test_failed_attempt_does_not_burn_the_key(world: World) -> None:
    order = await world.order_in(Status.SUBMITTED)
    headers = world.h("zhan11_admin") | {"Idempotency-Key": "dispatch-1"}
    url = f"/orders/{order['id']}/dispatch"
    body = {"volunteer_id": world.volunteers["v11a"]}
    assert (await world.client.post(url, json=body, headers=headers)).status_code == 409  # not approved yet
    await world.ok("zhan11_admin", order["id"], "approve")
    assert (await world.client.post(url, json=body, headers=headers)).status_code == 200


async def test_bad_key_is_422(world: World, app: FastAPI) -> None:
    response = await world.client.post(
        "/orders", json=world.order_body(), headers=world.h("r1") | {"Idempotency-Key": "x" * 200}
    )
    assert response.status_code == 422
    assert await count(app, Order) == 0


async def test_concurrent_retries_of_an_action_apply_it_once(world: World, app: FastAPI) -> None:
    """Eight copies of one request with one key at once: one transition, eight identical answers."""
    order = await world.place("r1")
    headers = world.h("zhan11_admin") | {"Idempotency-Key": "approve-burst"}
    url = f"/orders/{order['id']}/approve"
    responses = await asyncio.gather(*(world.client.post(url, json={}, headers=headers) for _ in range(8)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.text for r in responses}) == 1
    assert await count(app, OrderEvent) == 2  # place + one approve


async def test_a_replay_shows_only_what_the_caller_may_see_now(world: World) -> None:
    """A volunteer accepted with a key (holding the order, the phone was theirs to see), then released
    it and replayed the key: the order is no longer theirs to see, so the replay is 404, not the stored
    answer with the resident's phone."""
    order = await world.order_in(Status.DISPATCHED)
    phone = world.order_body()["contact_phone"]
    headers = world.h("v11a") | {"Idempotency-Key": "accept-1"}
    url = f"/orders/{order['id']}/accept"
    first = await world.client.post(url, json={}, headers=headers)
    assert first.status_code == 200 and first.json()["contact_phone"] == phone
    again = await world.client.post(url, json={}, headers=headers)
    assert again.status_code == 200 and again.json() == first.json()  # still holding it: the same answer
    await world.ok("v11a", order["id"], "release", {"reason": "临时有事"})
    replay = await world.client.post(url, json={}, headers=headers)
    assert replay.status_code == 404
    assert phone not in replay.text
