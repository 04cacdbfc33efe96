"""活动招募: publishing activities and reading them.

A 所 or 站 (or a 实践点/基地 under them) publishes an activity with time slots, a capacity per slot,
required skills and a place. Staff see the activities of their subtree (others: 404); volunteers see
the published activities of the units above their home unit (the activity's unit's subtree is who may
sign up; others: 404). Sign-ups: ``app.services.activity_signups``; check-in and check-out with the
proofs of ``app.services.presence``: ``app.services.activity_presence``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, String, any_, func, literal, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import transaction
from app.errors import Conflict, InvalidInput, NotFound
from app.models import Activity, ActivitySignup, ActivitySlot, OrgUnit, Volunteer
from app.models.base import table_of
from app.models.org import ancestor_paths
from app.schemas.activities import (
    KIND_LABELS,
    ActivityCreate,
    ActivityKind,
    ActivityOut,
    SignupOut,
    SignupStatus,
    SlotOut,
)
from app.schemas.common import Page
from app.services import outbox
from app.services.pagination import keyset, page_of
from app.services.scope import subtree

# The levels that run activities of their own (the issue: a 站 or a 所; points and bases sit under them).
PUBLISHING_LEVELS = frozenset({"institute", "station", "point", "base"})


def eligible_for(home_path: str) -> Any:
    """Activities a volunteer whose home unit has ``home_path`` may see and join: those of the units on
    the path from the root to that unit (the volunteer lies in their subtree); an indexed ``= ANY``."""
    return Activity.unit_path == any_(literal(ancestor_paths(home_path), ARRAY(String)))


async def volunteer_home_path(session: AsyncSession, actor: Actor) -> str:
    """The home unit path of the calling volunteer (active); 404 for an account without a profile."""
    if actor.volunteer_id is None or actor.unit_path is None:
        raise NotFound("志愿者档案不存在")
    return actor.unit_path


async def publish_activity(session: AsyncSession, actor: Actor, body: ActivityCreate) -> ActivityOut:
    """发布活动 at a unit of the caller's subtree; 422 for a unit outside it or of the wrong level."""
    async with transaction(session):
        unit = await session.get(OrgUnit, body.unit_id)
        if unit is None or not actor.administers(unit.path) or not unit.is_active:
            raise InvalidInput("单位不存在或不在本单位管辖范围内", unit_id=body.unit_id)
        if unit.level not in PUBLISHING_LEVELS:
            raise InvalidInput("活动由所、站 (或实践点、基地) 发布", unit_id=body.unit_id, level=unit.level)
        activity = Activity(
            unit_id=unit.id,
            unit_path=unit.path,
            kind=body.kind.value,
            title=body.title,
            description=body.description,
            address=body.address,
            lat=body.lat,
            lng=body.lng,
            required_skills=sorted(set(body.required_skills)),
            created_by_id=actor.user_id,
            created_at=datetime.now(UTC),
        )
        session.add(activity)
        await session.flush()
        session.add_all(
            ActivitySlot(activity_id=activity.id, starts_at=s.starts_at, ends_at=s.ends_at, capacity=s.capacity)
            for s in sorted(body.slots, key=lambda s: s.starts_at)
        )
        await session.flush()
        return await present_activity(session, activity)


async def present_activity(session: AsyncSession, activity: Activity) -> ActivityOut:
    waitlisted = (
        select(func.count())
        .where(ActivitySignup.slot_id == ActivitySlot.id, ActivitySignup.status == "waitlisted")
        .correlate(ActivitySlot)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(ActivitySlot, waitlisted).where(ActivitySlot.activity_id == activity.id).order_by(ActivitySlot.starts_at)
    )
    slots = [
        SlotOut(
            id=slot.id,
            starts_at=slot.starts_at,
            ends_at=slot.ends_at,
            capacity=slot.capacity,
            confirmed=slot.confirmed,
            waitlisted=int(waiting),
        )
        for slot, waiting in rows
    ]
    kind = ActivityKind(activity.kind)
    return ActivityOut(
        id=activity.id,
        unit_id=activity.unit_id,
        kind=kind,
        kind_label=KIND_LABELS[kind],
        title=activity.title,
        description=activity.description,
        address=activity.address,
        lat=activity.lat,
        lng=activity.lng,
        required_skills=list(activity.required_skills),
        status=activity.status,
        created_at=activity.created_at,
        cancelled_at=activity.cancelled_at,
        cancel_reason=activity.cancel_reason,
        slots=slots,
    )


def activity_notice(activity: Activity, status: str, **extra: Any) -> dict[str, Any]:
    """A notification's payload about ``activity`` (``app.services.channels.message_fields``): its id,
    title and the sign-up's new ``status``; ``code`` for a template's 编号 keyword."""
    return {"activity_id": activity.id, "code": f"A{activity.id}", "title": activity.title, "status": status} | extra


def admin_scope(actor: Actor) -> Any:
    return subtree(Activity.unit_path, actor.unit_path or "\0")


async def admin_activity(session: AsyncSession, actor: Actor, activity_id: int) -> ActivityOut:
    async with transaction(session):
        activity = (
            await session.execute(select(Activity).where(Activity.id == activity_id, admin_scope(actor)))
        ).scalar_one_or_none()
        if activity is None:
            raise NotFound("活动不存在")
        return await present_activity(session, activity)


async def cancel_activity(session: AsyncSession, actor: Actor, activity_id: int, reason: str) -> ActivityOut:
    """取消活动 of the caller's subtree (else 404), with a reason; 409 if it already is. Sign-ups not yet
    checked in are cancelled with it (their places freed: nobody is promoted); whoever is already
    checked in may still check out, and keeps the hours served. The activity's row, then its slots, are
    locked as a sign-up locks its slot: no sign-up lands on a cancelled activity."""
    async with transaction(session):
        activity = (
            await session.execute(
                select(Activity).where(Activity.id == activity_id, admin_scope(actor)).with_for_update()
            )
        ).scalar_one_or_none()
        if activity is None:
            raise NotFound("活动不存在")
        if activity.status != "published":
            raise Conflict("活动已取消", status=activity.status)
        now = datetime.now(UTC)
        slots = list(
            (
                await session.execute(
                    select(ActivitySlot)
                    .where(ActivitySlot.activity_id == activity.id)
                    .order_by(ActivitySlot.id)
                    .with_for_update()
                )
            ).scalars()
        )
        cancelled = await session.execute(
            update(ActivitySignup)
            .where(
                ActivitySignup.slot_id.in_([slot.id for slot in slots]),
                ActivitySignup.status != SignupStatus.CANCELLED.value,
                ActivitySignup.checked_in_at.is_(None),
            )
            .values(status=SignupStatus.CANCELLED.value, updated_at=now)
            .returning(ActivitySignup.id, ActivitySignup.slot_id)
            .execution_options(synchronize_session=False)
        )
        # Everyone whose place (or place on the waitlist) at a slot still to come went with it hears why.
        to_come = {slot.id for slot in slots if slot.ends_at > now}
        await outbox.enqueue_for_signups(
            session,
            "activity.cancel",
            [signup_id for signup_id, slot_id in cancelled if slot_id in to_come],
            activity_notice(activity, "cancelled", action="cancel", reason=reason),
        )
        for slot in slots:  # the places still taken: those checked in
            slot.confirmed = (
                await session.scalar(
                    select(func.count()).where(
                        ActivitySignup.slot_id == slot.id, ActivitySignup.status == SignupStatus.CONFIRMED.value
                    )
                )
                or 0
            )
        activity.status, activity.cancelled_at = "cancelled", now
        activity.cancelled_by_id, activity.cancel_reason = actor.user_id, reason
        await session.flush()
        return await present_activity(session, activity)


async def volunteer_activity(session: AsyncSession, actor: Actor, activity_id: int) -> ActivityOut:
    async with transaction(session):
        home = await volunteer_home_path(session, actor)
        activity = (
            await session.execute(
                select(Activity).where(Activity.id == activity_id, eligible_for(home), Activity.status == "published")
            )
        ).scalar_one_or_none()
        if activity is None:
            raise NotFound("活动不存在")
        return await present_activity(session, activity)


async def _page(session: AsyncSession, query: Select[Any], cursor: str | None, limit: int) -> Page[ActivityOut]:
    rows = list((await session.execute(keyset(query, Activity.created_at, Activity.id, cursor, limit))).scalars())
    items, next_cursor = page_of(rows, limit)
    return Page[ActivityOut](items=[await present_activity(session, a) for a in items], next_cursor=next_cursor)


async def admin_activities(session: AsyncSession, actor: Actor, cursor: str | None, limit: int) -> Page[ActivityOut]:
    """The activities of the caller's subtree, newest first."""
    async with transaction(session):
        return await _page(session, select(Activity).where(admin_scope(actor)), cursor, limit)


async def volunteer_activities(
    session: AsyncSession, actor: Actor, cursor: str | None, limit: int
) -> Page[ActivityOut]:
    """活动招募 open to the caller: published activities of the units their home unit lies under."""
    async with transaction(session):
        home = await volunteer_home_path(session, actor)
        query = select(Activity).where(eligible_for(home), Activity.status == "published")
        return await _page(session, query, cursor, limit)


# ---- sign-ups as the API shows them ---------------------------------------------------------------------


def present_signups(rows: Sequence[tuple[ActivitySignup, int, int | None]]) -> list[SignupOut]:
    """Rows of (sign-up, activity id, waitlist position)."""
    return [
        SignupOut(
            id=s.id,
            slot_id=s.slot_id,
            activity_id=activity_id,
            volunteer_id=s.volunteer_id,
            status=SignupStatus(s.status),
            waitlist_position=position if s.status == "waitlisted" else None,
            checked_in_at=s.checked_in_at,
            checked_in_proof=s.checked_in_proof,
            checked_out_at=s.checked_out_at,
            checked_out_proof=s.checked_out_proof,
            hours=s.hours,
            verified=None if s.hours is None else (s.checked_in_proof is not None and s.checked_out_proof is not None),
            created_at=s.created_at,
        )
        for s, activity_id, position in rows
    ]


def _position() -> Any:
    ahead = select(func.count()).where(
        ActivitySignup.slot_id == _ahead.slot_id, _ahead.status == "waitlisted", _ahead.id <= ActivitySignup.id
    )
    return ahead.correlate(ActivitySignup).scalar_subquery()


_ahead = table_of(ActivitySignup).alias("ahead").c


def signups_query() -> Select[Any]:
    """Sign-ups with their activity id and waitlist position (1 = next)."""
    return select(ActivitySignup, ActivitySlot.activity_id, _position()).join(
        ActivitySlot, ActivitySlot.id == ActivitySignup.slot_id
    )


async def slot_signups(session: AsyncSession, actor: Actor, slot_id: int) -> list[SignupOut]:
    """报名名单 of a slot of the caller's subtree: confirmed, then the waitlist in order, then cancelled."""
    async with transaction(session):
        slot = (
            await session.execute(
                select(ActivitySlot.id)
                .join(Activity, Activity.id == ActivitySlot.activity_id)
                .where(ActivitySlot.id == slot_id, admin_scope(actor))
            )
        ).scalar_one_or_none()
        if slot is None:
            raise NotFound("活动时段不存在")
        rows = await session.execute(
            signups_query().where(ActivitySignup.slot_id == slot_id).order_by(ActivitySignup.id)
        )
        found = [(s, a, p) for s, a, p in rows]
    order = {"confirmed": 0, "waitlisted": 1, "cancelled": 2}
    return present_signups(sorted(found, key=lambda r: (order[r[0].status], r[0].id)))


async def my_signups(session: AsyncSession, actor: Actor) -> list[SignupOut]:
    """The caller's sign-ups, newest first (the last 200)."""
    async with transaction(session):
        if actor.volunteer_id is None:
            raise NotFound("志愿者档案不存在")
        rows = await session.execute(
            signups_query()
            .where(ActivitySignup.volunteer_id == actor.volunteer_id)
            .order_by(ActivitySignup.id.desc())
            .limit(200)
        )
        return present_signups([(s, a, p) for s, a, p in rows])


async def volunteer_skills(session: AsyncSession, volunteer_id: int) -> list[str]:
    return list((await session.scalar(select(Volunteer.skills).where(Volunteer.id == volunteer_id))) or [])
