"""管理后台 · 导入: rosters of units, volunteers and residents from XLSX or CSV, and their templates.

``POST /admin/imports/{kind}`` takes a multipart upload (field ``file``). With ``dry_run=true`` (试导入)
it answers what a commit would do and every row error, writing nothing; without, it writes every row
or, if any row has an error, nothing (422 with the same row errors). Uploading the same file again
changes nothing. Rules: ``app.services.importing`` and one module per kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import APIRouter, File, Query, Response, UploadFile

from app.auth import CurrentAdmin
from app.db import Session
from app.routers.deps import SettingsDep, errors
from app.schemas.imports import ImportOut, ImportRowError
from app.services import import_residents, import_units, import_volunteers, importing
from app.services.import_templates import template_csv, template_xlsx
from app.services.importing import KIND_TITLES, ImportKind, Plan
from app.services.tabular import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE, Column, read_table

router = APIRouter(prefix="/admin/imports", tags=["admin: imports"])

KINDS: Final[dict[ImportKind, tuple[Sequence[Column], Plan]]] = {
    ImportKind.UNITS: (import_units.COLUMNS, import_units.plan),
    ImportKind.VOLUNTEERS: (import_volunteers.COLUMNS, import_volunteers.plan),
    ImportKind.RESIDENTS: (import_residents.COLUMNS, import_residents.plan),
}
XLSX_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
    **errors(401, 403, 422),
}
CSV_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}}},
    **errors(401, 403, 422),
}


@router.post("/{kind}", response_model=ImportOut, responses=errors(401, 403, 409, 413, 422))
async def import_roster(
    kind: ImportKind,
    file: Annotated[UploadFile, File(description="XLSX, or CSV in UTF-8 (BOM optional) or GB18030/GBK")],
    session: Session,
    actor: CurrentAdmin,
    settings: SettingsDep,
    dry_run: Annotated[bool, Query(description="试导入: check every row and count, write nothing")] = False,
) -> ImportOut:
    """导入 units (单位), volunteers (志愿者, with teams and skills) or residents (群众) into the caller's
    subtree, upserting by unit code or phone; all rows or none."""
    columns, plan = KINDS[kind]
    data = await file.read()
    if session.in_transaction():
        await session.commit()  # the caller is known: no connection held while the file is parsed
    table = await asyncio.to_thread(read_table, data, file.filename or "", columns, settings.import_max_rows)
    outcome = await importing.run_import(session, actor, kind, table, plan, dry_run=dry_run)
    return ImportOut(
        kind=kind.value,
        dry_run=dry_run,
        rows=outcome.rows,
        created=outcome.created,
        updated=outcome.updated,
        unchanged=outcome.unchanged,
        errors=[ImportRowError(row=e.row, column=e.column, message=e.message) for e in outcome.errors],
    )


def _attachment(kind: ImportKind, extension: str) -> dict[str, str]:
    ascii_name = f"sidan-import-{kind.value}.{extension}"
    utf8_name = f"{KIND_TITLES[kind]}导入模板.{extension}"
    return {"Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(utf8_name)}"}


@router.get("/{kind}/template.xlsx", response_class=Response, responses=XLSX_RESPONSES)
async def import_template_xlsx(kind: ImportKind, actor: CurrentAdmin) -> Response:
    """导入模板 (XLSX): the header row, an example row and a 填写说明 sheet."""
    columns, _ = KINDS[kind]
    body = await asyncio.to_thread(template_xlsx, kind, columns)
    return Response(body, media_type=XLSX_MEDIA_TYPE, headers=_attachment(kind, "xlsx"))


@router.get("/{kind}/template.csv", response_class=Response, responses=CSV_RESPONSES)
async def import_template_csv(kind: ImportKind, actor: CurrentAdmin) -> Response:
    """导入模板 (CSV, UTF-8 with BOM): the header row and an example row."""
    columns, _ = KINDS[kind]
    return Response(template_csv(columns), media_type=CSV_MEDIA_TYPE, headers=_attachment(kind, "csv"))
