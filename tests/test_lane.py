"""The action lane (``app.lane``): which transition requests it serves itself and which go on to the
FastAPI endpoint, and that both answer alike."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.domain import Status
from app.services import transitions
from tests.test_dispatch_engine import set_policy
from tests.world import World


class Paths:
    """Counts the calls of the lockless path (``apply_unlocked``, the lane) and of the transactional
    one (``apply_action``, the FastAPI endpoint)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lane = self.endpoint = 0
        monkeypatch.setattr(transitions, "apply_action", self._count("endpoint", transitions.apply_action))
        # The lane imported the function itself.
        import app.lane

        monkeypatch.setattr(app.lane, "apply_unlocked", self._count("lane", transitions.apply_unlocked))

    def _count(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            setattr(self, name, getattr(self, name) + 1)
            return await real(*args, **kwargs)

        return counted

    def reset(self) -> tuple[int, int]:
        counts = (self.lane, self.endpoint)
        self.lane = self.endpoint = 0
        return counts


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Paths:
    return Paths(monkeypatch)


async def test_well_formed_common_actions_are_served_by_the_lane(world: World, paths: Paths) -> None:
    order = await world.order_in(Status.APPROVED)
    paths.reset()
    done = await world.ok("zhan11_admin", order["id"], "dispatch", {"volunteer_id": world.volunteers["v11a"]})
    assert done["status"] == "dispatched" and done["allowed_actions"]
    await world.ok("v11a", order["id"], "accept")
    await world.ok("v11a", order["id"], "check_in")
    assert paths.reset() == (3, 0)


async def test_everything_else_goes_on_to_the_endpoint(world: World, paths: Paths) -> None:
    order = await world.order_in(Status.APPROVED)
    paths.reset()
    # An idempotent retry is stored and replayed in a transaction.
    key = {"Idempotency-Key": "k-1"}
    first = await world.act("zhan11_admin", order["id"], "publish", {}, headers=key)
    again = await world.act("zhan11_admin", order["id"], "publish", {}, headers=key)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert paths.reset() == (0, 2)
    # An action whose effect goes beyond the one statement (上报: the parent unit is looked up).
    other = await world.order_in(Status.SUBMITTED)
    paths.reset()
    await world.ok("zhan11_admin", other["id"], "escalate", {"reason": "本站无力承接"})
    assert paths.reset() == (0, 1)


async def test_malformed_requests_get_the_endpoints_answers(world: World, paths: Paths) -> None:
    order = await world.order_in(Status.APPROVED)
    paths.reset()
    url = f"/orders/{order['id']}/dispatch"
    invalid = await world.client.post(url, json={"team_id": 1, "volunteer_id": 2}, headers=world.h("zhan11_admin"))
    broken = await world.client.post(
        url, content=b"{", headers=world.h("zhan11_admin") | {"Content-Type": "application/json"}
    )
    anonymous = await world.client.post(url, json={"volunteer_id": world.volunteers["v11a"]})
    forged = await world.client.post(
        url, json={"volunteer_id": world.volunteers["v11a"]}, headers={"Authorization": "Bearer not-a-token"}
    )

    async def oversized() -> AsyncIterator[bytes]:  # streamed, so no Content-Length announces it
        for _ in range(world.settings.max_body_bytes // 1000 + 2):
            yield b" " * 1000

    too_large = await world.client.post(
        url, content=oversized(), headers=world.h("zhan11_admin") | {"Content-Type": "application/json"}
    )
    assert [r.status_code for r in (invalid, broken, anonymous, forged, too_large)] == [422, 422, 401, 401, 413]
    assert invalid.json()["error"]["code"] == broken.json()["error"]["code"] == "invalid_input"
    assert too_large.json()["error"]["code"] == "payload_too_large"
    assert paths.reset() == (0, 0)  # refused before any service was called
    after = (await world.client.get(f"/orders/{order['id']}", headers=world.h("zhan11_admin"))).json()
    assert after["status"] == "approved" and after["version"] == order["version"]


async def test_domain_errors_read_the_same_from_both_paths(world: World, paths: Paths) -> None:
    """The lane's 404 / 403 / 409 answers are the endpoint's, body for body."""
    order = await world.order_in(Status.APPROVED)
    cases = [
        ("zhan21_admin", order["id"], {"volunteer_id": world.volunteers["v11a"]}),  # out of scope: 404
        ("r1", order["id"], {"volunteer_id": world.volunteers["v11a"]}),  # a resident may not dispatch: 403
        ("zhan11_admin", order["id"], {"volunteer_id": world.volunteers["v21"]}),  # not their volunteer: 422
        ("zhan11_admin", 10**12, {"volunteer_id": world.volunteers["v11a"]}),  # no such order: 404
    ]
    paths.reset()
    by_lane = [await world.act(user, oid, "dispatch", body) for user, oid, body in cases]
    assert paths.reset() == (len(cases), 0)
    by_endpoint = [
        await world.act(user, oid, "dispatch", body, headers={"Idempotency-Key": f"e-{i}"})
        for i, (user, oid, body) in enumerate(cases)
    ]
    assert paths.reset() == (0, len(cases))
    assert [r.status_code for r in by_lane] == [404, 403, 422, 404]
    assert [(r.status_code, r.json()) for r in by_lane] == [(r.status_code, r.json()) for r in by_endpoint]
    await world.ok("zhan11_admin", order["id"], "publish")
    stale = await world.act("zhan11_admin", order["id"], "publish")
    assert stale.status_code == 409 and stale.json()["error"]["details"]["status"] == "pooled"


async def test_an_automatic_dispatch_to_follow_takes_the_transactional_path(world: World, paths: Paths) -> None:
    await set_policy(world, "suo1_admin", "suo1", dispatch_mode="auto_pool", pool_hours=6)
    order = await world.place("r1")
    paths.reset()
    approved = await world.ok("zhan11_admin", order["id"], "approve")
    assert approved["status"] == Status.POOLED.value  # approved, then published by the system
    assert paths.reset() == (1, 1)  # the lane read it, saw the policy, and handed it on untouched
