"""修改活动: staff change an activity (its title, description, place, required skills) or one of its slots
(capacity, times) while it is published.

Like a cancellation they lock the activity's row, then the slot's (``SELECT … FOR UPDATE``, in that
order), and a sign-up locks the slot: so a change of capacity takes its turn with the sign-ups of that
slot, and the count of confirmed sign-ups it reads is the count. More room confirms the waitlist in
order (each told, ``activity.promote``); less is refused below those already confirmed. Volunteers
signed up hear of a new place or new times (``activity.change``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import transaction
from app.errors import Conflict, NotFound
from app.models import Activity, ActivitySignup, ActivitySlot
from app.schemas.activities import ActivityOut, ActivityUpdate, SignupStatus, SlotUpdate
from app.services import outbox
from app.services.activities import activity_notice, admin_scope, present_activity
from app.services.activity_signups import confirm_waitlist

LIVE = (SignupStatus.CONFIRMED.value, SignupStatus.WAITLISTED.value)


async def _locked_activity(session: AsyncSession, actor: Actor, activity_id: int) -> Activity:
    """The published activity of the caller's subtree, locked (404 outside it, 409 once cancelled)."""
    activity = (
        await session.execute(select(Activity).where(Activity.id == activity_id, admin_scope(actor)).with_for_update())
    ).scalar_one_or_none()
    if activity is None:
        raise NotFound("活动不存在")
    if activity.status != "published":
        raise Conflict("活动已取消", status=activity.status)
    return activity


async def _tell_signed_up(session: AsyncSession, activity: Activity, slot_ids: list[int], **extra: object) -> None:
    """``activity.change`` to every volunteer still signed up (confirmed or waitlisted, not yet checked
    out) for those of ``slot_ids`` not over yet."""
    signups = await session.scalars(
        select(ActivitySignup.id)
        .join(ActivitySlot, ActivitySlot.id == ActivitySignup.slot_id)
        .where(
            ActivitySignup.slot_id.in_(slot_ids),
            ActivitySignup.status.in_(LIVE),
            ActivitySignup.checked_out_at.is_(None),
            ActivitySlot.ends_at > func.now(),
        )
        .order_by(ActivitySignup.id)
    )
    notice = activity_notice(activity, "changed", action="change", address=activity.address, **extra)
    await outbox.enqueue_for_signups(session, "activity.change", list(signups), notice)


async def edit_activity(session: AsyncSession, actor: Actor, activity_id: int, body: ActivityUpdate) -> ActivityOut:
    async with transaction(session):
        activity = await _locked_activity(session, actor, activity_id)
        place = (activity.address, activity.lat, activity.lng)
        for name in body.model_fields_set:
            value = getattr(body, name)
            setattr(activity, name, sorted(set(value)) if name == "required_skills" else value)
        if (activity.address, activity.lat, activity.lng) != place:
            slots = await session.scalars(select(ActivitySlot.id).where(ActivitySlot.activity_id == activity.id))
            await _tell_signed_up(session, activity, list(slots))
        await session.flush()
        return await present_activity(session, activity)


async def edit_slot(session: AsyncSession, actor: Actor, slot_id: int, body: SlotUpdate) -> ActivityOut:
    async with transaction(session):
        activity_id = await session.scalar(
            select(ActivitySlot.activity_id)
            .join(Activity, Activity.id == ActivitySlot.activity_id)
            .where(ActivitySlot.id == slot_id, admin_scope(actor))
        )
        if activity_id is None:
            raise NotFound("活动时段不存在")
        activity = await _locked_activity(session, actor, activity_id)
        slot = (
            await session.execute(select(ActivitySlot).where(ActivitySlot.id == slot_id).with_for_update())
        ).scalar_one()
        now = datetime.now(UTC)
        if body.capacity is not None:
            if body.capacity < slot.confirmed:
                raise Conflict("容量不能少于已录取人数", confirmed=slot.confirmed, capacity=slot.capacity)
            slot.capacity = body.capacity
            await confirm_waitlist(session, slot, now)
        if (
            body.starts_at is not None
            and body.ends_at is not None
            and (body.starts_at, body.ends_at)
            != (
                slot.starts_at,
                slot.ends_at,
            )
        ):
            # A check-in locks its sign-up: holding the slot's sign-ups, none lands while the times move.
            await session.execute(select(ActivitySignup.id).where(ActivitySignup.slot_id == slot.id).with_for_update())
            checked_in = await session.scalar(
                select(exists().where(ActivitySignup.slot_id == slot.id, ActivitySignup.checked_in_at.is_not(None)))
            )
            if checked_in:
                raise Conflict("已有志愿者签到, 不能修改时间", slot_id=slot.id)
            slot.starts_at, slot.ends_at = body.starts_at, body.ends_at
            await session.flush()
            await _tell_signed_up(session, activity, [slot.id], slot_starts_at=slot.starts_at.isoformat())
        await session.flush()
        return await present_activity(session, activity)
