"""导出: streamed CSV of the caller's subtree — BOM, headers, rows, masking, formula injection, scope."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.services import exports
from tests.test_stats import PERIOD, seed_orders
from tests.world import World

EXPORTS = ("orders", "service-records", "volunteer-hours", "activities")


@pytest.fixture
async def seeded(world: World, sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    return await seed_orders(world, sessionmaker)


async def download(world: World, user: str, name: str, expect: int = 200, **params: Any) -> bytes:
    response = await world.client.get(f"/admin/exports/{name}.csv", params=PERIOD | params, headers=world.h(user))
    assert response.status_code == expect, response.text
    return response.content


def parse(content: bytes) -> list[list[str]]:
    assert content.startswith(b"\xef\xbb\xbf"), "UTF-8 BOM missing"
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))


@pytest.mark.usefixtures("seeded")
async def test_orders_csv_has_bom_header_and_the_subtrees_orders(world: World) -> None:
    response = await world.client.get("/admin/exports/orders.csv", params=PERIOD, headers=world.h("suo1_admin"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment;")
    rows = parse(response.content)
    assert rows[0][:3] == ["订单编号", "状态", "服务项目"] and len(rows[0]) == len(exports.ORDER_HEADER)
    # 所1's subtree in March–April, oldest first: A B F C D E G H (I is in 所2; J, K outside the period).
    assert [r[0] for r in rows[1:]] == ["T-A", "T-B", "T-F", "T-C", "T-D", "T-E", "T-G", "T-H"]
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["状态"] == "已评价" and first["服务类别"] == "理论宣讲" and first["所属单位"] == "测试zhan11"
    assert first["下单时间"] == "2025-03-01 06:00:00"  # Asia/Shanghai
    assert first["接单时间"] == "2025-03-01 07:00:00" and first["评价星级"] == "5"


@pytest.mark.usefixtures("seeded")
async def test_exports_mask_phones(world: World) -> None:
    for name in EXPORTS:
        content = (await download(world, "center_admin", name)).decode("utf-8-sig")
        assert "13812345678" not in content and "1370000" not in content
    rows = parse(await download(world, "center_admin", "orders"))
    assert {r[rows[0].index("联系电话")] for r in rows[1:]} == {"138****5678"}
    hours = parse(await download(world, "center_admin", "volunteer-hours"))
    assert all("****" in r[hours[0].index("手机号")] for r in hours[1:])


@pytest.mark.usefixtures("seeded")
async def test_formula_injection_is_neutralized(world: World) -> None:
    rows = parse(await download(world, "zhan11_admin", "orders"))
    e = next(dict(zip(rows[0], r, strict=True)) for r in rows[1:] if r[0] == "T-E")
    assert e["服务项目"] == '\'=HYPERLINK("http://evil.invalid")'
    assert e["联系人"] == "'@SUM(A1)"
    assert e["服务类别"] == "自定义需求"


@pytest.mark.parametrize(
    ("value", "safe"),
    [("=1+2", "'=1+2"), ("+86", "'+86"), ("-1", "'-1"), ("@x", "'@x"), ("\tx", "'\tx"), ("王=", "王="), ("", "")],
)
def test_safe_text(value: str, safe: str) -> None:
    assert exports.safe_text(value) == safe


@pytest.mark.usefixtures("seeded")
async def test_service_records_csv(world: World) -> None:
    rows = parse(await download(world, "center_admin", "service-records"))
    assert rows[0] == list(exports.RECORD_HEADER)
    by_code = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert list(by_code) == ["T-A", "T-B", "T-I", "T-C"]  # by the orders' placing time
    a = by_code["T-A"]
    assert (a["服务人次"], a["参与志愿者人数"], a["记录时长合计(小时)"]) == ("40", "2", "3.5")
    assert a["参与志愿者及时长"] == "志愿者v11a(2.0h)、志愿者v11b(1.5h)"
    assert a["提交时间"] == "2025-03-01 11:00:00"


@pytest.mark.usefixtures("seeded")
async def test_volunteer_hours_keep_credit_and_honor_apart(world: World) -> None:
    rows = parse(await download(world, "center_admin", "volunteer-hours"))
    assert rows[0] == list(exports.HOURS_HEADER)
    by_id = {int(r[0]): dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    v11a, v11b, v21 = (world.volunteers[v] for v in ("v11a", "v11b", "v21"))
    assert list(by_id) == sorted([v11a, v11b, v21])  # vsuo1's honor hours are in June
    a = by_id[v11a]
    assert (a["服务订单数"], a["服务时长(小时)"], a["时长更正(小时)"]) == ("2", "5.0", "0.5")
    assert (a["信用时长合计(小时)"], a["荣誉时长(小时)"]) == ("5.5", "10.0")
    assert (by_id[v11b]["信用时长合计(小时)"], by_id[v11b]["荣誉时长(小时)"]) == ("2.5", "0.0")
    assert (by_id[v21]["信用时长合计(小时)"], by_id[v21]["荣誉时长(小时)"]) == ("2.5", "4.0")
    assert by_id[v21]["所属单位"] == "测试zhan21"


@pytest.mark.usefixtures("seeded")
async def test_exports_stay_in_the_callers_subtree(world: World) -> None:
    orders = parse(await download(world, "zhan12_admin", "orders"))
    assert [r[0] for r in orders[1:]] == ["T-F", "T-G"]
    assert len(parse(await download(world, "zhan12_admin", "service-records"))) == 1  # header only
    assert len(parse(await download(world, "zhan12_admin", "volunteer-hours"))) == 1
    suo2 = parse(await download(world, "suo2_admin", "volunteer-hours"))
    assert [int(r[0]) for r in suo2[1:]] == [world.volunteers["v21"]]
    for name in EXPORTS:
        for unit in ("zhan11", "suo1", "center"):
            await download(world, "zhan12_admin", name, expect=404, unit_id=world.units[unit])


@pytest.mark.usefixtures("seeded")
async def test_a_unit_filter_narrows_the_export(world: World) -> None:
    rows = parse(await download(world, "center_admin", "orders", unit_id=world.units["zhan12"]))
    assert [r[0] for r in rows[1:]] == ["T-F", "T-G"]


@pytest.mark.usefixtures("seeded")
async def test_keyset_chunks_stream_every_row_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exports, "CHUNK_ROWS", 2)
    orders = parse(await download(world, "center_admin", "orders"))
    assert [r[0] for r in orders[1:]] == ["T-A", "T-B", "T-F", "T-I", "T-C", "T-D", "T-E", "T-G", "T-H"]
    records = parse(await download(world, "center_admin", "service-records"))
    assert [r[0] for r in records[1:]] == ["T-A", "T-B", "T-I", "T-C"]
    hours = parse(await download(world, "center_admin", "volunteer-hours"))
    assert len(hours) == 4


@pytest.mark.parametrize("user", ["r1", "v11a"])
@pytest.mark.parametrize("name", EXPORTS)
async def test_residents_and_volunteers_cannot_export(world: World, user: str, name: str) -> None:
    await download(world, user, name, expect=403)


@pytest.mark.parametrize("name", EXPORTS)
@pytest.mark.parametrize(
    "params",
    [{"from": "2025-05-01", "to": "2025-04-01"}, {"from": "nope"}, {"unit_id": "0"}, {"to": "2025-04-01T00:00"}],
)
async def test_bad_export_parameters_are_422(world: World, name: str, params: dict[str, str]) -> None:
    await download(world, "center_admin", name, expect=422, **params)


async def test_an_empty_export_is_just_the_header(world: World) -> None:
    rows = parse(await download(world, "center_admin", "orders"))
    assert rows == [list(exports.ORDER_HEADER)]
