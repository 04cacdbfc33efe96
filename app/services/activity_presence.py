"""签到 / 签退 of an activity's participants, with the proofs of ``app.services.presence`` (the same
functions as an order's check-in) and the unit's policy in force at the activity's unit; hours reach
the same 时长台账 as orders' (``hours_entries``, kind ``service``, with the sign-up), 未核验 unless both
the check-in and the check-out were proven.

Each step holds the slot's row (``FOR SHARE``), then locks the sign-up's (``FOR UPDATE``): a check-in
or check-out happens once, judged by the slot's times as they are, and a code is used once
(``presence_code_uses``: ``INSERT … ON CONFLICT DO NOTHING``, nothing returned = already used).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import transaction
from app.errors import Conflict, NotFound
from app.models import Activity, ActivitySignup, ActivitySlot, HoursEntry, PointsEntry, PresenceCodeUse
from app.schemas.activities import SignupOut, SignupStatus
from app.schemas.ledger import HoursKind, PointsKind
from app.schemas.orders import CheckInBody
from app.schemas.presence import PresenceCodeOut
from app.services import ledger, presence
from app.services.activities import present_signups, signups_query
from app.services.policies import Policy, effective_policy
from app.services.scope import subtree

EARLY_CHECK_IN = timedelta(hours=1)  # 签到 opens this long before the slot starts
MIN_HOURS = Decimal("0.5")


async def _locked(
    session: AsyncSession, signup_id: int, *, volunteer_id: int | None = None, admin: Actor | None = None
) -> tuple[ActivitySignup, ActivitySlot, Activity]:
    """The sign-up (locked), its slot and activity: the volunteer's own, or one of the admin's subtree.

    The slot is held first (``FOR SHARE``: check-ins of one slot do not wait for each other), as every
    writer of a slot and its sign-ups takes it first (a sign-up, a cancellation, staff moving its
    times): a step that waited for one of them then reads the slot and the sign-up as it left them."""
    whose = select(ActivitySignup.slot_id).where(ActivitySignup.id == signup_id)
    if volunteer_id is not None:
        whose = whose.where(ActivitySignup.volunteer_id == volunteer_id)  # nobody else's slot is held
    slot_of = whose.scalar_subquery()
    await session.execute(select(ActivitySlot.id).where(ActivitySlot.id == slot_of).with_for_update(read=True))
    query = (
        select(ActivitySignup, ActivitySlot, Activity)
        .join(ActivitySlot, ActivitySlot.id == ActivitySignup.slot_id)
        .join(Activity, Activity.id == ActivitySlot.activity_id)
        .where(ActivitySignup.id == signup_id)
        .with_for_update(of=ActivitySignup)
    )
    if volunteer_id is not None:
        query = query.where(ActivitySignup.volunteer_id == volunteer_id)
    if admin is not None:
        query = query.where(subtree(Activity.unit_path, admin.unit_path or "\0"))
    found = (await session.execute(query.execution_options(populate_existing=True))).one_or_none()
    if found is None:
        raise NotFound("报名记录不存在")
    signup, slot, activity = found
    if signup.status != SignupStatus.CONFIRMED.value:
        raise Conflict("只有已录取的报名可以签到、签退", status=signup.status)
    return signup, slot, activity


async def _use_code(session: AsyncSession, slot_id: int, signup_id: int, window: int, now: datetime) -> None:
    used = await session.scalar(
        insert(PresenceCodeUse)
        .values(subject=f"{presence.slot_subject(slot_id)}:signup:{signup_id}", window=window, used_at=now)
        .on_conflict_do_nothing()
        .returning(PresenceCodeUse.window)
    )
    if used is None:
        raise presence.code_used()


async def _prove(
    session: AsyncSession, policy: Policy, signup: ActivitySignup, slot: ActivitySlot, activity: Activity, body: Any
) -> str | None:
    now = datetime.now(UTC)
    proved = presence.prove(policy, presence.slot_subject(slot.id), (activity.lat, activity.lng), body, now)
    if proved.code_window is not None:
        await _use_code(session, slot.id, signup.id, proved.code_window, now)
    return None if proved.proof is None else proved.proof.value


async def _answer(session: AsyncSession, signup_id: int) -> SignupOut:
    await session.flush()
    rows = await session.execute(signups_query().where(ActivitySignup.id == signup_id))
    return present_signups([(s, a, p) for s, a, p in rows])[0]


def _own(actor: Actor) -> int:
    if actor.volunteer_id is None:
        raise NotFound("志愿者档案不存在")
    return actor.volunteer_id


async def check_in(session: AsyncSession, actor: Actor, signup_id: int, body: CheckInBody) -> SignupOut:
    """活动签到, from an hour before the slot starts until it ends."""
    if body.code is not None or body.qr is not None:  # a guess at the slot's 签到码 counts first
        await presence.count_code_attempt(session, f"signup:{signup_id}", actor.user_id)
    async with transaction(session):
        signup, slot, activity = await _locked(session, signup_id, volunteer_id=_own(actor))
        if signup.checked_in_at is not None:
            raise Conflict("已签到", checked_in_at=signup.checked_in_at.isoformat())
        now = datetime.now(UTC)
        if not slot.starts_at - EARLY_CHECK_IN <= now <= slot.ends_at:
            raise Conflict("不在活动时段内, 不能签到", starts_at=slot.starts_at.isoformat())
        policy = await effective_policy(session, activity.unit_path)
        signup.checked_in_proof = await _prove(session, policy, signup, slot, activity, body)
        signup.checked_in_at = signup.updated_at = now
        return await _answer(session, signup.id)


def activity_hours(checked_in_at: datetime, slot: ActivitySlot, now: datetime) -> Decimal:
    """The check-in → check-out span rounded up to the half hour, at least half an hour, at most the
    slot's length (rounded up likewise)."""
    span = ledger.provable_hours(checked_in_at, now)
    return max(MIN_HOURS, min(span, ledger.provable_hours(slot.starts_at, slot.ends_at)))


async def check_out(session: AsyncSession, actor: Actor, signup_id: int, body: CheckInBody) -> SignupOut:
    """活动签退: the span's hours go to the ledger (信用时长, 未核验 unless both ends were proven) with the
    points of the unit's policy."""
    if body.code is not None or body.qr is not None:  # a guess at the slot's 签到码 counts first
        await presence.count_code_attempt(session, f"signup:{signup_id}", actor.user_id)
    async with transaction(session):
        signup, slot, activity = await _locked(session, signup_id, volunteer_id=_own(actor))
        if signup.checked_in_at is None:
            raise Conflict("尚未签到, 不能签退", status=signup.status)
        if signup.checked_out_at is not None:
            raise Conflict("已签退", checked_out_at=signup.checked_out_at.isoformat())
        policy = await effective_policy(session, activity.unit_path)
        signup.checked_out_proof = await _prove(session, policy, signup, slot, activity, body)
        now = datetime.now(UTC)
        hours = activity_hours(signup.checked_in_at, slot, now)
        signup.checked_out_at = signup.updated_at = now
        signup.hours = hours
        verified = signup.checked_in_proof is not None and signup.checked_out_proof is not None
        session.add(
            HoursEntry(
                volunteer_id=signup.volunteer_id,
                kind=HoursKind.SERVICE.value,
                hours=hours,
                activity_signup_id=signup.id,
                actor_id=actor.user_id,
                verified=verified,
                created_at=now,
            )
        )
        points = ledger.earned_points(hours, policy.points_per_hour)
        if points:
            session.add(
                PointsEntry(
                    volunteer_id=signup.volunteer_id,
                    kind=PointsKind.EARNED.value,
                    delta=points,
                    reason=f"活动「{activity.title}」{hours} 小时 × {policy.points_per_hour} 积分/小时",
                    created_at=now,
                )
            )
        return await _answer(session, signup.id)


async def confirm_presence(session: AsyncSession, actor: Actor, signup_id: int, reason: str) -> SignupOut:
    """管理员确认到场 (with a reason, kept on the sign-up): checks a confirmed participant in, or proves a
    check-in made without proof, where the unit's policy accepts it. 409 once proven or checked out."""
    async with transaction(session):
        signup, _slot, activity = await _locked(session, signup_id, admin=actor)
        policy = await effective_policy(session, activity.unit_path)
        presence.accepts(policy, presence.Proof.ADMIN)
        if signup.checked_out_at is not None:
            raise Conflict("已签退, 时长已入账", status=signup.status)
        if signup.checked_in_proof is not None:
            raise Conflict("签到已核验", presence_proof=signup.checked_in_proof)
        now = datetime.now(UTC)
        signup.checked_in_at = signup.checked_in_at or now
        signup.checked_in_proof = presence.Proof.ADMIN.value
        signup.presence_confirmed_by_id, signup.presence_reason = actor.user_id, reason
        signup.updated_at = now
        return await _answer(session, signup.id)


async def slot_presence_code(session: AsyncSession, actor: Actor, slot_id: int) -> PresenceCodeOut:
    """签到码 of a slot of the caller's subtree, for the organiser to show on site (every participant
    uses it once per window)."""
    async with transaction(session):
        found = await session.scalar(
            select(ActivitySlot.id)
            .join(Activity, Activity.id == ActivitySlot.activity_id)
            .where(ActivitySlot.id == slot_id, subtree(Activity.unit_path, actor.unit_path or "\0"))
        )
    if found is None:
        raise NotFound("活动时段不存在")
    issued = presence.issue(presence.slot_subject(slot_id), datetime.now(UTC))
    return PresenceCodeOut(
        code=issued.code, qr=issued.qr, expires_at=issued.expires_at, valid_seconds=issued.valid_seconds
    )
