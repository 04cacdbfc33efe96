"""The action lane (``app.lane``): which transition requests it serves itself and which go on to the
FastAPI endpoint, and that both answer alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.util import greenlet_spawn

from app.config import Settings
from app.db import create_engine, to_async_url
from app.domain import Status
from app.models import Order
from app.prepared import KeptConnections, _guarded, checkout
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


async def test_the_role_a_token_names_is_only_a_hint(world: World, paths: Paths) -> None:
    """Staff and residents are read without a volunteer's details (a lighter query); a token whose
    role claim is out of date (the account became a volunteer's) still acts as the volunteer it is."""
    order = await world.order_in(Status.DISPATCHED)  # to volunteer v11a
    claims = jwt.decode(world.tokens["v11a"], world.settings.token_secret, algorithms=["HS256"])
    stale = jwt.encode(claims | {"role": "admin"}, world.settings.token_secret, algorithm="HS256")
    paths.reset()
    accepted = await world.client.post(
        f"/orders/{order['id']}/accept", json={}, headers={"Authorization": f"Bearer {stale}"}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["assignee_volunteer_id"] == world.volunteers["v11a"]
    assert sorted(accepted.json()["allowed_actions"]) == ["check_in", "release"]
    assert paths.reset() == (1, 0)
    # And the other way round: an admin's token that claims a volunteer is read in full, acts as admin.
    claims = jwt.decode(world.tokens["zhan11_admin"], world.settings.token_secret, algorithms=["HS256"])
    volunteerish = jwt.encode(claims | {"role": "volunteer"}, world.settings.token_secret, algorithm="HS256")
    other = await world.order_in(Status.APPROVED)
    paths.reset()
    published = await world.client.post(
        f"/orders/{other['id']}/publish", json={}, headers={"Authorization": f"Bearer {volunteerish}"}
    )
    assert published.status_code == 200 and published.json()["status"] == "pooled"
    assert paths.reset() == (1, 0)


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


async def test_a_connection_the_server_dropped_mid_statement_is_retired(
    world: World, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The server ends a lane connection while its write waits (``pg_terminate_backend``: what a
    restart does to every connection): that request is answered 503, and no later request meets the
    dead connection (more requests follow than the pool holds)."""
    order = await world.order_in(Status.APPROVED)
    body = {"volunteer_id": world.volunteers["v11a"]}
    async with sessionmaker() as blocker, blocker.begin():
        await blocker.execute(select(Order.id).where(Order.id == order["id"]).with_for_update())
        request = asyncio.create_task(world.act("zhan11_admin", order["id"], "dispatch", body))
        async with sessionmaker() as watcher:
            for _ in range(100):
                # The one backend of this database waiting for a lock: the lane's connection.
                pid = await watcher.scalar(
                    text(
                        "SELECT pid FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                )
                if pid is not None:
                    break
                await asyncio.sleep(0.02)
            assert pid is not None, "the lane's write never waited on the lock"
            assert await watcher.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        response = await request
    assert response.status_code == 503 and response.json()["error"]["code"] == "unavailable"
    settings = app.state.settings
    for i in range(settings.db_pool_size + settings.db_max_overflow + 5):
        action = "withdraw" if i % 2 else "dispatch"
        again = await world.act("zhan11_admin", order["id"], action, body if action == "dispatch" else {})
        assert again.status_code == 200, (i, again.text)


@pytest.mark.parametrize(
    ("error", "retired"),
    [
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), False),  # about the statement
        (asyncpg.exceptions.LockNotAvailableError("lock timeout"), False),
        (asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"), True),
        (asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"), True),
        (TimeoutError(), True),
    ],
    ids=["constraint", "lock-timeout", "server-going-away", "protocol-out-of-step", "client-timeout"],
)
async def test_a_connection_is_retired_only_when_it_cannot_be_trusted(
    app: FastAPI, error: Exception, retired: bool
) -> None:
    """``prepared._guarded``: an error the server reports about a statement leaves the connection in
    the pool; the server going away, a protocol out of step or a timeout mid-statement retire it."""

    async def failing() -> None:
        raise error

    async with checkout(app.state.engine) as db:
        with pytest.raises(type(error)):
            await _guarded(db, failing())
        assert db.driver.is_closed() is retired


async def _lane_backends(sessionmaker: async_sessionmaker[AsyncSession], app: FastAPI) -> set[int]:
    """The server pids of the connections the lane keeps."""
    kept = app.state.lane_connections
    return {proxied.driver_connection.get_server_pid() for _, proxied in kept._idle}


async def test_the_lane_keeps_connections_between_requests_and_gives_them_back(
    world: World, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A lane request leaves its connection with the lane, for the next one (no trip through the
    pool); never more than half the pool, and each is given back after ``KEEP_SECONDS`` unused."""
    kept = app.state.lane_connections
    pool = app.state.engine.sync_engine.pool
    order = await world.order_in(Status.APPROVED)
    await kept.expire(0)
    await world.ok("zhan11_admin", order["id"], "publish")
    backends = await _lane_backends(sessionmaker, app)
    assert len(kept) == 1 and pool.checkedout() == 1
    other = await world.order_in(Status.APPROVED)
    await world.ok("zhan11_admin", other["id"], "publish")
    assert await _lane_backends(sessionmaker, app) == backends  # the same connection, again kept
    # Many at once: the lane keeps at most half the pool; the rest went back.
    orders = [await world.order_in(Status.APPROVED) for _ in range(app.state.settings.db_pool_size)]
    done = await asyncio.gather(*(world.act("zhan11_admin", o["id"], "publish") for o in orders))
    assert [r.status_code for r in done] == [200] * len(orders)
    assert 1 <= len(kept) <= kept.keep == app.state.settings.db_pool_size // 2
    assert pool.checkedout() == len(kept)
    # Unused, they go back to the pool on their own.
    await asyncio.sleep(kept.KEEP_SECONDS * 2.5)
    assert len(kept) == 0 and pool.checkedout() == 0


async def test_a_kept_connection_the_server_closed_is_not_used(
    world: World, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """What a restart does to every connection, done to the ones the lane keeps: the next request
    takes another (200, not 503), and the closed one is retired."""
    kept = app.state.lane_connections
    order = await world.order_in(Status.APPROVED)
    await world.ok("zhan11_admin", order["id"], "publish")
    backends = await _lane_backends(sessionmaker, app)
    assert backends
    async with sessionmaker() as admin:
        for pid in backends:
            assert await admin.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    for _ in range(100):  # the client learns of it when its event loop reads the closed socket
        if all(proxied.driver_connection.is_closed() for _, proxied in kept._idle):
            break
        await asyncio.sleep(0.01)
    other = await world.order_in(Status.APPROVED)
    response = await world.act("zhan11_admin", other["id"], "publish")
    assert response.status_code == 200, response.text
    assert not (await _lane_backends(sessionmaker, app)) & backends


async def test_a_request_waiting_for_the_pool_gets_the_connection_the_lane_is_done_with(
    database_url: str, settings: Settings
) -> None:
    """The lane keeps a connection only while nobody waits for one: with a pool of one, a session
    waiting for it gets it as soon as the lane's request ends, not after the lane stops keeping it."""
    engine = create_engine(
        to_async_url(database_url), settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0})
    )
    kept = KeptConnections(engine, keep=1)
    try:
        async with kept.connection() as db:
            await db.driver.fetchval("SELECT 1")
        assert len(kept) == 1  # nobody waited: kept for the lane's next request
        async with kept.connection() as db:
            waiting = asyncio.create_task(engine.raw_connection())
            await asyncio.sleep(0.05)
            assert not waiting.done()  # the one connection is the lane's
        other = await asyncio.wait_for(waiting, 2)
        assert len(kept) == 0
        await greenlet_spawn(other.close)
    finally:
        await kept.expire(0)
        await engine.dispose()


async def _server_pid(db: Any) -> int:
    pid: int = db.driver.get_server_pid()
    return pid


@pytest.fixture
async def pool_of_two(database_url: str, settings: Settings) -> AsyncIterator[Any]:
    engine = create_engine(
        to_async_url(database_url), settings.model_copy(update={"db_pool_size": 2, "db_max_overflow": 0})
    )
    yield engine
    await engine.dispose()


async def test_a_lane_request_waits_for_the_connection_the_lane_is_done_with(pool_of_two: Any) -> None:
    """Holding all it may, the lane hands a finished request's connection to the next lane request
    (in the order they came), not through the pool; the pool's other connection stays free."""
    pool = pool_of_two.sync_engine.pool
    kept = KeptConnections(pool_of_two, keep=1, hold=1)
    served: list[tuple[str, int]] = []

    async def lane_request(name: str, release: asyncio.Event) -> None:
        async with kept.connection() as db:
            served.append((name, await _server_pid(db)))
            await release.wait()

    releases = [asyncio.Event() for _ in range(3)]
    tasks = [asyncio.create_task(lane_request(f"r{i}", releases[i])) for i in range(3)]
    await asyncio.sleep(0.1)
    assert [name for name, _ in served] == ["r0"] and pool.checkedout() == 1
    releases[0].set()
    await asyncio.sleep(0.05)
    assert [name for name, _ in served] == ["r0", "r1"] and pool.checkedout() == 1
    releases[1].set()
    releases[2].set()
    await asyncio.gather(*tasks)
    assert [name for name, _ in served] == ["r0", "r1", "r2"]
    assert len({pid for _, pid in served}) == 1  # one connection, handed on
    assert len(kept) == 1 and pool.checkedout() == 1
    await kept.expire(0)
    assert pool.checkedout() == 0


async def test_a_request_waiting_for_the_pool_comes_before_lane_requests(pool_of_two: Any) -> None:
    """With the whole pool held by the lane, a request on another route waiting for the pool gets the
    next connection the lane is done with; the lane request waiting gets the one after."""
    kept = KeptConnections(pool_of_two, keep=2, hold=2)
    order: list[str] = []
    release = asyncio.Event()

    async def lane_request(name: str) -> None:
        async with kept.connection() as db:
            order.append(name)
            await db.driver.fetchval("SELECT 1")
            await release.wait()

    holders = [asyncio.create_task(lane_request(f"holder{i}")) for i in range(2)]
    await asyncio.sleep(0.1)
    other = asyncio.create_task(pool_of_two.raw_connection())
    await asyncio.sleep(0.05)
    waiting_lane = asyncio.create_task(lane_request("lane"))
    await asyncio.sleep(0.05)
    assert not other.done() and sorted(order) == ["holder0", "holder1"]
    release.set()
    proxied = await asyncio.wait_for(other, 2)
    await asyncio.wait_for(asyncio.gather(*holders, waiting_lane), 2)
    assert sorted(order[:2]) == ["holder0", "holder1"] and order[2] == "lane"
    await greenlet_spawn(proxied.close)
    await kept.expire(0)
    assert pool_of_two.sync_engine.pool.checkedout() == 0


async def test_a_connection_retired_mid_request_frees_its_place_for_the_next(pool_of_two: Any) -> None:
    """A lane request cut short (its connection is never handed on) lets the lane request waiting
    take another from the pool at once."""
    kept = KeptConnections(pool_of_two, keep=1, hold=1)
    entered = asyncio.Event()

    async def cut_short() -> None:
        async with kept.connection() as db:
            entered.set()
            await db.driver.fetchval("SELECT pg_sleep(10)")

    first = asyncio.create_task(cut_short())
    await entered.wait()
    pid = None

    async def next_request() -> None:
        nonlocal pid
        async with kept.connection() as db:
            pid = await _server_pid(db)

    waiting = asyncio.create_task(next_request())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    first.cancel()
    await asyncio.wait_for(waiting, 5)
    with pytest.raises(asyncio.CancelledError):
        await first
    assert pid is not None and len(kept) == 1
    await kept.expire(0)
    assert pool_of_two.sync_engine.pool.checkedout() == 0


async def test_a_lane_request_gives_up_waiting_as_the_pool_would(pool_of_two: Any) -> None:
    """Waiting for the lane's connection ends with the pool's own timeout error (answered 503), and a
    request that gave up or went away leaves nothing behind: the next release is kept, not lost."""
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    pool_of_two.sync_engine.pool._timeout = 0.2
    kept = KeptConnections(pool_of_two, keep=1, hold=1)
    expiry = asyncio.create_task(kept.expire_every(0.05))  # as the app runs it
    async with kept.connection():
        with pytest.raises(PoolTimeoutError):
            async with kept.connection():
                pass
        expiry.cancel()
        gone = asyncio.create_task(kept.connection().__aenter__())
        await asyncio.sleep(0.05)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert not kept._waiters
    assert len(kept) == 1 and pool_of_two.sync_engine.pool.checkedout() == 1
    async with kept.connection():
        assert len(kept) == 0
    await kept.expire(0)
    assert pool_of_two.sync_engine.pool.checkedout() == 0
