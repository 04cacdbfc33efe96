"""活动 in statistics and exports, beside orders: a subtree's activities whose slots start in the period,
their places, sign-ups, participants and hours (信用时长 from check-in → check-out, 未核验 kept apart)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.models import Activity, ActivitySignup, ActivitySlot, HoursEntry, OrgUnit, Volunteer
from app.schemas.activities import KIND_LABELS, ActivityKind
from app.schemas.stats import ActivityFigures
from app.services.presence import PROOF_LABELS
from app.services.scope import subtree

Rows = Any

SIGNUP_LABELS: Final = {"confirmed": "已录取", "waitlisted": "候补", "cancelled": "已取消"}


def slots_in(unit_path: str, start: Any, end: Any) -> ColumnElement[bool]:
    """The slots of the subtree's activities starting in [start, end) (``Activity`` and ``ActivitySlot``
    joined)."""
    return and_(
        subtree(Activity.unit_path, unit_path),
        ActivitySlot.starts_at >= start,
        ActivitySlot.starts_at < end,
    )


async def activity_figures(session: AsyncSession, unit_path: str, start: Any, end: Any) -> ActivityFigures:
    """The figures of the subtree's activities with a slot starting in [start, end)."""
    slots = (
        select(ActivitySlot.id, ActivitySlot.activity_id, ActivitySlot.capacity, ActivitySlot.confirmed)
        .join(Activity, Activity.id == ActivitySlot.activity_id)
        .where(slots_in(unit_path, start, end), Activity.status == "published")
        .cte("slots")
    )
    places = (
        await session.execute(
            select(
                func.count(slots.c.activity_id.distinct()),
                func.count(),
                func.coalesce(func.sum(slots.c.capacity), 0),
                func.coalesce(func.sum(slots.c.confirmed), 0),
            ).select_from(slots)
        )
    ).one()
    served = (
        await session.execute(
            select(
                func.count(HoursEntry.volunteer_id.distinct()),
                func.count(),
                func.coalesce(func.sum(HoursEntry.hours), 0),
                func.coalesce(func.sum(HoursEntry.hours).filter(HoursEntry.verified.is_(False)), 0),
            )
            .select_from(slots)
            .join(ActivitySignup, ActivitySignup.slot_id == slots.c.id)
            .join(HoursEntry, HoursEntry.activity_signup_id == ActivitySignup.id)
        )
    ).one()
    waitlisted = await session.scalar(
        select(func.count())
        .select_from(slots)
        .join(ActivitySignup, ActivitySignup.slot_id == slots.c.id)
        .where(ActivitySignup.status == "waitlisted")
    )
    return ActivityFigures(
        activities=int(places[0]),
        slots=int(places[1]),
        places=int(places[2]),
        confirmed=int(places[3]),
        waitlisted=int(waitlisted or 0),
        participants=int(served[0]),
        participations=int(served[1]),
        hours=float(served[2]),
        unverified_hours=float(served[3]),
    )


# ---- the activities export ----------------------------------------------------------------------------

ACTIVITY_HEADER: Final = (
    "活动编号",
    "活动名称",
    "活动类型",
    "发布单位",
    "时段开始",
    "时段结束",
    "志愿者编号",
    "姓名",
    "报名状态",
    "签到时间",
    "签到核验",
    "签退时间",
    "签退核验",
    "时长(小时)",
    "未核验",
)


def activity_rows(unit_path: str, start: Any, end: Any, local_time: Any) -> Rows:
    """One row per sign-up of the subtree's activities with a slot starting in the period."""
    unit = aliased(OrgUnit)
    return (
        select(
            Activity.id,
            Activity.title,
            Activity.kind,
            unit.name,
            local_time(ActivitySlot.starts_at),
            local_time(ActivitySlot.ends_at),
            Volunteer.id,
            Volunteer.real_name,
            ActivitySignup.status,
            local_time(ActivitySignup.checked_in_at),
            ActivitySignup.checked_in_proof,
            local_time(ActivitySignup.checked_out_at),
            ActivitySignup.checked_out_proof,
            ActivitySignup.hours,
        )
        .join(Activity, Activity.id == ActivitySlot.activity_id)
        .join(unit, unit.id == Activity.unit_id)
        .join(ActivitySignup, ActivitySignup.slot_id == ActivitySlot.id)
        .join(Volunteer, Volunteer.id == ActivitySignup.volunteer_id)
        .where(slots_in(unit_path, start, end))
        .order_by(ActivitySlot.starts_at, ActivitySlot.id, ActivitySignup.id)
    )


def activity_cells(row: Any, safe_text: Any, hours_cell: Any) -> list[str | int]:
    aid, title, kind, unit, starts, ends, vid, name, status, checked_in, in_proof, checked_out, out_proof, hours = row
    unverified = "" if hours is None else ("是" if in_proof is None or out_proof is None else "否")
    return [
        aid,
        safe_text(title),
        KIND_LABELS[ActivityKind(kind)],
        safe_text(unit),
        starts,
        ends,
        vid,
        safe_text(name),
        SIGNUP_LABELS.get(status, status),
        checked_in or "",
        PROOF_LABELS.get(in_proof, "") if checked_in else "",
        checked_out or "",
        PROOF_LABELS.get(out_proof, "") if checked_out else "",
        "" if hours is None else hours_cell(Decimal(hours)),
        unverified,
    ]
