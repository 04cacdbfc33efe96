"""管理后台 · 未满足需求: the orders nobody took, demand against volunteers, and when orders arrive
against when they are accepted — subtree-scoped like ``/admin/stats`` (same periods)."""

from __future__ import annotations

from fastapi import APIRouter

from app.auth import CurrentAdmin
from app.db import ReportSession
from app.routers.deps import errors
from app.routers.stats import FromQuery, ToQuery, UnitQuery, requested_period
from app.schemas.unmet import UnmetOut
from app.services import unmet

router = APIRouter(prefix="/admin", tags=["admin: stats"])


@router.get("/stats/unmet", response_model=UnmetOut, responses=errors(401, 403, 404, 422))
async def unmet_demand(
    session: ReportSession,
    actor: CurrentAdmin,
    unit_id: UnitQuery = None,
    period_from: FromQuery = None,
    period_to: ToQuery = None,
) -> UnmetOut:
    """未满足需求 per direct child unit and menu category: orders nobody took (rejected, cancelled before
    acceptance, escalated to a 中心 or above and still open, or still open after a deadline ran out) and
    how long they waited; active volunteers serving each category; a 7×24 week-hour heat map of
    arrivals against acceptances (Asia/Shanghai)."""
    period = requested_period(period_from, period_to)
    return await unmet.unmet_demand(session, actor, unit_id=unit_id, period=period)
