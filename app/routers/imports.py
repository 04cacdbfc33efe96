"""管理后台 · 导入: rosters of units, volunteers and residents from XLSX or CSV, and their templates.

``POST /admin/imports/units|volunteers|residents`` takes a multipart upload (field ``file``). With
``dry_run=true`` (试导入) it answers what a commit would do and every row error, writing nothing;
without, it writes every row or, if any row has an error, nothing (422 with the same row errors).
Uploading the same file again changes nothing. Rules: ``app.services.importing``, one module per kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import APIRouter, File, Query, Response, UploadFile
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor, CurrentAdmin
from app.config import Settings
from app.db import Session
from app.routers.deps import SettingsDep, errors
from app.schemas.imports import ImportOut, ImportRowError
from app.services import import_residents, import_units, import_volunteers, importing
from app.services.import_templates import template_csv, template_xlsx
from app.services.importing import KIND_TITLES, MAX_REPORTED_ERRORS, ImportKind, Plan
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


FileField = Annotated[UploadFile, File(description="XLSX, or CSV in UTF-8 (BOM optional) or GB18030/GBK")]
DryRun = Annotated[bool, Query(description="试导入: check every row and count, write nothing")]


async def _import(
    kind: ImportKind, file: UploadFile, session: AsyncSession, actor: Actor, settings: Settings, dry_run: bool
) -> ImportOut:
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
        error_count=len(outcome.errors),
        errors=[
            ImportRowError(row=e.row, column=e.column, message=e.message) for e in outcome.errors[:MAX_REPORTED_ERRORS]
        ],
    )


IMPORT_RESPONSES = errors(401, 403, 409, 413, 422)


@router.post("/units", response_model=ImportOut, responses=IMPORT_RESPONSES)
async def import_units_roster(
    file: FileField, session: Session, actor: CurrentAdmin, settings: SettingsDep, dry_run: DryRun = False
) -> ImportOut:
    """导入单位: units of the caller's subtree by code (新建 or 更新名称和地址); all rows or none."""
    return await _import(ImportKind.UNITS, file, session, actor, settings, dry_run)


@router.post("/volunteers", response_model=ImportOut, responses=IMPORT_RESPONSES)
async def import_volunteers_roster(
    file: FileField, session: Session, actor: CurrentAdmin, settings: SettingsDep, dry_run: DryRun = False
) -> ImportOut:
    """导入志愿者 with skills and teams, found by phone, homed in the caller's subtree; all rows or none."""
    return await _import(ImportKind.VOLUNTEERS, file, session, actor, settings, dry_run)


@router.post("/residents", response_model=ImportOut, responses=IMPORT_RESPONSES)
async def import_residents_roster(
    file: FileField, session: Session, actor: CurrentAdmin, settings: SettingsDep, dry_run: DryRun = False
) -> ImportOut:
    """导入群众, found by phone, homed in the caller's subtree; all rows or none."""
    return await _import(ImportKind.RESIDENTS, file, session, actor, settings, dry_run)


def _attachment(kind: ImportKind, extension: str) -> dict[str, str]:
    ascii_name = f"sidan-import-{kind.value}.{extension}"
    utf8_name = f"{KIND_TITLES[kind]}导入模板.{extension}"
    return {"Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(utf8_name)}"}


def _template_routes(kind: ImportKind) -> None:
    """``GET /admin/imports/{kind}/template.xlsx`` and ``.csv``: one pair of operations per kind."""
    columns, _ = KINDS[kind]
    title = KIND_TITLES[kind]

    async def xlsx_template(actor: CurrentAdmin) -> Response:
        body = await asyncio.to_thread(template_xlsx, kind, columns)
        return Response(body, media_type=XLSX_MEDIA_TYPE, headers=_attachment(kind, "xlsx"))

    async def csv_template(actor: CurrentAdmin) -> Response:
        return Response(template_csv(columns), media_type=CSV_MEDIA_TYPE, headers=_attachment(kind, "csv"))

    for extension, endpoint, responses, what in (
        ("xlsx", xlsx_template, XLSX_RESPONSES, "the header row, an example row and a 填写说明 sheet"),
        ("csv", csv_template, CSV_RESPONSES, "UTF-8 with BOM: the header row and an example row"),
    ):
        router.add_api_route(
            f"/{kind.value}/template.{extension}",
            endpoint,
            methods=["GET"],
            name=f"import_{kind.value}_template_{extension}",
            response_class=Response,
            responses=responses,
            summary=f"{title}导入模板 ({extension.upper()})",
            description=f"{title}导入模板: {what}.",
        )


for _kind in ImportKind:
    _template_routes(_kind)
