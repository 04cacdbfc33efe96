"""活动招募: staff publish activities; volunteers of the unit's subtree sign up, check in and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.auth import CurrentAdmin, CurrentVolunteer
from app.db import Session
from app.routers.deps import ObjectId, errors
from app.schemas.activities import ActivityCreate, ActivityOut, ActivityUpdate, SignupOut, SlotUpdate
from app.schemas.common import Page
from app.schemas.orders import CheckInBody, EmptyBody, ReasonBody
from app.schemas.presence import PresenceCodeOut
from app.services import activities, activity_edits, activity_presence, activity_signups

router = APIRouter(tags=["activities"])
Cursor = Annotated[str | None, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=100)]


# ---- staff -------------------------------------------------------------------------------------------


@router.post("/admin/activities", status_code=201, response_model=ActivityOut, responses=errors(401, 403, 422))
async def publish_activity(body: ActivityCreate, session: Session, actor: CurrentAdmin) -> ActivityOut:
    """发布活动 (宣讲, 义诊, 文艺演出 …) at a 所 or 站 of the caller's subtree, with time slots and capacities."""
    return await activities.publish_activity(session, actor, body)


@router.get("/admin/activities", response_model=Page[ActivityOut], responses=errors(401, 403, 422))
async def admin_activities(
    session: Session, actor: CurrentAdmin, cursor: Cursor = None, limit: Limit = 20
) -> Page[ActivityOut]:
    """The activities of the caller's subtree, newest first."""
    return await activities.admin_activities(session, actor, cursor, limit)


@router.get("/admin/activities/{activity_id}", response_model=ActivityOut, responses=errors(401, 403, 404, 422))
async def admin_activity(activity_id: ObjectId, session: Session, actor: CurrentAdmin) -> ActivityOut:
    return await activities.admin_activity(session, actor, activity_id)


@router.patch("/admin/activities/{activity_id}", response_model=ActivityOut, responses=errors(401, 403, 404, 409, 422))
async def edit_activity(
    activity_id: ObjectId, body: ActivityUpdate, session: Session, actor: CurrentAdmin
) -> ActivityOut:
    """修改活动 (published, of the caller's subtree): title, description, place, required skills. The
    volunteers signed up are told of a new place (``activity.change``)."""
    return await activity_edits.edit_activity(session, actor, activity_id, body)


@router.patch("/admin/activity-slots/{slot_id}", response_model=ActivityOut, responses=errors(401, 403, 404, 409, 422))
async def edit_slot(slot_id: ObjectId, body: SlotUpdate, session: Session, actor: CurrentAdmin) -> ActivityOut:
    """修改时段: capacity (409 below those confirmed; more room confirms the waitlist in order) and times
    (409 once someone has checked in; those signed up are told). The activity as it now is."""
    return await activity_edits.edit_slot(session, actor, slot_id, body)


@router.post(
    "/admin/activities/{activity_id}/cancel", response_model=ActivityOut, responses=errors(401, 403, 404, 409, 422)
)
async def cancel_activity(
    activity_id: ObjectId, body: ReasonBody, session: Session, actor: CurrentAdmin
) -> ActivityOut:
    """取消活动, with a reason: sign-ups not yet checked in are cancelled; the checked-in may check out."""
    return await activities.cancel_activity(session, actor, activity_id, body.reason)


@router.get(
    "/admin/activity-slots/{slot_id}/signups", response_model=list[SignupOut], responses=errors(401, 403, 404, 422)
)
async def slot_signups(slot_id: ObjectId, session: Session, actor: CurrentAdmin) -> list[SignupOut]:
    """报名名单: confirmed, then the waitlist in order, then cancelled."""
    return await activities.slot_signups(session, actor, slot_id)


@router.get(
    "/admin/activity-slots/{slot_id}/presence-code",
    response_model=PresenceCodeOut,
    responses=errors(401, 403, 404, 422),
)
async def slot_presence_code(slot_id: ObjectId, session: Session, actor: CurrentAdmin) -> PresenceCodeOut:
    """签到码 of a slot, for the organiser to show on site; each participant uses a code once."""
    return await activity_presence.slot_presence_code(session, actor, slot_id)


@router.post(
    "/admin/activity-signups/{signup_id}/confirm-presence",
    response_model=SignupOut,
    responses=errors(401, 403, 404, 409, 422),
)
async def confirm_presence(signup_id: ObjectId, body: ReasonBody, session: Session, actor: CurrentAdmin) -> SignupOut:
    """管理员确认到场, with a reason: checks the participant in, or proves an unproven check-in."""
    return await activity_presence.confirm_presence(session, actor, signup_id, body.reason)


# ---- volunteers ------------------------------------------------------------------------------------------


@router.get("/activities", response_model=Page[ActivityOut], responses=errors(401, 403, 404, 422))
async def open_activities(
    session: Session, actor: CurrentVolunteer, cursor: Cursor = None, limit: Limit = 20
) -> Page[ActivityOut]:
    """活动招募 open to the caller (activities of the units above their home unit), newest first."""
    return await activities.volunteer_activities(session, actor, cursor, limit)


@router.get("/activities/mine", response_model=list[SignupOut], responses=errors(401, 403, 404))
async def my_signups(session: Session, actor: CurrentVolunteer) -> list[SignupOut]:
    """我的报名, newest first."""
    return await activities.my_signups(session, actor)


@router.get("/activities/{activity_id}", response_model=ActivityOut, responses=errors(401, 403, 404, 422))
async def open_activity(activity_id: ObjectId, session: Session, actor: CurrentVolunteer) -> ActivityOut:
    return await activities.volunteer_activity(session, actor, activity_id)


@router.post(
    "/activity-slots/{slot_id}/signup",
    status_code=201,
    response_model=SignupOut,
    responses=errors(401, 403, 404, 409, 422),
)
async def sign_up(
    slot_id: ObjectId, session: Session, actor: CurrentVolunteer, body: EmptyBody | None = None
) -> SignupOut:
    """报名 a slot: confirmed while it has room, else 候补 (waitlisted, promoted in order)."""
    return await activity_signups.sign_up(session, actor, slot_id)


@router.post(
    "/activity-signups/{signup_id}/cancel", response_model=SignupOut, responses=errors(401, 403, 404, 409, 422)
)
async def cancel_signup(
    signup_id: ObjectId, session: Session, actor: CurrentVolunteer, body: EmptyBody | None = None
) -> SignupOut:
    """取消报名 (before checking in); the place goes to the first of the waitlist."""
    return await activity_signups.cancel_signup(session, actor, signup_id)


@router.post(
    "/activity-signups/{signup_id}/check-in", response_model=SignupOut, responses=errors(401, 403, 404, 409, 422)
)
async def check_in(
    signup_id: ObjectId, session: Session, actor: CurrentVolunteer, body: CheckInBody | None = None
) -> SignupOut:
    """活动签到 with a proof (``code``/``qr`` or ``lat``/``lng``/``accuracy_m``), as the unit's policy accepts."""
    return await activity_presence.check_in(session, actor, signup_id, body or CheckInBody())


@router.post(
    "/activity-signups/{signup_id}/check-out", response_model=SignupOut, responses=errors(401, 403, 404, 409, 422)
)
async def check_out(
    signup_id: ObjectId, session: Session, actor: CurrentVolunteer, body: CheckInBody | None = None
) -> SignupOut:
    """活动签退 with a proof; the span's hours go to the hours ledger."""
    return await activity_presence.check_out(session, actor, signup_id, body or CheckInBody())
