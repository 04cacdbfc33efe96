"""Faults: the database stops, freezes or holds a lock; a client gives up mid-request; SIGTERM arrives.

Each must end in a quick, clean answer (503 ``unavailable`` or 409 ``busy``, never a 500 or a hang),
in no half-done transition, and in a service that recovers by itself. The outage tests own a
PostgreSQL of their own (a ``pgserver`` in a temporary directory) so they can stop and freeze it;
the lock and cancellation tests use the shared test database; the SIGTERM test runs ``sidan serve``.

Time bounds here (``HANG``) only tell a hang from an answer; they measure no performance.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import create_engine, create_sessionmaker, to_async_url
from app.main import create_app
from app.migrate import upgrade
from app.models import Base
from tests.helpers import free_port, process_alive
from tests.world import World, build_world

ROOT = Path(__file__).resolve().parent.parent
HANG = 8.0  # seconds: any answer slower than this is a hang, not an answer
FROZEN_HANG = 15.0  # a frozen server is only noticed by the client-side timeouts (connect 5 s, command 3 s)


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _settings(**overrides: Any) -> Settings:
    return Settings(environment="test", enable_dev_token=True, run_worker=False, **overrides)


@asynccontextmanager
async def _serving(
    settings: Settings, url: str, *, empty: bool = False
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app with its own engine on ``url``, and an in-process client (app exceptions propagate)."""
    application = create_app(settings, database_url=url)
    async with application.router.lifespan_context(application):
        if empty:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            async with application.state.engine.begin() as connection:
                await connection.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
            yield application, client


async def _timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    """The response and how long it took; a hang fails the test instead of stalling it."""
    started = time.monotonic()
    response = await asyncio.wait_for(call, timeout=FROZEN_HANG + 5)
    return response, time.monotonic() - started


def _assert_unavailable(response: httpx.Response, elapsed: float, bound: float = HANG) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "unavailable", response.text
    assert response.headers["Retry-After"], response.headers
    assert elapsed < bound, f"answered after {elapsed:.1f}s"


# ---- a PostgreSQL the tests may stop, start and freeze ------------------------------------------


@dataclass
class OwnPostgres:
    server: Any  # pgserver.PostgresServer
    url: str

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def start(self) -> None:
        with self.server._lock:  # pgserver's own start: same socket directory, so the same URL
            self.server.ensure_postgres_running()

    def processes(self) -> list[psutil.Process]:
        postmaster = psutil.Process(self.server.get_pid())
        return [postmaster, *postmaster.children(recursive=True)]


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    import pgserver

    data_dir = Path(tempfile.mkdtemp(prefix="sidan-faults-"))
    server = pgserver.get_server(data_dir / "pgdata", cleanup_mode="stop")
    try:
        server.psql('CREATE DATABASE "faults";')
        url = to_async_url(server.get_uri("faults"))
        upgrade(url)
        yield OwnPostgres(server, url)
    finally:
        if _running(server):  # never leave it frozen, whatever a test did
            for process in OwnPostgres(server, "").processes():
                process.resume()
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


def _running(server: Any) -> bool:
    pid = server.get_pid()
    return pid is not None and psutil.pid_exists(pid)


# ---- the database stops mid-load, then comes back ----------------------------------------------


async def test_database_stopped_mid_load_answers_fast_503s_then_recovers(own_postgres: OwnPostgres) -> None:
    async with _serving(_settings(db_pool_size=10), own_postgres.url, empty=True) as (app, client):
        world = await build_world(app.state.sessionmaker, client)
        orders = [(await world.place())["id"] for _ in range(8)]
        outcomes: Counter[tuple[str, int]] = Counter()
        slowest = 0.0
        running, phase = True, "before"

        async def load(worker: int) -> None:
            """Residents read their orders while staff approve and publish, without pause."""
            nonlocal slowest
            order_id = orders[worker % len(orders)]
            step = 0
            while running:
                step += 1
                if step % 2:
                    call = client.get("/orders/mine", headers=world.h("r1"))
                else:
                    action = "approve" if step % 4 == 2 else "publish"
                    call = world.act("zhan11_admin", order_id, action)
                started_in = phase
                response, elapsed = await _timed(call)
                slowest = max(slowest, elapsed)
                outcomes[(started_in, response.status_code)] += 1

        workers = [asyncio.create_task(load(i)) for i in range(12)]
        try:
            await asyncio.sleep(0.5)
            assert outcomes[("before", 200)] > 0, outcomes
            phase = "down"
            await asyncio.to_thread(own_postgres.stop)
            await asyncio.sleep(1.0)  # the load keeps hitting the stopped database

            readyz, elapsed = await _timed(client.get("http://test/readyz"))
            _assert_unavailable(readyz, elapsed)
            mine, elapsed = await _timed(client.get("/orders/mine", headers=world.h("r1")))
            _assert_unavailable(mine, elapsed)
            action, elapsed = await _timed(world.act("zhan11_admin", orders[0], "cancel", {"reason": "测试"}))
            _assert_unavailable(action, elapsed)

            await asyncio.to_thread(own_postgres.start)
            phase = "restarted"
            # The pool replaces its dead connections by itself (pre-ping, invalidation): no restart.
            for _ in range(50):
                if (await client.get("http://test/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            phase = "after"
            await asyncio.sleep(0.5)  # the load runs against the recovered database too
        finally:
            running = False
            await asyncio.gather(*workers)

        codes = {code for _, code in outcomes}
        assert codes <= {200, 409, 503}, outcomes  # 409: approve/publish in the wrong state; never a 500
        assert outcomes[("down", 503)] > 0, outcomes
        assert outcomes[("after", 503)] == 0, outcomes
        assert outcomes[("after", 200)] > 0, outcomes
        assert slowest < HANG, f"a request took {slowest:.1f}s"
        assert (await client.get("/orders/mine", headers=world.h("r1"))).status_code == 200
        cancelled = await world.act("zhan11_admin", orders[0], "cancel", {"reason": "恢复后"})
        assert cancelled.status_code in (200, 409), cancelled.text
        await _assert_no_half_done_orders(app.state.engine)


async def test_frozen_database_answers_503_within_the_client_timeouts(own_postgres: OwnPostgres) -> None:
    """A server that accepts connections but never answers (SIGSTOP: a hung host, a partition)."""
    async with _serving(_settings(db_statement_timeout_ms=1000), own_postgres.url, empty=True) as (app, client):
        world = await build_world(app.state.sessionmaker, client)
        order = await world.place()
        assert (await client.get("/orders/mine", headers=world.h("r1"))).status_code == 200
        frozen = own_postgres.processes()
        for process in frozen:
            process.suspend()
        try:
            answers = await asyncio.gather(
                _timed(client.get("http://test/readyz")),
                _timed(client.get("/orders/mine", headers=world.h("r1"))),
                _timed(world.act("zhan11_admin", order["id"], "approve")),
            )
        finally:
            for process in frozen:
                process.resume()
        for response, elapsed in answers:
            _assert_unavailable(response, elapsed, FROZEN_HANG)
        for _ in range(50):
            if (await client.get("/orders/mine", headers=world.h("r1"))).status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert (await world.act("zhan11_admin", order["id"], "approve")).status_code == 200


# ---- lock and statement timeouts ---------------------------------------------------------------


@asynccontextmanager
async def _row_locked(database_url: str, order_id: int) -> AsyncIterator[asyncpg.Connection]:
    """Hold ``SELECT … FOR UPDATE`` on the order from another connection until the block ends."""
    connection = await asyncpg.connect(_dsn(database_url))
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", order_id)
        try:
            yield connection
        finally:
            await transaction.rollback()
    finally:
        await connection.close()


async def _order_state(database_url: str, order_id: int) -> tuple[str, int, int, int]:
    """status, version, events, outbox rows: everything one transition writes."""
    connection = await asyncpg.connect(_dsn(database_url))
    try:
        row = await connection.fetchrow(
            """SELECT o.status, o.version,
                      (SELECT count(*) FROM order_events e WHERE e.order_id = o.id) AS events,
                      (SELECT count(*) FROM outbox_messages m WHERE m.order_id = o.id) AS outbox
               FROM orders o WHERE o.id = $1""",
            order_id,
        )
        assert row is not None
        return row["status"], row["version"], row["events"], row["outbox"]
    finally:
        await connection.close()


async def test_lock_wait_past_lock_timeout_is_a_clean_409_busy(world: World, database_url: str) -> None:
    order = await world.place()
    before = await _order_state(database_url, order["id"])
    async with _serving(_settings(db_lock_timeout_ms=300), database_url) as (_, client):
        headers = world.h("zhan11_admin")
        async with _row_locked(database_url, order["id"]):
            response, elapsed = await _timed(client.post(f"/orders/{order['id']}/approve", json={}, headers=headers))
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "busy", response.text
        assert response.headers["Retry-After"]
        assert elapsed < HANG
        assert await _order_state(database_url, order["id"]) == before
        retried = await client.post(f"/orders/{order['id']}/approve", json={}, headers=headers)
        assert retried.status_code == 200, retried.text


async def test_statement_past_statement_timeout_is_a_clean_503(world: World, database_url: str) -> None:
    order = await world.place()
    before = await _order_state(database_url, order["id"])
    # lock_timeout 0 = wait for ever: only statement_timeout can end the wait.
    settings = _settings(db_lock_timeout_ms=0, db_statement_timeout_ms=300)
    async with _serving(settings, database_url) as (_, client), _row_locked(database_url, order["id"]):
        response, elapsed = await _timed(
            client.post(f"/orders/{order['id']}/approve", json={}, headers=world.h("zhan11_admin"))
        )
    _assert_unavailable(response, elapsed)
    assert await _order_state(database_url, order["id"]) == before


# ---- a client that goes away mid-request -------------------------------------------------------


async def _wait_for_lock_waiter(connection: asyncpg.Connection) -> None:
    for _ in range(200):
        waiting = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'sidan' AND wait_event_type = 'Lock' AND datname = current_database()"
        )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the request never waited for the row lock")


async def _sidan_backends(database_url: str) -> Counter[str]:
    connection = await asyncpg.connect(_dsn(database_url))
    try:
        rows = await connection.fetch(
            "SELECT state FROM pg_stat_activity WHERE application_name = 'sidan' AND datname = current_database()"
        )
        return Counter(str(row["state"]) for row in rows)
    finally:
        await connection.close()


async def test_request_cancelled_while_waiting_for_the_row_is_done_whole_once_the_row_is_free(
    world: World, database_url: str, app: FastAPI
) -> None:
    """The write statement was sent: the server runs it to its end whatever the client does, so the
    request is not cut short either. Once the row is free the transition is done whole (one event),
    its connection goes back to the pool, and nothing waits in a transaction."""
    order = await world.place()
    before = await _order_state(database_url, order["id"])
    async with _row_locked(database_url, order["id"]) as holder:
        request = asyncio.create_task(world.act("zhan11_admin", order["id"], "approve"))
        await _wait_for_lock_waiter(holder)
        request.cancel()  # what a disconnect does to a cancellable server task
        with pytest.raises(asyncio.CancelledError):
            await request
        assert await _order_state(database_url, order["id"]) == before  # still waiting for the row
    for _ in range(50):
        if app.state.engine.sync_engine.pool.checkedout() == 0:
            break
        await asyncio.sleep(0.05)
    state = await _order_state(database_url, order["id"])
    assert state[0] == "approved" and state[1] == before[1] + 1 and state[2] == before[2] + 1, state
    assert (await _sidan_backends(database_url))["idle in transaction"] == 0
    assert app.state.engine.sync_engine.pool.checkedout() == 0


async def test_requests_cancelled_at_random_points_are_all_or_nothing(
    world: World, database_url: str, app: FastAPI
) -> None:
    control = await world.place()
    untouched = await _order_state(database_url, control["id"])
    started = time.monotonic()
    await world.ok("zhan11_admin", control["id"], "approve")
    duration = time.monotonic() - started
    done = await _order_state(database_url, control["id"])
    assert done[1] == untouched[1] + 1 and done[2] == untouched[2] + 1

    rng = random.Random(20260305)
    outcomes: Counter[str] = Counter()
    order_ids = []
    for _ in range(30):
        order_id = (await world.place())["id"]
        order_ids.append(order_id)
        request = asyncio.create_task(world.act("zhan11_admin", order_id, "approve"))
        await asyncio.sleep(rng.uniform(0, duration * 1.5))  # anywhere from auth to after the commit
        request.cancel()
        try:
            response = await request
        except asyncio.CancelledError:
            outcomes["cancelled"] += 1
        else:
            outcomes[str(response.status_code)] += 1
    await asyncio.sleep(0.2)
    for order_id in order_ids:
        state = await _order_state(database_url, order_id)
        assert state in (untouched, done), f"order {order_id} is half-done: {state} ({outcomes})"
    assert outcomes["cancelled"] > 0, outcomes
    assert (await _sidan_backends(database_url))["idle in transaction"] == 0
    # Every request gave its connection back, cancelled or not (app.db.RequestSessions, and an
    # action's shielded ``apply``), in no transaction.
    assert app.state.engine.sync_engine.pool.checkedout() == 0
    assert (await world.client.get("/orders/mine", headers=world.h("r1"))).status_code == 200


async def _assert_no_half_done_orders(engine: AsyncEngine) -> None:
    """Every order's version counts its events, and its status is its last event's."""
    async with engine.connect() as connection:
        broken = (
            await connection.exec_driver_sql(
                """SELECT o.id FROM orders o
                   WHERE o.version <> (SELECT count(*) FROM order_events e WHERE e.order_id = o.id)
                      OR o.status <> (SELECT e.to_status FROM order_events e WHERE e.order_id = o.id
                                      ORDER BY e.id DESC LIMIT 1)"""
            )
        ).all()
    assert broken == []


# ---- SIGTERM drains the requests in flight -----------------------------------------------------


async def test_sigterm_lets_the_request_in_flight_finish(tmp_path: Path) -> None:
    from pgserver.utils import PostmasterInfo

    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SIDAN_DATABASE_URL"}}
    env |= {"SIDAN_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    pgdata = tmp_path / "data" / "pgdata"
    process = _start_serve(port, env, log)
    postmaster: int | None = None
    try:
        await _wait_until_healthy(process, base_url, log)
        info = PostmasterInfo.read_from_pgdata(pgdata)
        assert info is not None
        postmaster = info.pid
        url = to_async_url(info.get_uri(database="sidan"))
        world = await _world_on(url)
        async with httpx.AsyncClient(base_url=f"{base_url}/api/v1", timeout=30) as http:
            placed = await http.post("/orders", json=world.order_body(), headers=world.h("r1"))
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["id"]
            async with _row_locked(url, order_id) as holder:
                in_flight = asyncio.create_task(
                    http.post(f"/orders/{order_id}/approve", json={}, headers=world.h("zhan11_admin"))
                )
                await _wait_for_lock_waiter(holder)
                process.send_signal(signal.SIGTERM)
                await asyncio.sleep(1.0)
                assert process.poll() is None, "the server quit with a request in flight"
                with pytest.raises(httpx.TransportError):  # it takes no new connections meanwhile
                    async with httpx.AsyncClient(timeout=5) as fresh:
                        await fresh.get(f"{base_url}/healthz")
            response = await asyncio.wait_for(in_flight, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "approved"
        code = await asyncio.to_thread(process.wait, 30)
        assert code == 128 + signal.SIGTERM, _output(log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if postmaster is not None and process_alive(postmaster) and (pgdata / "postmaster.pid").exists():
            os.kill(postmaster, signal.SIGTERM)
    for _ in range(75):
        if not (pgdata / "postmaster.pid").exists():
            break
        await asyncio.sleep(0.2)
    assert not (pgdata / "postmaster.pid").exists(), "embedded PostgreSQL left running"


def _start_serve(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``sidan serve`` on the embedded PostgreSQL in ``SIDAN_DATA_DIR`` (as in tests/test_cli_e2e.py)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _output(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")


async def _wait_until_healthy(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"sidan serve exited with {process.returncode}:\n{_output(log)}")
            try:
                if (await http.get(f"{base_url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.3)
    pytest.fail(f"sidan serve not ready:\n{_output(log)}")


async def _world_on(url: str) -> World:
    """The test county, written straight into the served database; tokens signed with its secret."""
    engine = create_engine(url, Settings())
    try:
        stand_in = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(Settings())))
        async with stand_in:
            maker: async_sessionmaker[AsyncSession] = create_sessionmaker(engine)
            return await build_world(maker, stand_in)
    finally:
        await engine.dispose()
