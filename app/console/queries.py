"""Reads only the console needs: the 工作台's queues, the board's counts and names to show for ids.

Every order query is scoped with ``order_visible_to`` (the API's own predicate) and every unit query
with the caller's subtree; the queues list orders the API's ``GET /admin/orders`` would also list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import transaction
from app.domain import Status
from app.models import MenuCategory, Order, OrgUnit, OutboxMessage, Team, User, Volunteer
from app.services.directory_units import jurisdiction
from app.services.scope import order_visible_to, subtree

QUEUE_ROWS = 8
DEADLINE_SOON = timedelta(hours=2)
WAITING_STATES = (Status.SUBMITTED.value, Status.APPROVED.value, Status.DISPATCHED.value, Status.POOLED.value)


@dataclass(frozen=True, slots=True)
class Queue:
    """One 工作台 list: how many there are in all, and the first few (oldest or soonest first)."""

    total: int
    orders: list[Order]


@dataclass(frozen=True, slots=True)
class Desk:
    today: Queue
    to_review: Queue
    deadlines: Queue
    followups: Queue
    outbox_pending: int
    outbox_oldest: list[Any]  # (order id, order code, topic, attempts, last error, queued at)
    now: datetime


async def _queue(session: AsyncSession, actor: Actor, *where: Any, order_by: Any) -> Queue:
    scoped = (order_visible_to(actor), *where)
    total = (await session.execute(select(func.count()).select_from(Order).where(*scoped))).scalar_one()
    rows = list((await session.execute(select(Order).where(*scoped).order_by(*order_by).limit(QUEUE_ROWS))).scalars())
    return Queue(total, rows)


async def desk(session: AsyncSession, actor: Actor, now: datetime, day_start: datetime) -> Desk:
    """工作台: today's new orders, orders awaiting review, deadlines about to pass or passed, low
    ratings awaiting 回访, and the notifications of the caller's orders not yet delivered."""
    async with transaction(session):
        today = await _queue(session, actor, Order.created_at >= day_start, order_by=(Order.created_at.desc(),))
        to_review = await _queue(
            session, actor, Order.status == Status.SUBMITTED.value, order_by=(Order.created_at, Order.id)
        )
        deadlines = await _queue(
            session,
            actor,
            Order.deadline_at.is_not(None),
            Order.deadline_at < now + DEADLINE_SOON,
            Order.status.in_(WAITING_STATES),
            order_by=(Order.deadline_at, Order.id),
        )
        followups = await _queue(session, actor, Order.needs_followup.is_(True), order_by=(Order.updated_at, Order.id))
        # Pending notifications only: the partial index ``ix_outbox_messages_due`` holds exactly these.
        pending = (
            select(
                Order.id,
                Order.code,
                OutboxMessage.topic,
                OutboxMessage.attempts,
                OutboxMessage.last_error,
                OutboxMessage.created_at,
            )
            .join(Order, Order.id == OutboxMessage.order_id)
            .where(OutboxMessage.status == "pending", order_visible_to(actor))
        )
        outbox_total = (await session.execute(select(func.count()).select_from(pending.subquery()))).scalar_one()
        outbox_oldest = list(
            (await session.execute(pending.order_by(OutboxMessage.next_attempt_at).limit(QUEUE_ROWS))).all()
        )
    return Desk(today, to_review, deadlines, followups, int(outbox_total), outbox_oldest, now)


async def status_counts(session: AsyncSession, actor: Actor, *filters: Any) -> dict[str, int]:
    """Orders per state under the board's filters (the state filter aside)."""
    async with transaction(session):
        rows = await session.execute(
            select(Order.status, func.count()).where(order_visible_to(actor), *filters).group_by(Order.status)
        )
        return {status: int(count) for status, count in rows.all()}


async def units_in_scope(session: AsyncSession, actor: Actor) -> list[OrgUnit]:
    """The caller's unit and everything under it, in tree order (for the filters' unit choice)."""
    async with transaction(session):
        query = select(OrgUnit).where(subtree(OrgUnit.path, jurisdiction(actor))).order_by(OrgUnit.path)
        return list((await session.execute(query)).scalars())


async def categories(session: AsyncSession) -> list[MenuCategory]:
    async with transaction(session):
        query = select(MenuCategory).order_by(MenuCategory.sort_order, MenuCategory.id)
        return list((await session.execute(query)).scalars())


@dataclass(frozen=True, slots=True)
class Names:
    units: dict[int, str]
    volunteers: dict[int, str]
    teams: dict[int, str]
    users: dict[int, str]
    categories: dict[int, str]


async def names(
    session: AsyncSession,
    *,
    units: Iterable[int | None] = (),
    volunteers: Iterable[int | None] = (),
    teams: Iterable[int | None] = (),
    users: Iterable[int | None] = (),
) -> Names:
    """Display names for ids the caller already holds (from orders they may see)."""

    def ids(values: Iterable[int | None]) -> list[int]:
        return sorted({v for v in values if v is not None})

    async with transaction(session):
        unit_rows = await session.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(ids(units))))
        vol_rows = await session.execute(
            select(Volunteer.id, Volunteer.real_name).where(Volunteer.id.in_(ids(volunteers)))
        )
        team_rows = await session.execute(select(Team.id, Team.name).where(Team.id.in_(ids(teams))))
        user_rows = await session.execute(
            select(User.id, func.coalesce(func.nullif(User.display_name, ""), User.username)).where(
                User.id.in_(ids(users))
            )
        )
        cat_rows = await session.execute(select(MenuCategory.id, MenuCategory.name))
        return Names(
            units={r[0]: r[1] for r in unit_rows},
            volunteers={r[0]: r[1] for r in vol_rows},
            teams={r[0]: r[1] for r in team_rows},
            users={r[0]: r[1] or "" for r in user_rows},
            categories={r[0]: r[1] for r in cat_rows},
        )
