"""统计 (charts of ``app.services.stats``), CSV exports (``app.services.exports``, same filters) and
未满足需求 (``app.services.unmet``): each read on the reports session, as the API's endpoints do."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from app.console import queries
from app.console.routes_orders import id_param
from app.console.session import console_user
from app.console.web import page, render
from app.db import ReportSession, Session
from app.errors import NotFound
from app.schemas.stats import GroupBy, StatsOut
from app.services import exports, stats, unmet
from app.services.stats import LOCAL

router = APIRouter()


def _filters(request: Request) -> tuple[int | None, stats.Period, dict[str, str]]:
    """The unit and period the page's filter form asks for (the API's period rules: ``resolve_period``)."""
    q = request.query_params
    unit_id = id_param(q.get("unit_id", ""), "单位")
    period = stats.resolve_period(q.get("from") or None, q.get("to") or None)
    shown = {
        "unit_id": str(unit_id) if unit_id else "",
        "from": period.start.astimezone(LOCAL).date().isoformat(),
        "to": q.get("to") or "",
    }
    return unit_id, period, shown


def _chart_data(by_month: StatsOut, by_category: StatsOut, by_unit: StatsOut) -> dict[str, Any]:
    """What the ECharts on the page plot, from the API's own figures."""

    def hours(value: float | None) -> float | None:
        return None if value is None else round(value / 3600, 1)

    return {
        "months": [g.label for g in by_month.groups],
        "placed_by_month": [g.placed for g in by_month.groups],
        "completed_by_month": [g.completed for g in by_month.groups],
        "categories": [{"name": g.label, "value": g.placed} for g in by_category.groups if g.placed],
        "units": [g.label for g in by_unit.groups],
        "placed_by_unit": [g.placed for g in by_unit.groups],
        "completion_by_unit": [
            None if g.completion_rate is None else round(g.completion_rate * 100, 1) for g in by_unit.groups
        ],
        "accept_p50": [hours(g.time_to_accept.median_seconds) for g in by_unit.groups],
        "accept_p90": [hours(g.time_to_accept.p90_seconds) for g in by_unit.groups],
        "complete_p50": [hours(g.time_to_complete.median_seconds) for g in by_unit.groups],
        "complete_p90": [hours(g.time_to_complete.p90_seconds) for g in by_unit.groups],
        "satisfaction_by_unit": [
            None if g.satisfaction_rate is None else round(g.satisfaction_rate * 100, 1) for g in by_unit.groups
        ],
    }


@router.get("/stats")
@page
async def stats_page(request: Request, session: Session, reports: ReportSession) -> Response:
    user = await console_user(request, session)
    unit_id, period, shown = _filters(request)
    figures = {
        group: await stats.center_stats(reports, user.actor, unit_id=unit_id, period=period, group_by=group)
        for group in (GroupBy.MONTH, GroupBy.CATEGORY, GroupBy.UNIT)
    }
    by_month, by_category, by_unit = figures[GroupBy.MONTH], figures[GroupBy.CATEGORY], figures[GroupBy.UNIT]
    return render(
        request,
        "stats.html",
        user,
        overall=by_month.overall,
        unit_name=by_month.unit_name,
        by_unit=by_unit.groups,
        charts=_chart_data(by_month, by_category, by_unit),
        units=await queries.units_in_scope(session, user.actor),
        shown=shown,
        kinds=[(k.value, exports.FILE_TITLES[k]) for k in exports.ExportKind],
    )


@router.get("/exports/{kind}.csv")
@page
async def export_csv(request: Request, session: Session, reports: ReportSession, kind: str) -> Response:
    """The API's export (``exports.stream_csv``: UTF-8 with BOM, phones masked) for the page's filters."""
    user = await console_user(request, session)
    export_kind = next((k for k in exports.ExportKind if k.value == kind), None)
    if export_kind is None:
        raise NotFound("没有这种导出")
    unit_id, period, _ = _filters(request)
    plan = await exports.plan_export(reports, user.actor, export_kind, unit_id=unit_id, period=period)
    return StreamingResponse(
        exports.stream_csv(request.app.state.report_sessionmaker, plan),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": exports.content_disposition(plan)},
    )


@router.get("/unmet")
@page
async def unmet_page(request: Request, session: Session, reports: ReportSession) -> Response:
    user = await console_user(request, session)
    unit_id, period, shown = _filters(request)
    result = await unmet.unmet_demand(reports, user.actor, unit_id=unit_id, period=period)
    heat = {
        "arrivals": [[h, d, result.arrivals[d][h]] for d in range(7) for h in range(24)],
        "acceptances": [[h, d, result.acceptances[d][h]] for d in range(7) for h in range(24)],
        "max": max([1, *(max(row) for row in result.arrivals), *(max(row) for row in result.acceptances)]),
    }
    return render(
        request,
        "unmet.html",
        user,
        result=result,
        heat=heat,
        units=await queries.units_in_scope(session, user.actor),
        shown=shown,
    )
