"""导出 (XLSX): beside every CSV export, the same columns, filters and rows, formulas neutralised."""

from __future__ import annotations

import io
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.services import exports
from tests.test_exports import EXPORTS, download, parse
from tests.test_stats import PERIOD, seed_orders
from tests.world import World

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
async def seeded(world: World, sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    return await seed_orders(world, sessionmaker)


async def download_xlsx(world: World, user: str, name: str, expect: int = 200, **params: Any) -> bytes:
    response = await world.client.get(f"/admin/exports/{name}.xlsx", params=PERIOD | params, headers=world.h(user))
    assert response.status_code == expect, response.text
    if expect == 200:
        assert response.headers["content-type"] == XLSX
        disposition = response.headers["content-disposition"]
        assert disposition.startswith("attachment;") and '.xlsx"' in disposition and disposition.endswith(".xlsx")
    return response.content


def as_text(content: bytes) -> list[list[str]]:
    """The first sheet's cells as the CSV writes them (numbers as their digits, empty as "")."""
    workbook = load_workbook(io.BytesIO(content), read_only=True)
    try:
        sheet = workbook.worksheets[0]
        return [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize("name", EXPORTS)
@pytest.mark.parametrize(("user", "unit"), [("center_admin", None), ("suo1_admin", None), ("center_admin", "zhan12")])
async def test_xlsx_has_the_csvs_rows(world: World, name: str, user: str, unit: str | None) -> None:
    params = {"unit_id": world.units[unit]} if unit else {}
    from_csv = parse(await download(world, user, name, **params))
    from_xlsx = as_text(await download_xlsx(world, user, name, **params))
    assert from_xlsx == from_csv
    assert len(from_csv) >= 1


@pytest.mark.usefixtures("seeded")
async def test_xlsx_cells_are_never_formulas(world: World) -> None:
    content = await download_xlsx(world, "zhan11_admin", "orders")
    sheet = load_workbook(io.BytesIO(content)).worksheets[0]  # not read-only: each cell's type
    header = [c.value for c in sheet[1]]
    assert header == list(exports.ORDER_HEADER)
    cells = [c for row in sheet.iter_rows() for c in row]
    assert all(c.data_type != "f" for c in cells)
    e = next(row for row in sheet.iter_rows(min_row=2) if row[0].value == "T-E")
    by_title = dict(zip(header, e, strict=True))
    assert by_title["服务项目"].value == '\'=HYPERLINK("http://evil.invalid")'
    assert by_title["服务项目"].data_type == "s"
    assert by_title["联系人"].value == "'@SUM(A1)"
    assert "13812345678" not in str([c.value for c in cells])  # phones masked as in the CSV


@pytest.mark.usefixtures("seeded")
async def test_xlsx_exports_keep_scope_and_roles(world: World) -> None:
    for name in EXPORTS:
        await download_xlsx(world, "zhan12_admin", name, expect=404, unit_id=world.units["zhan11"])
        await download_xlsx(world, "v11a", name, expect=403)
        await download_xlsx(world, "r1", name, expect=403)


async def test_an_empty_xlsx_export_is_just_the_header(world: World) -> None:
    rows = as_text(await download_xlsx(world, "center_admin", "orders"))
    assert rows == [list(exports.ORDER_HEADER)]
