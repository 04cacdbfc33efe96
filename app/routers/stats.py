"""管理后台 · 统计与导出: figures for annual reports and 考核, and CSV / XLSX exports of the caller's subtree.

Periods: ``from`` / ``to`` are dates (Asia/Shanghai; ``to`` includes that day) or timestamps with a
time zone; ``to`` defaults to now and ``from`` to a year before it; at most five years.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import CurrentAdmin
from app.db import ReportSession
from app.routers.deps import errors
from app.schemas.common import Id, PeriodBound
from app.schemas.stats import GroupBy, StatsOut
from app.services import exports, exports_xlsx, stats
from app.services.tabular import XLSX_MEDIA_TYPE

router = APIRouter(prefix="/admin", tags=["admin_stats"])

UnitQuery = Annotated[Id | None, Query(description="this unit and everything under it; default: the caller's unit")]
FromQuery = Annotated[
    PeriodBound | None,
    Query(alias="from", description="2025-01-01 or 2025-01-01T00:00:00+08:00 (inclusive)"),
]
ToQuery = Annotated[
    PeriodBound | None,
    Query(alias="to", description="a date (that whole day included) or a timestamp (exclusive)"),
]
CSV_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
        "description": "UTF-8 CSV with BOM, streamed",
    },
    **errors(401, 403, 404, 422),
}
XLSX_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        "description": "the CSV's rows as an XLSX workbook (written in streaming mode)",
    },
    **errors(401, 403, 404, 422),
}


@router.get("/stats", response_model=StatsOut, responses=errors(401, 403, 404, 422))
async def center_stats(
    session: ReportSession,
    actor: CurrentAdmin,
    unit_id: UnitQuery = None,
    period_from: FromQuery = None,
    period_to: ToQuery = None,
    group_by: Annotated[GroupBy | None, Query(description="unit: direct children; category; month")] = None,
) -> StatsOut:
    """统计: orders, review, response times, service, hours, volunteers, satisfaction, escalations."""
    period = requested_period(period_from, period_to)
    return await stats.center_stats(session, actor, unit_id=unit_id, period=period, group_by=group_by)


def requested_period(period_from: date | datetime | None, period_to: date | datetime | None) -> stats.Period:
    """The period ``from`` / ``to`` ask for (``stats.resolve_period``: defaults, order, length)."""
    # ``resolve_period`` reads the bounds' ISO form; they are in the calendar ``PeriodBound`` allows, so
    # its arithmetic (a day added, the conversion to UTC) stays in range.
    return stats.resolve_period(
        period_from.isoformat() if period_from else None, period_to.isoformat() if period_to else None
    )


def _sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = request.app.state.report_sessionmaker
    return maker


async def _export(
    request: Request,
    session: AsyncSession,
    actor: CurrentAdmin,
    kind: exports.ExportKind,
    unit_id: int | None,
    period_from: date | datetime | None,
    period_to: date | datetime | None,
    *,
    xlsx: bool = False,
) -> StreamingResponse:
    period = requested_period(period_from, period_to)
    plan = await exports.plan_export(session, actor, kind, unit_id=unit_id, period=period)
    if xlsx:
        spool = await exports_xlsx.build_xlsx(_sessionmaker(request), plan)
        return StreamingResponse(
            exports_xlsx.stream_file(spool),
            media_type=XLSX_MEDIA_TYPE,
            headers={"Content-Disposition": exports.content_disposition(plan, "xlsx")},
        )
    return StreamingResponse(
        exports.stream_csv(_sessionmaker(request), plan),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": exports.content_disposition(plan)},
    )


# One CSV and one XLSX download per kind, both from the same rows (``exports.export_chunks``).
EXPORT_DESCRIPTIONS: Final[dict[exports.ExportKind, str]] = {
    exports.ExportKind.ORDERS: "订单导出: orders placed in the period, contact phones masked.",
    exports.ExportKind.SERVICE_RECORDS: (
        "服务记录导出: the service records of orders placed in the period, with participants and hours."
    ),
    exports.ExportKind.VOLUNTEER_HOURS: "志愿时长导出: per volunteer, 信用时长 and 荣誉时长 kept apart.",
    exports.ExportKind.ACTIVITIES: (
        "活动导出: one row per sign-up of the subtree's activities with a slot starting in the period, with"
        " check-in/check-out proofs and hours (未核验 marked)."
    ),
}


def _export_endpoint(kind: exports.ExportKind, xlsx: bool) -> Callable[..., Awaitable[StreamingResponse]]:
    async def endpoint(
        request: Request,
        session: ReportSession,
        actor: CurrentAdmin,
        unit_id: UnitQuery = None,
        period_from: FromQuery = None,
        period_to: ToQuery = None,
    ) -> StreamingResponse:
        return await _export(request, session, actor, kind, unit_id, period_from, period_to, xlsx=xlsx)

    endpoint.__name__ = f"export_{kind.value.replace('-', '_')}" + ("_xlsx" if xlsx else "")
    endpoint.__doc__ = EXPORT_DESCRIPTIONS[kind] + (" XLSX: the CSV's columns, filters and rows." if xlsx else "")
    return endpoint


for _kind in exports.ExportKind:
    for _xlsx in (False, True):
        router.add_api_route(
            f"/exports/{_kind.value}.{'xlsx' if _xlsx else 'csv'}",
            _export_endpoint(_kind, _xlsx),
            methods=["GET"],
            response_class=StreamingResponse,
            responses=XLSX_RESPONSES if _xlsx else CSV_RESPONSES,
        )
