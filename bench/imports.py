"""Roster import speed: a volunteer XLSX of N rows through the HTTP API (upload, parse, check, write).

    python -m bench.imports [--rows 1000 10000] [--database-url postgresql://…]

For each size, on a fresh database with one 中心, one 站, an admin and a team: time the dry run, the
commit, and the re-upload of the same file (every row found and unchanged). Prints numbers; asserts
only what each answer says it did.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import time

import httpx
from openpyxl import Workbook
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import issue_token
from app.config import Settings
from app.main import create_app
from app.models import OrgUnit, Team, User
from bench.common import describe_machine, scratch_database, server_url

HEADER = ["姓名", "手机号", "所属单位编码", "技能", "服务队", "用户名"]


def volunteer_xlsx(rows: int) -> bytes:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("志愿者导入")
    sheet.append(HEADER)
    for i in range(rows):
        sheet.append([f"志愿者{i}", f"139{i:08d}", "B-1", "讲解、急救", "基准服务队", f"bench{i}"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


async def seed(app_settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with sessionmaker() as session, session.begin():
        center = OrgUnit(level="center", name="基准中心", code="B", path="x")
        session.add(center)
        await session.flush()
        center.path = f"{center.id}."
        station = OrgUnit(parent_id=center.id, level="station", name="基准站", code="B-1", path="x", depth=1)
        session.add(station)
        await session.flush()
        station.path = f"{center.path}{station.id}."
        admin = User(username="bench-admin", role="admin", unit_id=center.id)
        session.add_all([admin, Team(unit_id=station.id, name="基准服务队")])
        await session.flush()
        return issue_token(app_settings, admin)


async def run_size(server: str, rows: int) -> None:
    data = volunteer_xlsx(rows)
    async with scratch_database(server, "sidan_bench_imports") as url:
        settings = Settings(run_worker=False, db_pool_size=4, import_max_rows=max(rows, 20_000))
        app = create_app(settings, database_url=url)
        async with app.router.lifespan_context(app):
            token = await seed(settings, app.state.sessionmaker)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench/api/v1", timeout=600) as client:
                headers = {"Authorization": f"Bearer {token}"}
                files = {"file": ("volunteers.xlsx", data)}
                timings = []
                for label, params, key in (
                    ("dry run", {"dry_run": "true"}, "created"),
                    ("commit", {}, "created"),
                    ("re-upload", {}, "unchanged"),
                ):
                    started = time.perf_counter()
                    url = "/admin/imports/volunteers"
                    response = await client.post(url, params=params, files=files, headers=headers)
                    elapsed = time.perf_counter() - started
                    assert response.status_code == 200, response.text[:500]
                    assert response.json()[key] == rows, response.json()
                    timings.append(f"{label} {elapsed:6.2f} s")
        print(f"{rows:>6} rows ({len(data) / 1024:,.0f} KiB): " + " | ".join(timings), flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--database-url")
    args = parser.parse_args()
    server = server_url(args.database_url)
    async with scratch_database(server, "sidan_bench_imports_probe") as url:
        print(await describe_machine(url))
    for rows in args.rows:
        await run_size(server, rows)


if __name__ == "__main__":
    asyncio.run(main())
