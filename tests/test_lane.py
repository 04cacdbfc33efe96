"""The action lane (``app.lane``) is transport only: with it on, action requests are answered without
FastAPI's routing, and every answer — successes, refusals, malformed requests, replays — is the one
FastAPI's endpoint gives with it off."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.auth import Caller
from app.config import Settings
from app.domain import Action, Status
from app.errors import DomainError
from app.lane import ActionLane
from app.main import create_app
from app.models import Volunteer
from app.routers.orders import body_when_empty, perform_action
from app.services.idempotency import IdempotencyKey
from tests.world import World


def _lane_of(app: FastAPI) -> ActionLane | None:
    """The lane in the app's middleware stack, if any (the stack is built on the first request)."""
    node: Any = app.middleware_stack
    while node is not None:
        if isinstance(node, ActionLane):
            return node
        node = getattr(node, "app", None)
    return None


@pytest.fixture
async def laneless(settings: Settings, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same database with the lane switched off."""
    application = create_app(settings.model_copy(update={"action_lane": False}), database_url=database_url)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as http:
            yield http
        assert _lane_of(application) is None


VOLATILE = {"id", "code", "created_at", "updated_at", "deadline_at", "checked_in_at", "completed_at"}


def _comparable(response: httpx.Response) -> tuple[int, Any, str | None]:
    body = response.json()
    if isinstance(body, dict) and "error" not in body:
        body = {k: v for k, v in body.items() if k not in VOLATILE}
    elif isinstance(body, dict):
        body["error"]["details"] = {k: v for k, v in (body["error"].get("details") or {}).items() if k != "order_id"}
    return response.status_code, body, response.headers.get("retry-after")


async def test_the_lane_serves_action_requests_and_answers_as_fastapi_does(
    world: World, app: FastAPI, laneless: httpx.AsyncClient
) -> None:
    await world.client.get("/units")  # Starlette builds the middleware stack on the first request
    lane = _lane_of(app)
    assert lane is not None

    async def both(username: str, action: str, body: Any = None, headers: dict[str, str] | None = None,
                   content: bytes | None = None, state: Status = Status.SUBMITTED, lane_serves: bool = True,
                   ) -> None:  # fmt: skip
        answers = []
        for client in (world.client, laneless):
            order = await world.order_in(state) if state is not Status.SUBMITTED else await world.place()
            served = lane.served
            h = world.h(username) | (headers or {})
            path = f"/orders/{order['id']}/{action.replace('_', '-')}"
            if content is not None:
                response = await client.post(path, content=content, headers=h | {"Content-Type": "application/json"})
            else:
                response = await client.post(path, json=body if body is not None else {}, headers=h)
            answers.append(_comparable(response))
            # The lane answered exactly the well-formed requests sent to the app that has it.
            assert lane.served - served == (lane_serves and client is world.client), (action, answers)
        assert answers[0] == answers[1], (action, answers)

    await both("zhan11_admin", "approve")  # 200
    await both("zhan11_admin", "publish", state=Status.APPROVED)  # 200
    await both("v11a", "grab", state=Status.POOLED)  # 200
    async with app.state.sessionmaker() as session, session.begin():  # v11a holds many orders here
        await session.execute(
            update(Volunteer).where(Volunteer.id == world.volunteers["v11a"]).values(max_open_orders=50)
        )
    await both("v11a", "check_in", state=Status.ACCEPTED)  # 200, 未核验
    await both("v11a", "check_in", body={"code": "00000"}, state=Status.ACCEPTED, lane_serves=False)  # 422 (schema)
    await both("v11a", "check_in", body={"lat": 30, "lng": 120, "accuracy_m": 5}, state=Status.ACCEPTED)  # 422 proof
    await both("zhan11_admin", "confirm_presence", body={"reason": "电话核实"}, state=Status.ACCEPTED)  # 200
    await both("zhan11_admin", "confirm_presence", body={"reason": "再次核实"}, state=Status.RATED)  # 409
    await both("r1", "approve")  # 403: the role may never
    await both("zhan21_admin", "approve")  # 404: outside the admin's scope
    await both("zhan11_admin", "dispatch", state=Status.SUBMITTED, body={"volunteer_id": 1})  # 409
    await both("zhan11_admin", "reject", body={}, lane_serves=False)  # 422: a reason is required
    await both("zhan11_admin", "reject", content=b"{not json", lane_serves=False)  # 422
    await both("zhan11_admin", "approve", headers={"If-Match": "7"})  # 409 version mismatch
    await both("zhan11_admin", "approve", headers={"If-Match": "x"}, lane_serves=False)  # 422
    await both("zhan11_admin", "approve", headers={"Authorization": "Bearer forged"}, lane_serves=False)  # 401


async def test_an_idempotent_retry_through_the_lane_replays(world: World, app: FastAPI) -> None:
    order = await world.place()
    key = {"Idempotency-Key": "approve-once"}
    first = await world.act("zhan11_admin", order["id"], "approve", headers=key)
    again = await world.act("zhan11_admin", order["id"], "approve", headers=key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    lane = _lane_of(app)
    assert lane is not None and lane.served >= 2


async def test_a_refused_action_leaves_no_reference_cycle_for_the_garbage_collector(world: World, app: FastAPI) -> None:
    """A refusal is freed by reference counting, as a success is: no task, exception or connection
    waits in a cycle for the collector (a grab storm refuses 900 of 1,000 requests)."""
    order = await world.place("r1", unit="zhan11")
    caller = Caller(world.users["v11a"])
    body = body_when_empty(Action.GRAB)
    assert body is not None

    async def refused() -> None:
        for idem in (None, IdempotencyKey.from_request("k-1", "POST", "/x", {})):
            try:
                await perform_action(app.state.engine, order["id"], Action.GRAB, caller, body, idem, None)
            except DomainError:  # refused, as it must be (v11a does not see an order awaiting review)
                continue
            raise AssertionError("a grab of an order not in the pool was done")

    await refused()  # warm: first-use caches are not garbage
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(20):
            await refused()
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not {"Task", "IllegalTransition", "NotFound", "Forbidden", "_ConnectionFairy"} & set(left), left[:20]
