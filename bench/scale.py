"""Province scale: statistics and order lists over N orders (default 1,000,000).

    python -m bench.scale [--orders 1000000] [--runs 7] [--database-url postgresql://…] [--keep]
    python -m bench.scale --measure-only postgresql://…/a_kept_database

Builds a province in a fresh database (1 省 → 5 市 → 30 县级中心 → 8 所 each → 8 站 each = 2,196
units, 96,000 volunteers, 38,400 residents) and N orders placed over 2023–2025 with their timelines,
service records, participants, ratings and hours, all with bulk ``INSERT … SELECT generate_series``
inside PostgreSQL (not the API). Then it times, through the real app over ASGI, the statistics of a
county and a city for 2025, the admin order list's first page and a deep keyset page, and a county's
orders.csv export. Prints the median of ``--runs`` runs after one warm-up; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

import asyncpg
import httpx
from sqlalchemy import make_url

from app.auth import issue_token
from app.config import Settings
from app.db import to_async_url
from app.main import create_app
from app.migrate import upgrade
from app.models import User
from app.services.pagination import encode_cursor
from bench.common import describe_machine, plain_dsn, scratch_database, server_url

CITIES, CENTERS_PER_CITY, INSTITUTES_PER_CENTER, STATIONS_PER_INSTITUTE = 5, 6, 8, 8
VOLUNTEERS_PER_STATION, RESIDENTS_PER_STATION = 50, 20
RESIDENT_USER_BASE, VOLUNTEER_USER_BASE = 10_000, 100_000
HONOR_ENTRIES = 50_000
BULK_TABLES = ("orders", "order_events", "service_records", "service_participants", "ratings", "hours_entries")
CATEGORIES = ("理论宣讲", "文化惠民", "科学普及", "法律服务", "爱心医疗", "助老助残", "环境保护", "文明交通")
PERIOD_START, PERIOD_YEARS = "2023-01-01 00:00:00+08", 3
YEAR = {"from": "2025-01-01", "to": "2025-12-31"}


def org_units() -> list[tuple[int, int | None, str, str, str, str, int]]:
    """(id, parent_id, level, name, code, path, depth), parents first."""
    rows: list[tuple[int, int | None, str, str, str, str, int]] = [(1, None, "province", "基准省", "P", "1.", 0)]
    next_id = 2

    def add(parent: tuple[Any, ...], level: str, name: str, code: str) -> tuple[Any, ...]:
        nonlocal next_id
        row = (next_id, parent[0], level, name, code, f"{parent[5]}{next_id}.", parent[6] + 1)
        rows.append(row)
        next_id += 1
        return row

    for c in range(CITIES):
        city = add(rows[0], "city", f"第{c + 1}市", f"P{c + 1}")
        for k in range(CENTERS_PER_CITY):
            center = add(city, "center", f"{city[3]}第{k + 1}县中心", f"{city[4]}-{k + 1}")
            for i in range(INSTITUTES_PER_CENTER):
                institute = add(center, "institute", f"{center[3]}第{i + 1}所", f"{center[4]}-{i + 1}")
                for s in range(STATIONS_PER_INSTITUTE):
                    add(institute, "station", f"{institute[3]}第{s + 1}站", f"{institute[4]}-{s + 1}")
    return rows


# Each statement runs once, in order, in one session (``setseed`` makes the data reproducible).
# :orders is the number of orders.
LOAD: list[tuple[str, str]] = [
    (
        "stations",
        """
        CREATE TEMP TABLE bench_station AS
        SELECT (row_number() OVER (ORDER BY s.id) - 1)::int AS idx, s.id AS station_id, s.path AS station_path,
               i.id AS institute_id, i.path AS institute_path, c.id AS center_id, c.path AS center_path,
               (dense_rank() OVER (ORDER BY c.id) - 1)::int AS center_no
        FROM org_units s JOIN org_units i ON i.id = s.parent_id JOIN org_units c ON c.id = i.parent_id
        WHERE s.level = 'station';
        CREATE UNIQUE INDEX ON bench_station (idx);
        ANALYZE bench_station;
        """,
    ),
    (
        "menu",
        """
        INSERT INTO menu_categories (id, name, code, sort_order)
        SELECT n, (ARRAY[{categories}])[n], 'cat' || n, n FROM generate_series(1, 8) n;
        INSERT INTO menu_items (id, unit_id, category_id, name)
        SELECT c.center_no * 8 + n, c.center_id, n, '服务项目' || n
        FROM (SELECT DISTINCT center_no, center_id FROM bench_station) c, generate_series(1, 8) n;
        """,
    ),
    (
        "users and volunteers",
        """
        INSERT INTO users (id, username, role, unit_id, display_name)
        SELECT id, 'admin-' || id, 'admin', id, '管理员' || id FROM org_units;
        INSERT INTO users (id, wechat_openid, role, unit_id, display_name, phone)
        SELECT {resident_base} + s.idx * {residents} + k, 'openid-' || s.idx || '-' || k, 'resident', s.station_id,
               '居民' || k, '139' || lpad((s.idx * {residents} + k)::text, 8, '0')
        FROM bench_station s, generate_series(0, {residents} - 1) k;
        INSERT INTO users (id, username, role, unit_id, display_name)
        SELECT {volunteer_base} + s.idx * {volunteers} + k, 'v-' || s.idx || '-' || k, 'volunteer', s.station_id,
               '志愿者' || k
        FROM bench_station s, generate_series(0, {volunteers} - 1) k;
        INSERT INTO volunteers (id, user_id, real_name, phone, home_unit_id)
        SELECT s.idx * {volunteers} + k + 1, {volunteer_base} + s.idx * {volunteers} + k, '志愿者' || s.idx || '-' || k,
               '137' || lpad((s.idx * {volunteers} + k)::text, 8, '0'), s.station_id
        FROM bench_station s, generate_series(0, {volunteers} - 1) k;
        """,
    ),
    (
        "orders",
        """
        INSERT INTO orders (id, code, resident_id, placed_by_id, item_id, category_id, title, unit_id, unit_path,
                            address, contact_name, contact_phone, beneficiaries, channel, status,
                            assignee_volunteer_id, deadline_at, accepted_at, checked_in_at, completed_at,
                            created_at, updated_at)
        WITH base AS MATERIALIZED (
            SELECT g, floor(random() * (SELECT count(*) FROM bench_station))::int AS idx,
                   random() AS r_status, random() AS r_owner, random() AS r_person, random() AS r_misc,
                   timestamptz '{start}' + random() * interval '{years} years' AS created,
                   interval '1 hour' * (0.1 - ln(1 - random()) * 6) AS to_accept,
                   interval '1 hour' * (1 + random() * 48) AS to_complete
            FROM generate_series(1, :orders) g
        ), shaped AS (
            SELECT b.*, s.station_id, s.station_path, s.institute_id, s.institute_path, s.center_id,
                   s.center_path, s.center_no,
                   CASE WHEN r_status < 0.04 THEN 'submitted' WHEN r_status < 0.07 THEN 'rejected'
                        WHEN r_status < 0.12 THEN 'cancelled' WHEN r_status < 0.14 THEN 'approved'
                        WHEN r_status < 0.15 THEN 'dispatched' WHEN r_status < 0.16 THEN 'pooled'
                        WHEN r_status < 0.17 THEN 'accepted' WHEN r_status < 0.18 THEN 'in_service'
                        WHEN r_status < 0.30 THEN 'completed' WHEN r_status < 0.40 THEN 'closed'
                        ELSE 'rated' END AS status,
                   floor(r_misc * 8)::int + 1 AS cat
            FROM base b JOIN bench_station s USING (idx)
        )
        SELECT g, 'BN' || lpad(g::text, 9, '0'),
               {resident_base} + idx * {residents} + floor(r_person * {residents})::int,
               CASE WHEN r_person < 0.1
                    THEN {volunteer_base} + idx * {volunteers} + floor(r_person * 10 * {volunteers})::int
                    ELSE {resident_base} + idx * {residents} + floor(r_person * {residents})::int END,
               CASE WHEN r_misc < 0.95 THEN center_no * 8 + cat END,
               CASE WHEN r_misc < 0.95 THEN cat END,
               CASE WHEN r_misc < 0.95 THEN '服务项目' || cat ELSE '自定义需求: 帮忙修理水管' END,
               CASE WHEN r_owner < 0.85 THEN station_id WHEN r_owner < 0.95 THEN institute_id ELSE center_id END,
               CASE WHEN r_owner < 0.85 THEN station_path WHEN r_owner < 0.95 THEN institute_path ELSE center_path END,
               '基准街道' || g || '号', '张三', '13' || lpad((g % 1000000000)::text, 9, '0'),
               1 + floor(r_misc * 5)::int,
               (ARRAY['miniprogram','kiosk','hotline','offline','app'])[1 + floor(r_owner * 5)::int],
               status,
               CASE WHEN status IN ('dispatched','accepted','in_service','completed','rated','closed')
                    THEN idx * {volunteers} + floor(r_person * {volunteers})::int + 1 END,
               CASE WHEN status IN ('submitted','approved','dispatched','pooled') THEN created + interval '1 day' END,
               CASE WHEN status IN ('accepted','in_service','completed','rated','closed') THEN created + to_accept END,
               CASE WHEN status IN ('in_service','completed','rated','closed') THEN created + to_accept END,
               CASE WHEN status IN ('completed','rated','closed') THEN created + to_accept + to_complete END,
               created,
               created + to_accept + to_complete
        FROM shaped;
        """,
    ),
    (
        "order events",
        """
        INSERT INTO order_events (order_id, action, from_status, to_status, actor_id, actor_role, created_at)
        SELECT id, 'place', NULL, 'submitted', placed_by_id, 'resident', created_at FROM orders
        UNION ALL
        SELECT id, 'escalate', 'submitted', 'submitted', NULL, 'system', created_at + interval '1 day'
        FROM orders WHERE id % 20 = 3 AND status <> 'rejected'
        UNION ALL
        SELECT id, 'reject', 'submitted', 'rejected', unit_id, 'admin', created_at + interval '2 hours'
        FROM orders WHERE status = 'rejected'
        UNION ALL
        SELECT id, 'approve', 'submitted', 'approved', unit_id, 'admin', created_at + interval '30 minutes'
        FROM orders WHERE status NOT IN ('submitted','rejected','cancelled') OR (status = 'cancelled' AND id % 2 = 0)
        UNION ALL
        SELECT id, 'cancel', CASE WHEN id % 2 = 0 THEN 'approved' ELSE 'submitted' END, 'cancelled', resident_id,
               'resident', created_at + interval '3 hours'
        FROM orders WHERE status = 'cancelled'
        UNION ALL
        SELECT id, CASE WHEN id % 3 = 0 OR status = 'dispatched' THEN 'dispatch' ELSE 'publish' END, 'approved',
               CASE WHEN id % 3 = 0 OR status = 'dispatched' THEN 'dispatched' ELSE 'pooled' END, unit_id, 'admin',
               created_at + interval '40 minutes'
        FROM orders WHERE status IN ('dispatched','pooled','accepted','in_service','completed','rated','closed')
        UNION ALL
        SELECT id, 'expire', 'pooled', 'approved', NULL, 'system', created_at + interval '50 minutes'
        FROM orders WHERE id % 25 = 7 AND status IN ('accepted','in_service','completed','rated','closed')
        UNION ALL
        SELECT id, CASE WHEN id % 3 = 0 THEN 'accept' ELSE 'grab' END,
               CASE WHEN id % 3 = 0 THEN 'dispatched' ELSE 'pooled' END, 'accepted', NULL, 'volunteer', accepted_at
        FROM orders WHERE accepted_at IS NOT NULL
        UNION ALL
        SELECT id, 'check_in', 'accepted', 'in_service', NULL, 'volunteer', checked_in_at
        FROM orders WHERE checked_in_at IS NOT NULL
        UNION ALL
        SELECT id, 'complete', 'in_service', 'completed', NULL, 'volunteer', completed_at
        FROM orders WHERE completed_at IS NOT NULL
        UNION ALL
        SELECT id, 'rate', 'completed', 'rated', resident_id, 'resident', completed_at + interval '1 day'
        FROM orders WHERE status = 'rated'
        UNION ALL
        SELECT id, 'auto_close', 'completed', 'closed', NULL, 'system', completed_at + interval '7 days'
        FROM orders WHERE status = 'closed';
        """,
    ),
    (
        "service records",
        """
        INSERT INTO service_records (id, order_id, round, summary, served_count, submitted_by_id, created_at)
        SELECT id, id, 1, '服务顺利完成', 1 + floor(random() * 60)::int,
               {volunteer_base} + assignee_volunteer_id - 1, completed_at
        FROM orders WHERE completed_at IS NOT NULL;
        INSERT INTO service_participants (record_id, volunteer_id, hours)
        SELECT o.id, ((o.assignee_volunteer_id - 1) / {volunteers}) * {volunteers}
                     + ((o.assignee_volunteer_id - 1) % {volunteers} + j * 7) % {volunteers} + 1,
               round((0.5 + random() * 6)::numeric * 2) / 2
        FROM orders o, generate_series(0, 2) j
        WHERE o.completed_at IS NOT NULL AND j <= o.id % 3;
        """,
    ),
    (
        "ratings",
        """
        INSERT INTO ratings (order_id, round, stars, rated_by_id, created_at)
        SELECT id, 1,
               CASE WHEN r < 0.6 THEN 5 WHEN r < 0.85 THEN 4 WHEN r < 0.93 THEN 3 WHEN r < 0.97 THEN 2 ELSE 1 END,
               resident_id, completed_at + interval '1 day'
        FROM (SELECT id, resident_id, completed_at, random() AS r FROM orders WHERE status = 'rated') rated;
        """,
    ),
    (
        "hours entries",
        """
        INSERT INTO hours_entries (volunteer_id, kind, hours, order_id, record_id, created_at)
        SELECT p.volunteer_id, 'service', p.hours, r.order_id, r.id, r.created_at
        FROM service_participants p JOIN service_records r ON r.id = p.record_id;
        INSERT INTO hours_entries (volunteer_id, kind, hours, order_id, record_id, reason, actor_id, created_at)
        SELECT p.volunteer_id, 'adjustment', 0.5, r.order_id, r.id, '补登准备时间', 1, r.created_at + interval '2 days'
        FROM service_participants p JOIN service_records r ON r.id = p.record_id
        WHERE r.id % 100 = 0;
        INSERT INTO hours_entries (volunteer_id, kind, hours, reason, actor_id, created_at)
        SELECT 1 + floor(random() * (SELECT count(*) FROM volunteers))::int, 'honor', 1 + floor(random() * 10),
               '年度表彰', 1, timestamptz '{start}' + random() * interval '{years} years'
        FROM generate_series(1, {honor}) g;
        """,
    ),
    (
        "sequences, vacuum, analyze",
        """
        SELECT setval(pg_get_serial_sequence('org_units', 'id'), (SELECT max(id) FROM org_units));
        SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users));
        SELECT setval(pg_get_serial_sequence('volunteers', 'id'), (SELECT max(id) FROM volunteers));
        SELECT setval(pg_get_serial_sequence('menu_categories', 'id'), 8);
        SELECT setval(pg_get_serial_sequence('menu_items', 'id'), (SELECT max(id) FROM menu_items));
        SELECT setval(pg_get_serial_sequence('orders', 'id'), (SELECT max(id) FROM orders));
        SELECT setval(pg_get_serial_sequence('service_records', 'id'), (SELECT max(id) FROM service_records));
        """,
    ),
]


def _sql(template: str, orders: int) -> str:
    return template.format(
        categories=", ".join(f"'{c}'" for c in CATEGORIES),
        resident_base=RESIDENT_USER_BASE,
        volunteer_base=VOLUNTEER_USER_BASE,
        residents=RESIDENTS_PER_STATION,
        volunteers=VOLUNTEERS_PER_STATION,
        start=PERIOD_START,
        years=PERIOD_YEARS,
        honor=HONOR_ENTRIES,
    ).replace(":orders", str(int(orders)))


async def load(url: str, orders: int) -> None:
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        await connection.execute("SET synchronous_commit = off; SET maintenance_work_mem = '512MB'")
        try:  # the data is consistent by construction: skip per-row foreign-key triggers when allowed
            await connection.execute("SET session_replication_role = replica")
        except asyncpg.InsufficientPrivilegeError:
            print("  (not a superuser: foreign keys checked row by row)")
        await connection.execute("SELECT setseed(0.42)")
        await connection.executemany(
            "INSERT INTO org_units (id, parent_id, level, name, code, path, depth) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            org_units(),
        )
        # Building secondary indexes once after the load is several times faster than keeping them up
        # to date row by row; primary keys and unique constraints stay.
        secondary = await connection.fetch(
            "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS ddl "
            "FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE t.relname = ANY($1::text[]) AND NOT i.indisprimary "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
            list(BULK_TABLES),
        )
        for index in secondary:
            await connection.execute(f"DROP INDEX {index['name']}")
        for name, template in LOAD:
            started = time.perf_counter()
            await connection.execute(_sql(template, orders))
            print(f"  loaded {name:<28} {time.perf_counter() - started:7.1f} s", flush=True)
        started = time.perf_counter()
        for index in secondary:
            await connection.execute(index["ddl"])
        print(f"  {f'rebuilt {len(secondary)} indexes':<35} {time.perf_counter() - started:7.1f} s", flush=True)
        started = time.perf_counter()
        await connection.execute("VACUUM (ANALYZE)")
        print(f"  {'vacuum analyze':<35} {time.perf_counter() - started:7.1f} s", flush=True)
        counts = await connection.fetch(
            "SELECT 'orders' t, count(*) FROM orders UNION ALL SELECT 'order_events', count(*) FROM order_events "
            "UNION ALL SELECT 'service_records', count(*) FROM service_records "
            "UNION ALL SELECT 'service_participants', count(*) FROM service_participants "
            "UNION ALL SELECT 'ratings', count(*) FROM ratings "
            "UNION ALL SELECT 'hours_entries', count(*) FROM hours_entries"
        )
        print("  rows: " + ", ".join(f"{r[0]} {r[1]:,}" for r in counts))
        size = await connection.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
        print(f"  database size: {size}")
    finally:
        await connection.close()


async def timed(call: Callable[[], Awaitable[httpx.Response]], runs: int) -> tuple[float, httpx.Response]:
    """Median wall time in ms of ``runs`` calls after one warm-up, and the last response."""
    response = await call()
    response.raise_for_status()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = await call()
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return statistics.median(times), response


async def measure(url: str, runs: int, only: str | None = None) -> None:
    connection = await asyncpg.connect(plain_dsn(url))
    county = await connection.fetchrow(
        "SELECT u.id, u.path, count(o.id) AS n FROM org_units u JOIN orders o ON o.unit_path LIKE u.path || '%' "
        "WHERE u.level = 'center' GROUP BY u.id, u.path ORDER BY u.id LIMIT 1"
    )
    city = await connection.fetchrow("SELECT id, path FROM org_units WHERE level = 'city' ORDER BY id LIMIT 1")
    station = await connection.fetchrow(
        "SELECT id FROM org_units WHERE level = 'station' AND path LIKE $1 ORDER BY id LIMIT 1", county["path"] + "%"
    )
    depth = min(10_000, county["n"] // 2)
    deep = await connection.fetchrow(
        "SELECT created_at, id FROM orders WHERE unit_path LIKE $1 ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1",
        county["path"] + "%",
        depth,
    )
    await connection.close()
    settings = Settings(environment="test", run_worker=False, db_pool_size=4, db_statement_timeout_ms=120_000)
    app = create_app(settings, database_url=url)

    def token(unit_id: int) -> dict[str, str]:
        user = User(id=unit_id, role="admin", token_version=0)  # bench admins have id = unit id
        return {"Authorization": f"Bearer {issue_token(settings, user)}"}

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench/api/v1", timeout=300) as client:

            def get(path: str, unit_id: int, **params: Any) -> Callable[[], Awaitable[httpx.Response]]:
                return lambda: client.get(path, params=params, headers=token(unit_id))

            def page(path: str, unit_id: int, **params: Any) -> Callable[[], Awaitable[httpx.Response]]:
                """A staff console page (its session cookie holds the same token)."""
                cookie = {"sidan_console": token(unit_id)["Authorization"].removeprefix("Bearer ")}
                return lambda: client.get(f"http://bench/console{path}", params=params, cookies=cookie)

            cases: list[tuple[str, Callable[[], Awaitable[httpx.Response]]]] = [
                ("stats  county 2025", get("/admin/stats", county["id"], **YEAR)),
                ("stats  county 2025 group_by=unit", get("/admin/stats", county["id"], group_by="unit", **YEAR)),
                (
                    "stats  county 2025 group_by=category",
                    get("/admin/stats", county["id"], group_by="category", **YEAR),
                ),
                ("stats  county 2025 group_by=month", get("/admin/stats", county["id"], group_by="month", **YEAR)),
                ("stats  city 2025", get("/admin/stats", city["id"], **YEAR)),
                ("stats  city 2025 group_by=unit", get("/admin/stats", city["id"], group_by="unit", **YEAR)),
                ("stats  province 2025", get("/admin/stats", 1, **YEAR)),
                ("orders county, first page", get("/admin/orders", county["id"])),
                (
                    f"orders county, keyset page after {depth:,}",
                    get("/admin/orders", county["id"], cursor=encode_cursor(deep["created_at"], deep["id"])),
                ),
                ("orders city, first page", get("/admin/orders", city["id"])),
                ("orders station, first page", get("/admin/orders", station["id"])),
                ("orders province, first page", get("/admin/orders", 1)),
                ("export county orders.csv 2025", get("/admin/exports/orders.csv", county["id"], **YEAR)),
                ("unmet  county 2025", get("/admin/stats/unmet", county["id"], **YEAR)),
                ("unmet  city 2025", get("/admin/stats/unmet", city["id"], **YEAR)),
                ("console county desk", page("/", county["id"])),
                ("console county board, first page", page("/orders", county["id"], status="all")),
                ("console county stats page 2025", page("/stats", county["id"], **YEAR)),
                ("console county unmet page 2025", page("/unmet", county["id"], **YEAR)),
            ]
            print(
                f"county {county['id']} holds {county['n']:,} orders (all years); "
                f"median of {runs} runs after a warm-up, through the app over ASGI "
                f"(load average {os.getloadavg()[0]:.1f}):"
            )
            for name, call in cases:
                if only and only not in name:
                    continue
                ms, response = await timed(call, runs)
                print(f"  {name:<42} {ms:9.1f} ms   {_describe(response)}", flush=True)


def _describe(response: httpx.Response) -> str:
    if response.headers.get("content-type", "").startswith("text/html"):
        return f"HTML {response.status_code}, {len(response.content) / 1e3:.0f} kB"
    if response.headers.get("content-type", "").startswith("text/csv"):
        return f"{response.text.count(chr(10)) - 1:,} rows, {len(response.content) / 1e6:.1f} MB"
    body = response.json()
    if "overall" in body:
        o = body["overall"]
        return (
            f"placed {o['placed']:,}, completed {o['completed']:,}, median accept "
            f"{(o['time_to_accept']['median_seconds'] or 0) / 3600:.1f} h, groups {len(body['groups'])}"
        )
    if "cells" in body:
        return f"placed {body['placed']:,}, unmet {body['unmet']:,}, cells {len(body['cells'])}"
    return f"{len(body['items'])} items"


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--database-url", help="a server to create the scratch database on")
    parser.add_argument("--keep", action="store_true", help="keep the loaded database (its URL is printed)")
    parser.add_argument("--measure-only", metavar="URL", help="time an already loaded (kept) database")
    parser.add_argument("--only", metavar="TEXT", help="time only the cases whose name contains TEXT")
    args = parser.parse_args()
    if args.measure_only:
        url = to_async_url(args.measure_only)
        print(await describe_machine(url))
        await measure(url, args.runs, args.only)
        return
    async with AsyncExitStack() as stack:
        server = server_url(args.database_url)
        if args.keep:
            url = await kept_database(server)
        else:
            url = await stack.enter_async_context(scratch_database(server, "sidan_bench_scale"))
        print(await describe_machine(url))
        print(f"loading {args.orders:,} orders ({datetime.now():%H:%M:%S})")
        started = time.perf_counter()
        await load(url, args.orders)
        print(f"  load total {time.perf_counter() - started:.0f} s")
        await measure(url, args.runs, args.only)
        if args.keep:
            print(f"kept: {url}")


async def kept_database(server: str) -> str:
    """Like ``scratch_database`` but left in place for ``--measure-only`` runs."""
    name = f"sidan_bench_scale_kept_{int(time.time())}"
    admin = await asyncpg.connect(plain_dsn(server))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade, url)
    return url


if __name__ == "__main__":
    asyncio.run(main())
