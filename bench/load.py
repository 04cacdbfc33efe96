"""Load benchmark of a running Sidan service: lifecycles, a grab storm, read traffic, and the baseline.

    SIDAN_RESIDENT_ORDERS_PER_HOUR=100000000 sidan serve [--workers N] &   # or DATABASE_URL=…; residents order a lot
    python -m bench.load [--base-url http://127.0.0.1:8000] [--duration 15] [--connections 64] [--workers N]

The bench seeds its own data with the service's own code (models and ``place_order``/``apply``)
in the service's database (``--database-url``, else ``DATABASE_URL``, else the embedded server in
``SIDAN_DATA_DIR``), signs tokens with the same settings (run it with the service's environment), then:

(a) lifecycles place→approve→dispatch→accept→check-in→complete→rate by N concurrent clients;
(b) a grab storm: 1,000 volunteers at once over 100 pooled orders, ten per order (exactly 100 winners);
(c) read traffic: volunteers polling task lists, residents polling their orders;
(d) one transition per request (dispatch ⇄ withdraw) driven by wrk, beside the same transition SQL
    (SELECT … FOR UPDATE, UPDATE, INSERT event in one transaction) run by pgbench and by a minimal
    raw-asyncpg FastAPI endpoint, and that endpoint's one-statement variant, in the same run, with ratios.
Everything is printed; nothing is asserted on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, make_url, select

from app.auth import Caller, issue_token, load_actor
from app.config import get_settings
from app.db import create_engine, create_sessionmaker, to_async_url
from app.domain import Action, Role
from app.models import OrderEvent, OrgUnit, User, Volunteer
from app.schemas.orders import EmptyBody, OrderCreate, PublishBody
from app.services.applying import apply
from app.services.ordering import place_order
from bench.client import LeanClient, NoResponse
from bench.common import describe_machine, plain_dsn, scratch_database

HERE = Path(__file__).resolve().parent
PHONE = "13800001234"


def versions() -> str:
    return ", ".join(f"{name} {version(name)}" for name in ("fastapi", "uvicorn", "sqlalchemy", "asyncpg", "pydantic"))


def percentiles(samples: list[float]) -> str:
    if not samples:
        return "n/a"
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return f"p50 {pick(0.50):7.1f} ms  p95 {pick(0.95):7.1f} ms  p99 {pick(0.99):7.1f} ms"


class Seed:
    """A bench county of its own: a center, a station, an admin, volunteers and residents."""

    def __init__(self, url: str, volunteers: int, residents: int) -> None:
        self.url, self.n_volunteers, self.n_residents = url, volunteers, residents
        # The bench's residents order far beyond the per-hour abuse limit.
        self.settings = get_settings().model_copy(update={"resident_orders_per_hour": 10**9})
        self.tag = uuid.uuid4().hex[:6]

    async def create(self) -> None:
        engine = create_engine(self.url, self.settings)
        self.sessionmaker = create_sessionmaker(engine)
        async with self.sessionmaker() as session, session.begin():
            center = OrgUnit(level="center", name=f"基准中心{self.tag}", code=f"BENCH-{self.tag}", path="-")
            session.add(center)
            await session.flush()
            center.path = f"{center.id}."
            station = OrgUnit(
                parent_id=center.id,
                level="station",
                name=f"基准站{self.tag}",
                code=f"BENCH-{self.tag}-1",
                path="-",
                depth=1,
            )
            session.add(station)
            await session.flush()
            station.path = f"{center.path}{station.id}."
            self.station_id = station.id
            admin = User(username=f"bench-admin-{self.tag}", role=Role.ADMIN.value, unit_id=station.id)
            session.add(admin)
            users = [
                {"username": f"bench-v{i}-{self.tag}", "role": "volunteer", "unit_id": station.id}
                for i in range(self.n_volunteers)
            ] + [
                {"username": f"bench-r{i}-{self.tag}", "role": "resident", "unit_id": station.id}
                for i in range(self.n_residents)
            ]
            rows = (await session.execute(insert(User).returning(User), users)).scalars().all()
            volunteer_users = [u for u in rows if u.role == "volunteer"]
            self.residents = [u for u in rows if u.role == "resident"]
            profiles = (
                (
                    await session.execute(
                        insert(Volunteer).returning(Volunteer),
                        [
                            {
                                "user_id": u.id,
                                "real_name": u.username,
                                "phone": PHONE,
                                "home_unit_id": station.id,
                                "max_open_orders": 1000,
                            }
                            for u in volunteer_users
                        ],
                    )
                )
                .scalars()
                .all()
            )
            await session.flush()
            self.admin = admin
            self.volunteers = list(zip(volunteer_users, profiles, strict=True))
        self.tokens_admin = issue_token(self.settings, admin)
        await engine.dispose()

    def token(self, user: User) -> str:
        return issue_token(self.settings, user)

    def order_body(self) -> dict[str, Any]:
        return {
            "title": "基准测试服务",
            "description": "bench",
            "unit_id": self.station_id,
            "address": "基准地址",
            "contact_name": "张三",
            "contact_phone": PHONE,
        }

    async def orders_in(self, count: int, publish: bool) -> list[int]:
        """Approved (or pooled) orders placed and moved by the service's own code."""
        engine = create_engine(self.url, self.settings)
        sessionmaker = create_sessionmaker(engine)
        ids: list[int] = []
        admin = Caller(self.admin.id)
        async with sessionmaker() as session:
            resident = await load_actor(session, self.residents[0].id)
            for _ in range(count):
                order = await place_order(session, self.settings, resident, OrderCreate(**self.order_body()))
                async with engine.connect() as connection:
                    await apply(connection, order_id=order.id, action=Action.APPROVE, caller=admin, body=EmptyBody())
                    if publish:
                        body = PublishBody(accept_within_minutes=600)
                        await apply(connection, order_id=order.id, action=Action.PUBLISH, caller=admin, body=body)
                ids.append(order.id)
        await engine.dispose()
        return ids


# ---- (a) lifecycles ------------------------------------------------------------------------------

LIFECYCLE = ["place", "approve", "dispatch", "accept", "check-in", "complete", "rate"]


async def lifecycles(base: str, seed: Seed, clients: int, duration: float) -> None:
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    admin = {"Authorization": f"Bearer {seed.tokens_admin}"}
    deadline = time.perf_counter() + duration

    async def client(i: int, http: LeanClient) -> None:
        user, profile = seed.volunteers[i % len(seed.volunteers)]
        volunteer = {"Authorization": f"Bearer {seed.token(user)}"}
        resident = {"Authorization": f"Bearer {seed.token(seed.residents[i % len(seed.residents)])}"}
        complete = {"summary": "完成", "served_count": 1, "participants": [{"volunteer_id": profile.id, "hours": 0.5}]}
        steps: list[tuple[str, dict[str, str], dict[str, Any]]] = [
            ("approve", admin, {}),
            ("dispatch", admin, {"volunteer_id": profile.id}),
            ("accept", volunteer, {}),
            ("check-in", volunteer, {}),
            ("complete", volunteer, complete),
            ("rate", resident, {"stars": 5}),
        ]
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                response = await http.post("/api/v1/orders", json=seed.order_body(), headers=resident)
            except NoResponse:  # counted, not fatal: the run goes on
                errors["place: no response"] += 1
                continue
            latencies["place"].append(time.perf_counter() - started)
            if response.status_code != 201:
                errors["place"] += 1
                continue
            order_id = response.json()["id"]
            for action, headers, body in steps:
                started = time.perf_counter()
                try:
                    response = await http.post(f"/api/v1/orders/{order_id}/{action}", json=body, headers=headers)
                except NoResponse:
                    errors[f"{action}: no response"] += 1
                    break
                latencies[action].append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors[action] += 1
                    break

    started = time.perf_counter()
    async with LeanClient(base, connections=clients, timeout=30) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    elapsed = time.perf_counter() - started
    transitions = sum(len(v) for v in latencies.values())
    print(
        f"(a) lifecycles: {clients} clients, {elapsed:.1f} s: {transitions / elapsed:.0f} transitions/s, "
        f"{len(latencies['rate']) / elapsed:.1f} full lifecycles/s, errors {dict(errors) or 0}"
    )
    for action in LIFECYCLE:
        print(f"    {action:9s} n={len(latencies[action]):6d}  {percentiles(latencies[action])}")


# ---- (b) grab storm --------------------------------------------------------------------------------


async def grab_storm(base: str, seed: Seed, grabbers: int, pooled: int) -> None:
    orders = await seed.orders_in(pooled, publish=True)
    codes: dict[int, int] = defaultdict(int)
    latencies: list[float] = []
    winners: list[int] = []

    async def volunteer(index: int, user: User, http: LeanClient) -> None:
        # Ten volunteers per order, all at once: exactly one of each ten may win.
        order_id = orders[index % len(orders)]
        headers = {"Authorization": f"Bearer {seed.token(user)}"}
        started = time.perf_counter()
        try:
            response = await http.post(f"/api/v1/orders/{order_id}/grab", json={}, headers=headers)
        except NoResponse:
            codes[0] += 1  # connection dropped: counted as status 0 (the grab events below tell the truth)
            return
        latencies.append(time.perf_counter() - started)
        codes[response.status_code] += 1
        if response.status_code == 200:
            winners.append(order_id)

    started = time.perf_counter()
    async with LeanClient(base, connections=64, timeout=60) as http:
        await asyncio.gather(*(volunteer(i, user, http) for i, (user, _) in enumerate(seed.volunteers[:grabbers])))
    elapsed = time.perf_counter() - started
    engine = create_engine(seed.url, seed.settings)
    async with create_sessionmaker(engine)() as session:
        grabs = (
            await session.execute(
                select(OrderEvent.order_id, func.count())
                .where(OrderEvent.order_id.in_(orders), OrderEvent.action == Action.GRAB.value)
                .group_by(OrderEvent.order_id)
            )
        ).all()
    await engine.dispose()
    exactly_once = len(grabs) == pooled and all(n == 1 for _, n in grabs)
    verdict = "OK" if exactly_once and len(set(winners)) == len(winners) else "WRONG"
    print(
        f"(b) grab storm: {grabbers} volunteers over {pooled} pooled orders in {elapsed:.3f} s: "
        f"winners {len(winners)}, grab events {sum(n for _, n in grabs)} on {len(grabs)} orders "
        f"({verdict}: exactly one per order), "
        f"status codes {dict(sorted(codes.items()))}, {percentiles(latencies)}"
    )


# ---- (c) read traffic ----------------------------------------------------------------------------------


async def reads(base: str, seed: Seed, clients: int, duration: float) -> None:
    latencies: dict[str, list[float]] = defaultdict(list)
    errors = 0
    failures = 0  # no response at all
    deadline = time.perf_counter() + duration

    async def client(i: int, http: LeanClient) -> None:
        nonlocal errors, failures
        user, _ = seed.volunteers[i % len(seed.volunteers)]
        resident = seed.residents[i % len(seed.residents)]
        polls = [
            ("volunteer tasks", "/api/v1/volunteer/tasks?kind=assigned", seed.token(user)),
            ("volunteer pool", "/api/v1/volunteer/tasks?kind=pool", seed.token(user)),
            ("resident orders", "/api/v1/orders/mine", seed.token(resident)),
        ]
        while time.perf_counter() < deadline:
            name, path, token = polls[random.randrange(3)]
            started = time.perf_counter()
            try:
                response = await http.get(path, headers={"Authorization": f"Bearer {token}"})
            except NoResponse:  # counted, not fatal: the run goes on
                failures += 1
                errors += 1
                continue
            latencies[name].append(time.perf_counter() - started)
            errors += response.status_code != 200

    started = time.perf_counter()
    async with LeanClient(base, connections=clients, timeout=30) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    elapsed = time.perf_counter() - started
    total = sum(len(v) for v in latencies.values())
    print(
        f"(c) reads: {clients} clients: {total / elapsed:.0f} requests/s, errors {errors}"
        + (f" ({failures} without a response)" if failures else "")
    )
    for name, samples in latencies.items():
        print(f"    {name:16s} n={len(samples):6d}  {percentiles(samples)}")


# ---- (d) one transition: pgbench, raw asyncpg endpoint, Sidan -----------------------------------------

PGBENCH_SCRIPT = """\\set id random(1, {n})
BEGIN;
SELECT status FROM bench_orders WHERE id = :id FOR UPDATE;
UPDATE bench_orders SET status = CASE WHEN status = 'approved' THEN 'dispatched' ELSE 'approved' END,
    version = version + 1 WHERE id = :id;
INSERT INTO bench_events (order_id, to_status) SELECT id, status FROM bench_orders WHERE id = :id;
END;
"""


def tool(name: str) -> str:
    """A PostgreSQL client binary: the system's, else the one inside the pgserver wheel."""
    found = shutil.which(name)
    if found:
        return found
    import pgserver

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)


def wrk(url: str, script: Path, args: list[str], connections: int, duration: float) -> tuple[float, int]:
    """(successful requests per second, non-2xx responses) of one wrk run; a 409 is not throughput."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for (d): apt-get install wrk")
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{int(duration)}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            url,
            "--",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    assert done is not None, out
    seconds = float(done.group(2)) / (1000 if done.group(3) == "ms" else 1)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    failed = int(bad.group(1)) if bad else 0
    return (int(done.group(1)) - failed) / seconds, failed


def wait_for(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


async def single_transition(
    base: str, seed: Seed, server: str, connections: int, duration: float, workers: int, rounds: int
) -> None:
    """(d): pgbench once, then, after two seconds of warm-up each, ``rounds`` rounds of raw (three
    statements) and Sidan back to back (which goes first alternates), then raw (one statement), each
    driven by wrk for ``duration`` seconds. The machine's speed drifts (shared cores), so the ratios
    are taken within each round and their median printed."""
    n = 2000
    async with scratch_database(server, "sidan_bench_raw") as raw_url:
        import asyncpg

        dsn = plain_dsn(raw_url)
        connection = await asyncpg.connect(dsn)
        await connection.execute(
            "CREATE TABLE bench_orders (id bigint PRIMARY KEY, status text NOT NULL, version int NOT NULL);"
            "CREATE TABLE bench_events (id bigserial PRIMARY KEY, order_id bigint NOT NULL, to_status text NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now());"
            f"INSERT INTO bench_orders SELECT g, 'approved', 1 FROM generate_series(1, {n}) g;"
        )
        await connection.execute("VACUUM ANALYZE")
        await connection.close()
        orders = await seed.orders_in(n // 4, publish=False)
        await vacuum_analyze(seed.url)
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "transition.sql"
            script.write_text(PGBENCH_SCRIPT.format(n=n))
            out = subprocess.run(
                [tool("pgbench"), "-n", f"-c{connections}", "-j2", f"-T{int(duration)}", "-f", str(script), dsn],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            pgbench_tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]

            volunteer_ids = [profile.id for _, profile in seed.volunteers]
            listing = Path(tmp) / "orders.txt"
            port = 18099
            env = os.environ | {"RAW_DSN": dsn, "RAW_POOL": str(get_settings().db_pool_size)}
            raw = subprocess.Popen(
                [
                    *(sys.executable, "-m", "uvicorn", "bench.raw_app:app", "--port", str(port)),
                    *("--log-level", "warning", "--workers", str(workers)),
                ],
                env=env,
                cwd=HERE.parent,
            )
            raw_base = f"http://127.0.0.1:{port}"
            measured: list[tuple[float, float, float]] = []
            failed = [0, 0, 0]
            try:
                wait_for(f"{raw_base}/docs")
                targets = (
                    (raw_base, HERE / "wrk" / "raw.lua", [str(n)]),
                    (raw_base, HERE / "wrk" / "raw.lua", [str(n), "/transition-cte"]),
                    (base, HERE / "wrk" / "sidan.lua", [str(listing), "2"]),
                )
                for url, script, args in targets:  # warm-up: connections, prepared statements, caches
                    if url == base:
                        await list_orders(seed.url, listing, seed.tokens_admin, volunteer_ids, orders)
                    wrk(url, script, args, connections, 2)
                for round_ in range(rounds):
                    # The ratio's two runs back to back, the first of them in turn (a drift in the
                    # machine's speed then favours neither side), the one-statement variant after.
                    runs: dict[int, tuple[float, int]] = {}
                    for i in ((0, 2) if round_ % 2 == 0 else (2, 0)) + (1,):
                        url, script, args = targets[i]
                        if url == base:
                            await list_orders(seed.url, listing, seed.tokens_admin, volunteer_ids, orders)
                        runs[i] = wrk(url, script, args, connections, duration)
                    measured.append((runs[0][0], runs[1][0], runs[2][0]))
                    failed = [total + runs[i][1] for i, total in enumerate(failed)]
            finally:
                raw.terminate()
                raw.wait(10)
    raw3, raw1, ours = (statistics.median(column) for column in zip(*measured, strict=True))
    to_raw3 = statistics.median(round_[2] / round_[0] for round_ in measured)
    to_raw1 = statistics.median(round_[2] / round_[1] for round_ in measured)
    print(
        f"(d) one transition per request (SELECT … FOR UPDATE, UPDATE, INSERT event), {connections} connections,"
        f" {workers} server process(es) each; {rounds} rounds of {duration:.0f} s each, side by side:"
    )
    print(f"    pgbench (SQL alone)                {pgbench_tps:8.0f} tps")
    for i, (a, b, c) in enumerate(measured, 1):
        print(f"    round {i}: raw {a:6.0f}  one statement {b:6.0f}  Sidan {c:6.0f} req/s  Sidan / raw {c / a:4.0%}")
    print(f"    FastAPI + raw asyncpg (wrk)        {raw3:8.0f} req/s   non-2xx {failed[0]}   (3 statements; median)")
    print(f"    … in one statement (wrk)           {raw1:8.0f} req/s   non-2xx {failed[1]}   (1 statement; median)")
    print(f"    Sidan dispatch ⇄ withdraw (wrk)    {ours:8.0f} req/s   non-2xx {failed[2]}   (median; 2xx only)")
    print(f"    ratio Sidan / raw asyncpg          {to_raw3:8.0%}   (median of the rounds' ratios; target ≥ 60 %)")
    print(f"    ratio Sidan / raw, one statement   {to_raw1:8.0%}")
    print(f"    ratio Sidan / pgbench              {ours / pgbench_tps:8.0%}")


async def list_orders(url: str, listing: Path, token: str, volunteer_ids: list[int], orders: list[int]) -> None:
    """``bench/wrk/sidan.lua``'s input: the token, the volunteers to dispatch to, then each order with
    its status now, so that its first request is the right one (a client knows its orders)."""
    import asyncpg

    connection = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await connection.fetch("SELECT id, status FROM orders WHERE id = ANY($1::bigint[])", orders)
    finally:
        await connection.close()
    lines = [token, " ".join(map(str, volunteer_ids)), *(f"{row['id']} {row['status']}" for row in rows)]
    await asyncio.to_thread(listing.write_text, "\n".join(lines) + "\n")


async def vacuum_analyze(url: str) -> None:
    """Fresh statistics and visibility maps after seeding, so no autovacuum runs in a measurement."""
    import asyncpg

    connection = await asyncpg.connect(plain_dsn(url))
    try:
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--database-url", help="the service's database (default: DATABASE_URL or embedded)")
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients for (a) and (c)")
    parser.add_argument("--only", choices=["a", "b", "c", "d"], action="append")
    parser.add_argument("--rounds", type=int, default=3, help="(d): rounds of raw and Sidan side by side")
    parser.add_argument(
        "--workers", type=int, default=1, help="the service's --workers; the raw baseline (d) runs as many"
    )
    args = parser.parse_args()
    explicit = args.database_url or os.environ.get("DATABASE_URL") or os.environ.get("SIDAN_DATABASE_URL")
    if explicit:
        url = to_async_url(explicit)
    else:
        from app.db import start_embedded_postgres

        url = start_embedded_postgres(get_settings().data_dir)
    server = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    wait_for(f"{args.base_url}/healthz")
    print(await describe_machine(url))
    wrk_says = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout if shutil.which("wrk") else ""
    print(f"service {args.base_url} ({args.workers} worker process(es)); {versions()}")
    print(wrk_says.splitlines()[0] if wrk_says else "wrk missing")
    seed = Seed(url, volunteers=1000, residents=200)
    await seed.create()
    only = set(args.only or ["a", "b", "c", "d"])
    if "d" in only:
        await single_transition(args.base_url, seed, server, args.connections, args.duration, args.workers, args.rounds)
    if "a" in only:
        await lifecycles(args.base_url, seed, args.clients, args.duration)
    if "b" in only:
        await grab_storm(args.base_url, seed, grabbers=1000, pooled=100)
    if "c" in only:
        await reads(args.base_url, seed, args.clients, args.duration)


if __name__ == "__main__":
    asyncio.run(main())
