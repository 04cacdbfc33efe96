"""报名 and 候补: signing up for an activity's slot and cancelling, with the capacity exact under any
concurrency, across service instances.

Every sign-up, cancellation and promotion first locks the slot's row (``SELECT … FOR UPDATE``), so
they take turns per slot in PostgreSQL: the count of confirmed sign-ups read under the lock is the
count, a sign-up is confirmed only while it is below the capacity, and a cancellation that frees a
place promotes the first of the waitlist (lowest id: who signed up first) in the same transaction.
The slot's check (``confirmed <= capacity``) and the unique index of live sign-ups are the database's
own backstops.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import transaction
from app.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.models import Activity, ActivitySignup, ActivitySlot
from app.schemas.activities import SignupOut, SignupStatus
from app.services import outbox
from app.services.activities import (
    activity_notice,
    eligible_for,
    present_signups,
    signups_query,
    volunteer_skills,
)


async def _present(session: AsyncSession, signup_id: int) -> SignupOut:
    rows = await session.execute(signups_query().where(ActivitySignup.id == signup_id))
    return present_signups([(s, a, p) for s, a, p in rows])[0]


async def sign_up(session: AsyncSession, actor: Actor, slot_id: int) -> SignupOut:
    """报名: confirmed while the slot has room, else 候补 (waitlisted). 404 for a slot the volunteer may
    not join (outside the activity's unit's subtree); 422 without a required skill; 409 already signed
    up, or the slot has started, or the activity was cancelled."""
    if actor.volunteer_id is None or actor.unit_path is None:
        raise NotFound("志愿者档案不存在")
    if not actor.volunteer_active:
        raise Forbidden("志愿者已停用, 不能报名")
    async with transaction(session):
        found = (
            await session.execute(
                select(ActivitySlot, Activity)
                .join(Activity, Activity.id == ActivitySlot.activity_id)
                .where(ActivitySlot.id == slot_id, eligible_for(actor.unit_path))
                .with_for_update(of=ActivitySlot)  # the guard: sign-ups of one slot take turns
            )
        ).one_or_none()
        if found is None:
            raise NotFound("活动时段不存在")
        slot, activity = found
        # Read again now the slot is ours: the row above is of the snapshot taken before waiting for the
        # lock, and a cancellation (which locks every slot of the activity) may have committed meanwhile.
        status = await session.scalar(select(Activity.status).where(Activity.id == activity.id))
        if status != "published":
            raise Conflict("活动已取消", status=status)
        now = datetime.now(UTC)
        if now >= slot.starts_at:
            raise Conflict("该时段已开始, 报名已截止", starts_at=slot.starts_at.isoformat())
        skills = set(await volunteer_skills(session, actor.volunteer_id))
        if missing := sorted(set(activity.required_skills) - skills):
            raise InvalidInput(f"缺少活动所需技能: {'、'.join(missing)}", missing_skills=missing)
        already = await session.scalar(
            select(ActivitySignup.id).where(
                ActivitySignup.slot_id == slot.id,
                ActivitySignup.volunteer_id == actor.volunteer_id,
                ActivitySignup.status != SignupStatus.CANCELLED.value,
            )
        )
        if already is not None:
            raise Conflict("已报名该时段", signup_id=already)
        confirmed = slot.confirmed < slot.capacity
        if confirmed:
            slot.confirmed += 1
        signup = ActivitySignup(
            slot_id=slot.id,
            volunteer_id=actor.volunteer_id,
            status=(SignupStatus.CONFIRMED if confirmed else SignupStatus.WAITLISTED).value,
            created_at=now,
            updated_at=now,
        )
        session.add(signup)
        try:
            await session.flush()
        except IntegrityError as exc:  # the unique index of live sign-ups (never reached under the lock)
            raise Conflict("已报名该时段") from exc
        return await _present(session, signup.id)


async def cancel_signup(session: AsyncSession, actor: Actor, signup_id: int) -> SignupOut:
    """取消报名 (the volunteer's own, before checking in). A confirmed place freed goes to the first of
    the waitlist, in the same transaction."""
    if actor.volunteer_id is None:
        raise NotFound("志愿者档案不存在")
    async with transaction(session):
        slot_id = await session.scalar(
            select(ActivitySignup.slot_id).where(
                ActivitySignup.id == signup_id, ActivitySignup.volunteer_id == actor.volunteer_id
            )
        )
        if slot_id is None:
            raise NotFound("报名记录不存在")
        slot = (
            await session.execute(select(ActivitySlot).where(ActivitySlot.id == slot_id).with_for_update())
        ).scalar_one()
        signup = await session.get(ActivitySignup, signup_id, populate_existing=True)
        assert signup is not None
        if signup.status == SignupStatus.CANCELLED.value:
            raise Conflict("报名已取消", status=signup.status)
        if signup.checked_in_at is not None:
            raise Conflict("已签到, 不能取消报名", status=signup.status)
        now = datetime.now(UTC)
        freed = signup.status == SignupStatus.CONFIRMED.value
        signup.status, signup.updated_at = SignupStatus.CANCELLED.value, now
        if freed:
            await session.flush()
            await promote_next(session, slot, now)
        await session.flush()
        return await _present(session, signup.id)


async def promote_next(session: AsyncSession, slot: ActivitySlot, now: datetime) -> None:
    """递补: a confirmed place of ``slot`` (locked by the caller) was freed: it goes to the first of the
    waitlist, if anyone waits."""
    slot.confirmed -= 1
    await confirm_waitlist(session, slot, now)


async def confirm_waitlist(session: AsyncSession, slot: ActivitySlot, now: datetime) -> list[int]:
    """The free places of ``slot`` (``capacity`` − ``confirmed``; the slot locked by the caller) go to the
    first of its waitlist, in the order they signed up; each is told (``activity.promote``: they may
    come). The sign-ups confirmed."""
    free = slot.capacity - slot.confirmed
    if free <= 0:
        return []
    heads = list(
        await session.scalars(
            select(ActivitySignup.id)
            .where(ActivitySignup.slot_id == slot.id, ActivitySignup.status == SignupStatus.WAITLISTED.value)
            .order_by(ActivitySignup.id)
            .limit(free)
        )
    )
    if not heads:
        return []
    await session.execute(
        update(ActivitySignup)
        .where(ActivitySignup.id.in_(heads))
        .values(status=SignupStatus.CONFIRMED.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    slot.confirmed += len(heads)
    if slot.ends_at <= now:
        return heads  # room added to a slot that is over: nobody to call
    activity = await session.get(Activity, slot.activity_id)
    assert activity is not None
    notice = activity_notice(
        activity, SignupStatus.CONFIRMED.value, action="promote", slot_starts_at=slot.starts_at.isoformat()
    )
    await outbox.enqueue_for_signups(session, "activity.promote", heads, notice)
    return heads
