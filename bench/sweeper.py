"""Sweeper throughput: due transitions fired per second over N due orders, with 1 and 3 sweepers.

    python -m bench.sweeper [--orders 10000] [--database-url postgresql://…]

Each round loads N pooled orders whose pool deadline has passed, then times the sweepers until all
have expired (each expiry is a full transition: lock, event, outbox, policy lookup). Prints numbers;
asserts only that every order fired exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select, text

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.models import Order, OrderEvent, OrgUnit, User
from app.services.sweeper import sweep
from bench.common import describe_machine, scratch_database, server_url


async def load_due_orders(url: str, n: int) -> None:
    engine = create_engine(url, Settings(db_pool_size=2))
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session, session.begin():
        await session.execute(text("TRUNCATE orders, order_events, outbox_messages, org_units, users CASCADE"))
        center = OrgUnit(level="center", name="基准中心", code="B", path="x")
        session.add(center)
        await session.flush()
        center.path = f"{center.id}."
        station = OrgUnit(parent_id=center.id, level="station", name="基准站", code="B-1", path="x", depth=1)
        session.add(station)
        await session.flush()
        station.path = f"{center.path}{station.id}."
        resident = User(username="bench-resident", role="resident", unit_id=station.id)
        session.add(resident)
        await session.flush()
        past = datetime.now(UTC) - timedelta(hours=1)
        rows = [
            {"code": f"SDB{i:09d}", "resident_id": resident.id, "placed_by_id": resident.id, "title": "基准订单",
             "unit_id": station.id, "unit_path": station.path, "address": "基准地址", "contact_name": "张三",
             "contact_phone": "13800000000", "channel": "app", "status": "pooled", "deadline_at": past}
            for i in range(n)
        ]  # fmt: skip
        for start in range(0, n, 5000):
            await session.execute(insert(Order), rows[start : start + 5000])
    await engine.dispose()


async def run_round(url: str, n: int, sweepers: int) -> float:
    await load_due_orders(url, n)
    engine = create_engine(url, Settings(db_pool_size=sweepers + 1))
    sessionmaker = create_sessionmaker(engine)
    started = time.perf_counter()
    fired = await asyncio.gather(*(sweep(sessionmaker, batch=200) for _ in range(sweepers)))
    elapsed = time.perf_counter() - started
    async with sessionmaker() as session:
        expiries = await session.scalar(select(func.count()).where(OrderEvent.action == "expire"))
    await engine.dispose()
    if sum(fired) != n or expiries != n:
        raise SystemExit(f"expected {n} expiries, fired {fired}, events {expiries}")
    return n / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    async with scratch_database(server_url(args.database_url), "sidan_bench_sweeper") as url:
        print(await describe_machine(url))
        print(f"sweeper: {args.orders} due orders per round, {args.rounds} rounds, median reported")
        for sweepers in (1, 3):
            rates = [await run_round(url, args.orders, sweepers) for _ in range(args.rounds)]
            print(
                f"  {sweepers} sweeper(s): median {statistics.median(rates):8.0f} transitions/s  "
                f"(rounds: {', '.join(f'{r:.0f}' for r in rates)})"
            )


if __name__ == "__main__":
    asyncio.run(main())
