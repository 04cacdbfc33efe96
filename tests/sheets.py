"""Spreadsheet files for import tests, built the way Excel and WPS write them."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import httpx
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.crypto import lookup_hash
from app.models import OrgUnit, TeamMember, User, Volunteer

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

VOLUNTEER_HEADER = ["姓名", "手机号", "所属单位编码", "技能", "服务队", "用户名"]
RESIDENT_HEADER = ["姓名", "手机号", "所属单位编码"]
UNIT_HEADER = ["单位编码", "单位名称", "层级", "上级单位编码", "地址"]


def xlsx(rows: Sequence[Sequence[Any]]) -> bytes:
    """An ordinary workbook (not write-only: cells typed as Excel types them, formulas as formulas)."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(list(row))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def csv_bytes(rows: Sequence[Sequence[Any]], encoding: str = "utf-8-sig") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode(encoding)


def read_xlsx(data: bytes) -> dict[str, list[list[Any]]]:
    workbook = load_workbook(io.BytesIO(data), read_only=True)
    try:
        return {ws.title: [list(r) for r in ws.iter_rows(values_only=True)] for ws in workbook.worksheets}
    finally:
        workbook.close()


def volunteer_rows(n: int, unit: str = "zhan11", start: int = 0, **extra: str) -> list[list[str]]:
    return [
        [f"志愿者{i}", f"1860000{i:04d}", unit, extra.get("skills", "讲解、急救"), extra.get("teams", ""), ""]
        for i in range(start, start + n)
    ]


async def upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    kind: str,
    data: bytes,
    filename: str = "roster.xlsx",
    *,
    dry_run: bool = False,
) -> httpx.Response:
    media = XLSX if filename.endswith(".xlsx") else "text/csv"
    return await client.post(
        f"/admin/imports/{kind}",
        params={"dry_run": "true"} if dry_run else {},
        files={"file": (filename, data, media)},
        headers=headers,
    )


async def volunteer_by_phone(session: AsyncSession, phone: str) -> Volunteer:
    return (await session.scalars(select(Volunteer).where(Volunteer.phone_hash == lookup_hash(phone)))).one()


async def counts(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Row counts of every table an import writes: a refused import leaves them as they were."""
    async with sessionmaker() as session:
        return {
            model.__tablename__: int(await session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (OrgUnit, User, Volunteer, TeamMember)
        }
