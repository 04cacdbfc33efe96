"""时长与积分: admins' audited entries and summaries, 回访, and the volunteer's own history.

Admin endpoints answer 404 for orders, volunteers and teams outside the caller's subtree; the rules
live in ``app.services.ledger_admin`` (admin side) and ``app.services.ledger`` (the volunteer's side).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import status as http_status

from app.auth import CurrentAdmin, CurrentVolunteer
from app.db import Session
from app.routers.deps import ObjectId, errors
from app.schemas.common import Page
from app.schemas.ledger import (
    FollowupIn,
    HonorHoursIn,
    HoursAdjustIn,
    HoursAdjustmentOut,
    HoursKind,
    HoursPage,
    PointsBonusIn,
    PointsKind,
    PointsPage,
    ServiceRecordOut,
    TeamSummary,
    VolunteerHoursOut,
    VolunteerPointsOut,
    VolunteerSummary,
)
from app.schemas.orders import OrderOut
from app.services import ledger, ledger_admin

router = APIRouter()
CREATED = http_status.HTTP_201_CREATED
Cursor = Annotated[str | None, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=100)]

# --- admin ----------------------------------------------------------------------------------------


@router.post(
    "/admin/orders/{order_id}/hours",
    response_model=HoursAdjustmentOut,
    status_code=CREATED,
    tags=["admin_ledger"],
    responses=errors(401, 403, 404, 409, 422),
)
async def adjust_hours(
    order_id: ObjectId, body: HoursAdjustIn, session: Session, actor: CurrentAdmin
) -> HoursAdjustmentOut:
    """时长更正 on a completed / rated / closed order: ``hours`` is the participant's corrected total.
    Audited: reason, actor, an ``adjust_hours`` event in the order's timeline; points follow the hours."""
    return await ledger_admin.adjust_order_hours(session, actor, order_id, body)


@router.post(
    "/admin/volunteers/{volunteer_id}/honor-hours",
    response_model=VolunteerHoursOut,
    status_code=CREATED,
    tags=["admin_ledger"],
    responses=errors(401, 403, 404, 409, 422),
)
async def honor_hours(
    volunteer_id: ObjectId, body: HonorHoursIn, session: Session, actor: CurrentAdmin
) -> VolunteerHoursOut:
    """荣誉时长 (no order behind it): kept apart from 信用时长, earns no points and no star."""
    return await ledger_admin.add_honor_hours(session, actor, volunteer_id, body)


@router.post(
    "/admin/volunteers/{volunteer_id}/points",
    response_model=VolunteerPointsOut,
    status_code=CREATED,
    tags=["admin_ledger"],
    responses=errors(401, 403, 404, 409, 422),
)
async def bonus_points(
    volunteer_id: ObjectId, body: PointsBonusIn, session: Session, actor: CurrentAdmin
) -> VolunteerPointsOut:
    """积分奖扣 with a reason; a deduction beyond the balance is refused (409)."""
    return await ledger_admin.add_bonus_points(session, actor, volunteer_id, body)


@router.get(
    "/admin/volunteers/{volunteer_id}/summary",
    response_model=VolunteerSummary,
    tags=["admin_ledger"],
    responses=errors(401, 403, 404, 422),
)
async def volunteer_summary(volunteer_id: ObjectId, session: Session, actor: CurrentAdmin) -> VolunteerSummary:
    """Hours by kind, points, star level, rating average and count, orders served."""
    return await ledger_admin.volunteer_summary(session, actor, volunteer_id)


@router.get(
    "/admin/teams/{team_id}/summary",
    response_model=TeamSummary,
    tags=["admin_ledger"],
    responses=errors(401, 403, 404, 422),
)
async def team_summary(team_id: ObjectId, session: Session, actor: CurrentAdmin) -> TeamSummary:
    """The team's current members together: hours by kind, points, ratings and orders (each counted once)."""
    return await ledger_admin.team_summary(session, actor, team_id)


@router.post(
    "/admin/orders/{order_id}/followup",
    response_model=OrderOut,
    tags=["admin"],
    responses=errors(401, 403, 404, 409, 422),
)
async def followup(order_id: ObjectId, body: FollowupIn, session: Session, actor: CurrentAdmin) -> OrderOut:
    """差评回访: record the call-back (``followup`` in the timeline, ``note`` as its reason) and clear
    ``needs_followup``. 409 when the order has no rating waiting for a follow-up."""
    return await ledger_admin.follow_up(session, actor, order_id, body.note)


# --- volunteer ------------------------------------------------------------------------------------


@router.get(
    "/volunteer/me/records",
    response_model=Page[ServiceRecordOut],
    tags=["volunteer"],
    responses=errors(401, 403, 404, 422),
)
async def my_records(
    session: Session, actor: CurrentVolunteer, cursor: Cursor = None, limit: Limit = 20
) -> Page[ServiceRecordOut]:
    """我的服务记录: the rounds I served, with my hours, newest first."""
    return await ledger.my_records(session, actor, cursor, limit)


@router.get(
    "/volunteer/me/points",
    response_model=PointsPage,
    tags=["volunteer"],
    responses=errors(401, 403, 404, 422),
)
async def my_points(
    session: Session,
    actor: CurrentVolunteer,
    kind: PointsKind | None = None,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> PointsPage:
    """积分明细, newest first, with the balance."""
    return await ledger.my_points(session, actor, kind, cursor, limit)


@router.get(
    "/volunteer/me/hours",
    response_model=HoursPage,
    tags=["volunteer"],
    responses=errors(401, 403, 404, 422),
)
async def my_hours(
    session: Session,
    actor: CurrentVolunteer,
    kind: HoursKind | None = None,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> HoursPage:
    """时长明细 (``kind``: service / adjustment / honor), newest first, with totals by kind."""
    return await ledger.my_hours(session, actor, kind, cursor, limit)
