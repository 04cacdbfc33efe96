"""Files an import must refuse cleanly, changing nothing: broken, too big, wrongly encoded, formulas."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.crypto import lookup_hash
from app.main import create_app
from app.models import Volunteer
from tests.sheets import (
    RESIDENT_HEADER,
    VOLUNTEER_HEADER,
    counts,
    csv_bytes,
    upload,
    volunteer_rows,
    xlsx,
)
from tests.world import World

Sessions = async_sessionmaker[AsyncSession]


async def refused(world: World, sessionmaker: Sessions, data: bytes, filename: str, kind: str = "volunteers") -> str:
    """Upload ``data`` (dry run and commit): both 422, nothing written; the message."""
    before = await counts(sessionmaker)
    messages = []
    for dry_run in (True, False):
        response = await upload(world.client, world.h("center_admin"), kind, data, filename, dry_run=dry_run)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_input" and error["details"]["errors"]
        messages.append(error["message"])
    assert await counts(sessionmaker) == before
    return str(messages[1])


async def test_broken_workbooks(world: World, sessionmaker: Sessions) -> None:
    good = xlsx([VOLUNTEER_HEADER, *volunteer_rows(20)])
    assert "XLSX" in await refused(world, sessionmaker, b"just some text, not a zip", "roster.xlsx")
    assert "XLSX" in await refused(world, sessionmaker, good[: len(good) // 2], "roster.xlsx")  # truncated
    assert "XLSX" in await refused(world, sessionmaker, good[:-30], "roster.xlsx")  # the directory cut off
    assert ".xls" in await refused(world, sessionmaker, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "old.xls")
    assert "为空" in await refused(world, sessionmaker, b"", "empty.csv")
    # A zip that is no workbook.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hi")
    assert "XLSX" in await refused(world, sessionmaker, buffer.getvalue(), "roster.xlsx")


async def test_a_zip_bomb_is_refused_before_it_is_parsed(world: World, sessionmaker: Sessions) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * 20_000_000)
    assert len(buffer.getvalue()) < 1_000_000
    assert "解压后过大" in await refused(world, sessionmaker, buffer.getvalue(), "bomb.xlsx")


async def test_encodings(world: World, sessionmaker: Sessions) -> None:
    rows: list[list[str]] = [RESIDENT_HEADER, ["张大爷", "13944440001", "zhan11"]]
    admin = world.h("center_admin")
    # Excel on Chinese Windows saves CSV as GBK; "CSV UTF-8" adds a BOM; others write plain UTF-8.
    for n, encoding in enumerate(("gbk", "gb18030", "utf-8-sig", "utf-8", "utf-16")):
        rows[1][1] = f"1394444000{n}"
        response = await upload(world.client, admin, "residents", csv_bytes(rows, encoding), "r.csv")
        assert response.status_code == 200, (encoding, response.text)
        assert response.json()["created"] == 1
    # Neither UTF-8 nor GB18030 (0xFF never starts a GB18030 character).
    assert "编码" in await refused(
        world, sessionmaker, b"\xff\xff\xfe" + "姓名".encode("utf-16-le"), "r.csv", "residents"
    )
    # Big5 decodes as GB18030 into nonsense: the header is not recognised, and the message says why.
    traditional = [["姓名", "手機號", "所屬單位編碼"], ["張大爺", "13944449999", "zhan11"]]
    message = await refused(world, sessionmaker, csv_bytes(traditional, "big5"), "r.csv", "residents")
    assert "缺少必填列" in message and "乱码" in message


async def test_formulas_are_refused_never_evaluated(world: World, sessionmaker: Sessions) -> None:
    rows: list[list[Any]] = [VOLUNTEER_HEADER, ["=1+1", "13855550001", "zhan11", "", "", ""]]
    rows.append(["正常", "=13855550000+2", "zhan11", "", "", ""])
    before = await counts(sessionmaker)
    response = await upload(world.client, world.h("center_admin"), "volunteers", xlsx(rows))
    assert response.status_code == 422
    errors = response.json()["error"]["details"]["errors"]
    assert [(e["row"], e["column"]) for e in errors] == [(2, "姓名"), (3, "手机号")]
    assert all("公式" in e["message"] for e in errors)
    as_csv = csv_bytes([VOLUNTEER_HEADER, ['=HYPERLINK("http://x","点我")', "13855550003", "zhan11", "", "", ""]])
    response = await upload(world.client, world.h("center_admin"), "volunteers", as_csv, "v.csv")
    assert response.status_code == 422
    assert "公式" in response.json()["error"]["details"]["errors"][0]["message"]
    assert await counts(sessionmaker) == before
    # Text that merely starts with + - @ is data (exports neutralise it): a name like "-小明-" is kept.
    fine = xlsx([VOLUNTEER_HEADER, ["-小明-", "13855550004", "zhan11", "", "", ""]])
    assert (await upload(world.client, world.h("center_admin"), "volunteers", fine)).status_code == 200
    async with sessionmaker() as session:
        stored = (
            await session.scalars(select(Volunteer).where(Volunteer.phone_hash == lookup_hash("13855550004")))
        ).one()
        assert stored.real_name == "-小明-"


async def test_missing_and_duplicate_columns(world: World, sessionmaker: Sessions) -> None:
    missing = xlsx([["姓名", "所属单位编码"], ["张三", "zhan11"]])
    message = await refused(world, sessionmaker, missing, "v.xlsx")
    assert "手机号" in message and "乱码" not in message
    twice = csv_bytes([["姓名", "手机号", "手机号", "所属单位编码"], ["张三", "13800000001", "13800000001", "zhan11"]])
    assert "重复" in await refused(world, sessionmaker, twice, "v.csv")
    # Marked headers (姓名*) and unknown extra columns are fine.
    marked = xlsx([["姓名*", "手机号（必填）", "所属单位编码*", "备注"], ["张三", "13866660001", "zhan11", "随便"]])
    assert (await upload(world.client, world.h("center_admin"), "volunteers", marked, dry_run=True)).json()[
        "created"
    ] == 1


async def test_blank_lines_are_skipped_and_rows_keep_excel_numbers(world: World) -> None:
    data = xlsx([VOLUNTEER_HEADER, ["张三", "13877770001", "zhan11"], [], [None, None], ["", "bad", "zhan11"]])
    response = await upload(world.client, world.h("center_admin"), "volunteers", data, dry_run=True)
    assert response.json()["rows"] == 2
    assert [(e["row"], e["column"]) for e in response.json()["errors"]] == [(5, "姓名"), (5, "手机号")]


@pytest.fixture
async def small_app(settings: Settings, database_url: str) -> AsyncIterator[FastAPI]:
    """The app with small import limits: 4 KiB per upload, 5 data rows."""
    limited = settings.model_copy(update={"import_max_bytes": 4096, "import_max_rows": 5})
    application = create_app(limited, database_url=database_url)
    async with application.router.lifespan_context(application):
        yield application


async def test_too_big_files(small_app: FastAPI, world: World, sessionmaker: Sessions) -> None:
    transport = httpx.ASGITransport(app=small_app)
    before = await counts(sessionmaker)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
        admin = world.h("center_admin")
        six = csv_bytes([VOLUNTEER_HEADER, *volunteer_rows(6)])
        response = await upload(client, admin, "volunteers", six, "v.csv")
        assert response.status_code == 422
        assert "5 行" in response.json()["error"]["message"]
        assert response.json()["error"]["details"]["max_rows"] == 5
        large = csv_bytes([VOLUNTEER_HEADER, *volunteer_rows(5)]) + b"\r\n" * 5000  # blank lines pad it
        response = await upload(client, admin, "volunteers", large, "v.csv")
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        five = csv_bytes([VOLUNTEER_HEADER, *volunteer_rows(5)])
        assert (await upload(client, admin, "volunteers", five, "v.csv", dry_run=True)).status_code == 200
    assert await counts(sessionmaker) == before


async def test_imports_have_their_own_size_limit(world: World) -> None:
    """Uploads may be larger than other request bodies (SIDAN_IMPORT_MAX_BYTES, default 10 MiB), and
    only on the import routes."""
    settings = world.settings
    assert settings.import_max_bytes > settings.max_body_bytes
    padding = b"\r\n" * (settings.max_body_bytes // 2 + 1000)
    data = csv_bytes([VOLUNTEER_HEADER, *volunteer_rows(1)]) + padding
    response = await upload(world.client, world.h("center_admin"), "volunteers", data, "v.csv", dry_run=True)
    assert response.status_code == 200, response.text
    elsewhere = await world.client.post("/admin/units", content=data, headers=world.h("center_admin"))
    assert elsewhere.status_code == 413


async def test_a_workbook_with_wrong_dimensions_is_read_to_the_end(world: World) -> None:
    """Some writers record the used range wrongly (``A1``); every row is read all the same."""
    good = xlsx([VOLUNTEER_HEADER, *volunteer_rows(3)])
    source, target = zipfile.ZipFile(io.BytesIO(good)), io.BytesIO()
    with zipfile.ZipFile(target, "w") as archive:
        for info in source.infolist():
            content = source.read(info)
            if info.filename.startswith("xl/worksheets/sheet"):
                content = re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1"', content)
                assert b'<dimension ref="A1"' in content
            archive.writestr(info, content)
    response = await upload(world.client, world.h("center_admin"), "volunteers", target.getvalue(), dry_run=True)
    assert response.json()["created"] == 3
