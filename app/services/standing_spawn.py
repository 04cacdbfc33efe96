"""The standing-order sweeper: places each occurrence of every active standing order, a lead time ahead.

Each occurrence becomes an ordinary order through ``app.services.ordering.place_order`` (the same
checks, timeline, 免审 approval and automatic dispatch of the unit's policy as any order), placed by
whoever set the standing order up (the resident, or staff for them: 代点单).

Exactly once, across any number of sweepers on any number of instances:

- a sweeper takes one due standing order at a time with ``FOR UPDATE SKIP LOCKED`` (sweepers share
  the work and never wait on each other), advances its cursor to the next occurrence and places the
  order, all in one transaction;
- the occurrence's slot ``(standing_order_id, occurrence_at)`` is unique and claimed in that
  transaction with ``ON CONFLICT DO NOTHING``: should two ever reach one occurrence (a resume racing
  a sweep), the second places nothing.

An occurrence that cannot be placed (the menu item was taken off the menu, the account disabled) or
whose time has already passed (the sweepers were down) is recorded as skipped with the reason, and
the schedule goes on. With ``keep_volunteer``, an occurrence
at 待派单 goes to the volunteer who had the previous one, through the ordinary ``dispatch`` action, when
they are still a candidate for it (active, under their limit, qualified, …); otherwise the unit's policy.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import load_actor
from app.config import Settings
from app.domain import Action, Channel, Status
from app.errors import DomainError
from app.models import Order, StandingOccurrence, StandingOrder
from app.models.base import table_of
from app.models.orders import OrderRow
from app.schemas.orders import DispatchBody, OrderCreate
from app.services import candidates, recurrence
from app.services.applying import apply_as_system, dispatch_by_policy
from app.services.ordering import Occurrence, place_order
from app.services.statements import order_from_row

log = logging.getLogger(__name__)


async def spawn_due(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *, now: datetime | None = None
) -> int:
    """Place every occurrence due by ``now``; how many orders this sweeper placed."""
    now = now or datetime.now(UTC)
    placed = 0
    while True:
        outcome = await _spawn_one(sessionmaker, settings, now)
        if outcome is None:
            return placed
        placed += outcome


async def _spawn_one(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime) -> int | None:
    """One occurrence of one due standing order: 1 placed, 0 skipped, ``None`` when nothing is due."""
    async with sessionmaker() as session:
        await session.begin()
        standing = await session.scalar(
            select(StandingOrder)
            .where(StandingOrder.status == "active", StandingOrder.next_spawn_at <= now)
            .order_by(StandingOrder.next_spawn_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if standing is None:
            await session.rollback()
            return None
        occurrence_at = standing.next_occurrence_at
        assert occurrence_at is not None  # an active one with a spawn time has an occurrence
        standing_id = standing.id
        _advance(standing, occurrence_at, now)
        if occurrence_at <= now:  # the sweepers were down past it: an order for the past serves nobody
            await session.rollback()
            await _skip(session, standing_id, occurrence_at, now, "服务时间已过, 未生成订单")
            return 0
        previous = await _previous_volunteer(session, standing) if standing.keep_volunteer else None
        try:
            actor = await load_actor(session, standing.placed_by_id)
            body = _order_body(standing, occurrence_at)
            occurrence = Occurrence(standing_id, occurrence_at, to_previous_volunteer=previous is not None)
            order = await place_order(session, settings, actor, body, now=now, occurrence=occurrence)  # commits
        except (DomainError, ValueError) as exc:
            await session.rollback()
            await _skip(session, standing_id, occurrence_at, now, _reason(exc))
            return 0
        if previous is not None and order.status == Status.APPROVED.value:
            await _to_previous_volunteer(session, order.id, previous, now)
        return 1


def _advance(standing: StandingOrder, occurrence_at: datetime, now: datetime) -> None:
    """Move the cursor past ``occurrence_at`` (finished when the schedule has no more)."""
    following = recurrence.next_after(standing.rrule, standing.starts_at, occurrence_at)
    standing.last_occurrence_at = occurrence_at
    standing.next_occurrence_at = following
    standing.next_spawn_at = None if following is None else following - timedelta(minutes=standing.lead_minutes)
    if following is None:
        standing.status = "finished"
    standing.updated_at = now


def _order_body(standing: StandingOrder, occurrence_at: datetime) -> OrderCreate:
    return OrderCreate(
        item_id=standing.item_id,
        title=standing.title,
        description=standing.description,
        unit_id=standing.unit_id,
        address=standing.address,
        contact_name=standing.contact_name,
        contact_phone=standing.contact_phone,
        preferred_start=occurrence_at,
        preferred_end=occurrence_at + timedelta(minutes=standing.duration_minutes),
        beneficiaries=standing.beneficiaries,
        channel=Channel(standing.channel) if standing.channel else None,
        lat=standing.lat,
        lng=standing.lng,
        resident_id=standing.resident_id,
    )


def _reason(exc: Exception) -> str:
    message = exc.message if isinstance(exc, DomainError) else str(exc)
    return message[:300]


async def _skip(session: AsyncSession, standing_id: int, occurrence_at: datetime, now: datetime, reason: str) -> None:
    """Record the occurrence as skipped and move on, unless another sweeper already moved past it."""
    async with session.begin():
        standing = await session.scalar(select(StandingOrder).where(StandingOrder.id == standing_id).with_for_update())
        if standing is None or standing.status != "active" or standing.next_occurrence_at != occurrence_at:
            return
        await session.execute(
            insert(StandingOccurrence)
            .values(standing_order_id=standing_id, occurrence_at=occurrence_at, skipped=reason)
            .on_conflict_do_nothing(constraint="uq_standing_occurrences_slot")
        )
        _advance(standing, occurrence_at, now)
    log.warning("standing order %s: occurrence %s skipped: %s", standing_id, occurrence_at.isoformat(), reason)


async def _previous_volunteer(session: AsyncSession, standing: StandingOrder) -> int | None:
    """Who held the latest occurrence placed before this one (``None``: nobody did)."""
    return await session.scalar(
        select(Order.assignee_volunteer_id)
        .join(StandingOccurrence, StandingOccurrence.order_id == Order.id)
        .where(StandingOccurrence.standing_order_id == standing.id)
        .order_by(StandingOccurrence.occurrence_at.desc())
        .limit(1)
    )


async def _to_previous_volunteer(session: AsyncSession, order_id: int, volunteer_id: int, now: datetime) -> None:
    """Dispatch the occurrence to ``volunteer_id`` if they are a candidate for it (free and eligible),
    else as the unit's policy says. Each is an ordinary action of the system's (``apply_as_system``)."""
    async with session.begin():
        connection = await session.connection()
        row = (await connection.execute(select(*table_of(Order).c).where(Order.id == order_id))).mappings().one()
        order: OrderRow = order_from_row(dict(row))
        offered = {c.id for c in await candidates.volunteer_candidates(session, order)}
        if volunteer_id in offered:
            try:
                async with connection.begin_nested():
                    body = DispatchBody(volunteer_id=volunteer_id)
                    if await apply_as_system(connection, order_id, Action.DISPATCH, body, now) is not None:
                        return
            except DomainError as exc:
                log.info("standing occurrence %s: previous volunteer not dispatched: %s", order_id, exc)
        await dispatch_by_policy(connection, order, now)
