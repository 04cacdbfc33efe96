"""时长与积分台账: volunteers' hours and points, append-only (triggers refuse UPDATE and DELETE).

- 信用时长 (``service``) is credited when an order is completed, in the same transaction, one entry per
  participant of the round, and only up to the check-in → complete span rounded up to the next half
  hour: hours a platform cannot prove are not 信用. An admin's correction (``adjustment``) is still 信用
  but carries a reason and an actor and shows in the order's timeline (``app.services.ledger_admin``).
- 荣誉时长 (``honor``) is entered by an admin with no order. It is never added to 信用 anywhere.
- 积分 (``earned``) = round(hours × the order unit's ``points_per_hour``) per participant. The balance
  is the sum of the entries; every debit locks the volunteer row first, so it never goes negative.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

from sqlalchemy import Select, and_, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import transaction
from app.errors import InvalidInput, NotFound
from app.models import HoursEntry, Order, OrderView, PointsEntry, Rating, ServiceParticipant, ServiceRecord, Volunteer
from app.schemas.common import Page
from app.schemas.ledger import (
    HoursEntryOut,
    HoursKind,
    HoursPage,
    HoursTotals,
    PointsEntryOut,
    PointsKind,
    PointsPage,
    ServiceRecordOut,
)
from app.schemas.orders import Participant
from app.services.pagination import keyset, page_of
from app.services.policies import effective_policy

HALF_HOUR_SECONDS = 30 * 60
CREDIT_KINDS = (HoursKind.SERVICE.value, HoursKind.ADJUSTMENT.value)
ZERO = Decimal(0)


# --- hours and points of a completed order ---------------------------------------------------------


def provable_hours(checked_in_at: datetime, now: datetime) -> Decimal:
    """The most hours one participant may claim: check-in → now, rounded UP to the next half hour."""
    seconds = max((now - checked_in_at).total_seconds(), 0.0)
    return Decimal(math.ceil(seconds / HALF_HOUR_SECONDS)) / 2


def earned_points(hours: Decimal, points_per_hour: int) -> int:
    """积分 for ``hours`` of service, rounded half up (1.5 h × 15 = 22.5 → 23)."""
    return int((hours * points_per_hour).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def check_service_hours(order: OrderView, participants: Sequence[Participant], now: datetime) -> None:
    """422 unless every participant's hours fit in the order's check-in → complete span."""
    if order.checked_in_at is None:
        raise InvalidInput("订单没有签到记录, 无法登记服务时长")
    allowed = provable_hours(order.checked_in_at, now)
    over = [p.volunteer_id for p in participants if p.hours > allowed]
    if over:
        raise InvalidInput(
            f"服务时长不能超过签到至完成的时长 (向上取整到半小时: {allowed} 小时)",
            allowed_hours=str(allowed),
            checked_in_at=order.checked_in_at.isoformat(),
            volunteer_ids=over,
        )


async def credit_service(
    session: AsyncSession,
    order: Order,
    record_id: int,
    participants: Sequence[Participant],
    actor: Actor,
    now: datetime,
) -> None:
    """信用时长 and 积分 of one completed round, one entry each per participant.

    Credits need no lock: adding to a balance can never take it below zero.
    """
    policy = await effective_policy(session, order.unit_path)
    for p in participants:
        session.add(
            HoursEntry(
                volunteer_id=p.volunteer_id,
                kind=HoursKind.SERVICE.value,
                hours=p.hours,
                order_id=order.id,
                record_id=record_id,
                actor_id=actor.user_id,
                created_at=now,
            )
        )
        points = earned_points(p.hours, policy.points_per_hour)
        if points:
            session.add(
                PointsEntry(
                    volunteer_id=p.volunteer_id,
                    kind=PointsKind.EARNED.value,
                    delta=points,
                    reason=f"服务 {p.hours} 小时 × {policy.points_per_hour} 积分/小时",
                    order_id=order.id,
                    created_at=now,
                )
            )


# --- balances and totals -------------------------------------------------------------------------


async def lock_volunteer(session: AsyncSession, volunteer_id: int) -> Volunteer | None:
    """``SELECT … FOR UPDATE`` on the volunteer: taken before reading a balance in order to debit it."""
    return (
        await session.execute(select(Volunteer).where(Volunteer.id == volunteer_id).with_for_update())
    ).scalar_one_or_none()


async def points_balance(session: AsyncSession, volunteer_ids: Collection[int]) -> int:
    """积分余额: the sum of the ledger (summed over several volunteers for a team)."""
    if not volunteer_ids:
        return 0
    total = await session.scalar(
        select(func.coalesce(func.sum(PointsEntry.delta), 0)).where(PointsEntry.volunteer_id.in_(volunteer_ids))
    )
    return int(total or 0)


async def hours_totals(session: AsyncSession, volunteer_ids: Collection[int]) -> HoursTotals:
    """Hours by kind, kept apart; ``credit`` (信用) = service + adjustment."""
    by_kind: dict[str, Decimal] = {}
    unverified = ZERO
    if volunteer_ids:
        rows = await session.execute(
            select(HoursEntry.kind, HoursEntry.verified, func.sum(HoursEntry.hours))
            .where(HoursEntry.volunteer_id.in_(volunteer_ids))
            .group_by(HoursEntry.kind, HoursEntry.verified)
        )
        for kind, verified, total in rows:
            by_kind[kind] = by_kind.get(kind, ZERO) + Decimal(total)
            if not verified and kind == HoursKind.SERVICE.value:
                unverified += Decimal(total)
    service = by_kind.get(HoursKind.SERVICE.value, ZERO)
    adjustment = by_kind.get(HoursKind.ADJUSTMENT.value, ZERO)
    return HoursTotals(
        service=service,
        adjustment=adjustment,
        honor=by_kind.get(HoursKind.HONOR.value, ZERO),
        credit=service + adjustment,
        unverified=unverified,
    )


async def order_hours(session: AsyncSession, volunteer_id: int, order_id: int) -> Decimal:
    """The volunteer's 信用时长 on one order: every round's service hours plus corrections."""
    total = await session.scalar(
        select(func.coalesce(func.sum(HoursEntry.hours), 0)).where(
            HoursEntry.volunteer_id == volunteer_id,
            HoursEntry.order_id == order_id,
            HoursEntry.kind.in_(CREDIT_KINDS),
        )
    )
    return Decimal(total or 0)


@dataclass(frozen=True, slots=True)
class ServedStats:
    """What volunteers did through orders: ratings of the rounds they served, orders and rounds served."""

    rating_avg: float | None
    rating_count: int
    orders_served: int
    service_count: int


async def served_stats(session: AsyncSession, volunteer_ids: Collection[int]) -> ServedStats:
    """Counted once per rating / order / round however many of ``volunteer_ids`` took part in it."""
    if not volunteer_ids:
        return ServedStats(None, 0, 0, 0)
    served = (
        select(ServiceRecord.id, ServiceRecord.order_id, ServiceRecord.round)
        .join(ServiceParticipant, ServiceParticipant.record_id == ServiceRecord.id)
        .where(ServiceParticipant.volunteer_id.in_(volunteer_ids))
        .distinct()
        .subquery()
    )
    orders_served, rounds = (
        await session.execute(select(func.count(distinct(served.c.order_id)), func.count()).select_from(served))
    ).one()
    # A rating belongs to one round of an order: it rates whoever served that round.
    average, count = (
        await session.execute(
            select(func.avg(Rating.stars), func.count(Rating.id)).join(
                served, and_(served.c.order_id == Rating.order_id, served.c.round == Rating.round)
            )
        )
    ).one()
    return ServedStats(
        rating_avg=round(float(average), 2) if average is not None else None,
        rating_count=int(count),
        orders_served=int(orders_served),
        service_count=int(rounds),
    )


# --- the volunteer's own history (我的服务记录 / 积分明细 / 时长明细) ------------------------------


def _own_volunteer_id(actor: Actor) -> int:
    if actor.volunteer_id is None:
        raise NotFound("志愿者档案不存在")
    return actor.volunteer_id


async def my_records(session: AsyncSession, actor: Actor, cursor: str | None, limit: int) -> Page[ServiceRecordOut]:
    """Service records the caller took part in, newest first (keyset on the record's time and id)."""
    volunteer_id = _own_volunteer_id(actor)
    credited = (
        select(func.coalesce(func.sum(HoursEntry.hours), 0))
        .where(
            HoursEntry.volunteer_id == volunteer_id,
            HoursEntry.order_id == ServiceRecord.order_id,
            HoursEntry.kind.in_(CREDIT_KINDS),
        )
        .correlate(ServiceRecord)
        .scalar_subquery()
    )
    query = (
        select(
            ServiceRecord.id.label("id"),
            ServiceRecord.created_at.label("created_at"),
            ServiceRecord.order_id,
            Order.code,
            Order.title,
            ServiceRecord.round,
            ServiceParticipant.hours,
            credited,
            ServiceRecord.served_count,
            ServiceRecord.summary,
            ServiceRecord.presence_proof,
        )
        .join(ServiceParticipant, ServiceParticipant.record_id == ServiceRecord.id)
        .join(Order, Order.id == ServiceRecord.order_id)
        .where(ServiceParticipant.volunteer_id == volunteer_id)
    )
    async with transaction(session):
        # ``keyset`` is typed for one-entity selects; the rows keep the columns selected above.
        page = keyset(cast("Select[Any]", query), ServiceRecord.created_at, ServiceRecord.id, cursor, limit)
        rows: list[Any] = list(await session.execute(page))
    items, next_cursor = page_of(rows, limit)
    return Page[ServiceRecordOut](
        items=[
            ServiceRecordOut(
                record_id=row[0],
                completed_at=row[1],
                order_id=row[2],
                order_code=row[3],
                title=row[4],
                round=row[5],
                hours=row[6],
                order_hours=Decimal(row[7]),
                served_count=row[8],
                summary=row[9],
                presence_proof=row[10],
            )
            for row in items
        ],
        next_cursor=next_cursor,
    )


async def my_points(
    session: AsyncSession, actor: Actor, kind: PointsKind | None, cursor: str | None, limit: int
) -> PointsPage:
    """积分明细, newest first, with the balance."""
    volunteer_id = _own_volunteer_id(actor)
    query = select(PointsEntry).where(PointsEntry.volunteer_id == volunteer_id)
    if kind is not None:
        query = query.where(PointsEntry.kind == kind.value)
    async with transaction(session):
        rows = list(
            (await session.execute(keyset(query, PointsEntry.created_at, PointsEntry.id, cursor, limit))).scalars()
        )
        balance = await points_balance(session, [volunteer_id])
    items, next_cursor = page_of(rows, limit)
    return PointsPage(items=[PointsEntryOut.model_validate(e) for e in items], next_cursor=next_cursor, balance=balance)


async def my_hours(
    session: AsyncSession, actor: Actor, kind: HoursKind | None, cursor: str | None, limit: int
) -> HoursPage:
    """时长明细 (one kind, or all), newest first, with the totals by kind."""
    volunteer_id = _own_volunteer_id(actor)
    query = select(HoursEntry).where(HoursEntry.volunteer_id == volunteer_id)
    if kind is not None:
        query = query.where(HoursEntry.kind == kind.value)
    async with transaction(session):
        rows = list(
            (await session.execute(keyset(query, HoursEntry.created_at, HoursEntry.id, cursor, limit))).scalars()
        )
        totals = await hours_totals(session, [volunteer_id])
    items, next_cursor = page_of(rows, limit)
    return HoursPage(items=[HoursEntryOut.model_validate(e) for e in items], next_cursor=next_cursor, totals=totals)
