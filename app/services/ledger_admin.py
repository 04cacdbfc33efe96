"""管理后台 · 时长与积分: audited corrections, 荣誉时长, 积分奖扣, summaries, and 回访 of low ratings.

Every entry an admin makes carries a reason and the admin's id; a correction of an order's hours and a
follow-up also land in the order's timeline (``OrderEvent`` actions ``adjust_hours`` / ``followup``,
from = to = the current status: they are not transitions, so the order's version stays). Objects
outside the admin's subtree answer 404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import transaction
from app.domain import Action, Status, TimelineNote
from app.errors import Conflict, InvalidInput, NotFound
from app.models import (
    HoursEntry,
    Order,
    OrderEvent,
    OrgUnit,
    PointsEntry,
    ServiceParticipant,
    ServiceRecord,
    Team,
    TeamMember,
    Volunteer,
)
from app.schemas.ledger import (
    HonorHoursIn,
    HoursAdjustIn,
    HoursAdjustmentOut,
    HoursEntryOut,
    HoursKind,
    PointsBonusIn,
    PointsEntryOut,
    PointsKind,
    TeamSummary,
    VolunteerHoursOut,
    VolunteerPointsOut,
    VolunteerSummary,
)
from app.schemas.orders import OrderOut
from app.services import ledger
from app.services.directory_units import jurisdiction
from app.services.policies import effective_policy
from app.services.presenters import present_order
from app.services.scope import subtree
from app.services.statements import event_row, record_event
from app.services.volunteering import star_level

# Hours may be corrected once the service is over, and only then.
ADJUSTABLE = frozenset({Status.COMPLETED.value, Status.RATED.value, Status.CLOSED.value})


async def _note(
    session: AsyncSession,
    order: Order,
    note: TimelineNote,
    actor: Actor,
    reason: str,
    payload: dict[str, Any],
    now: datetime,
) -> None:
    # The one timeline writer takes an ``Action``, but reads nothing of it beyond ``.value``.
    status = Status(order.status)
    await record_event(session, event_row(order, cast(Action, note), status, actor, reason, payload, now))


async def _lock_order_in_scope(session: AsyncSession, actor: Actor, order_id: int) -> Order:
    order = (
        await session.execute(
            select(Order)
            .where(Order.id == order_id, subtree(Order.unit_path, jurisdiction(actor)))
            .with_for_update(of=Order)
        )
    ).scalar_one_or_none()
    if order is None:
        raise NotFound("订单不存在")
    return order


async def _service_window_hours(session: AsyncSession, order_id: int, records: set[int]) -> Decimal:
    """The hours one person could have served in the rounds whose service records are ``records``: each
    round's check-in → completion span, rounded up to the half hour (as ``ledger.provable_hours``), from
    the order's timeline (the completion records the check-in it was measured from)."""
    events = await session.execute(
        select(OrderEvent.action, OrderEvent.created_at, OrderEvent.payload)
        .where(
            OrderEvent.order_id == order_id,
            OrderEvent.action.in_([Action.CHECK_IN.value, Action.COMPLETE.value]),
        )
        .order_by(OrderEvent.id)
    )
    total, checked_in = Decimal(0), None
    for action, at, payload in events:
        if action == Action.CHECK_IN.value:
            checked_in = at
        elif (payload or {}).get("record_id") in records:
            measured_from = payload.get("checked_in_at")
            start = datetime.fromisoformat(measured_from) if measured_from else checked_in
            if start is not None:
                total += ledger.provable_hours(start, at)
            checked_in = None
    return total


async def _volunteer_in_scope(session: AsyncSession, actor: Actor, volunteer_id: int, *, lock: bool) -> Volunteer:
    query = (
        select(Volunteer)
        .join(OrgUnit, OrgUnit.id == Volunteer.home_unit_id)
        .where(Volunteer.id == volunteer_id, subtree(OrgUnit.path, jurisdiction(actor)))
    )
    if lock:  # the balance about to be read must not move under a debit
        query = query.with_for_update(of=Volunteer)
    volunteer = (await session.execute(query)).scalar_one_or_none()
    if volunteer is None:
        raise NotFound("志愿者不存在")
    return volunteer


# --- 时长更正 / 荣誉时长 / 积分奖扣 ----------------------------------------------------------------


async def adjust_order_hours(
    session: AsyncSession, actor: Actor, order_id: int, body: HoursAdjustIn, now: datetime | None = None
) -> HoursAdjustmentOut:
    """时长更正: set a participant's 信用时长 on a finished order to ``body.hours``.

    Appends the difference as an ``adjustment`` entry, moves the earned points by the difference the
    hours make at the order unit's current ``points_per_hour`` (a debit is capped at the balance: the
    ledger never goes negative), and writes ``adjust_hours`` into the order's timeline.
    """
    now = now or datetime.now(UTC)
    async with transaction(session):
        order = await _lock_order_in_scope(session, actor, order_id)
        if order.status not in ADJUSTABLE:
            raise Conflict("只能更正已完成订单的服务时长", status=order.status)
        # The volunteer too must be the admin's (本级及下级): a 站 cannot re-credit another 所's people.
        await _volunteer_in_scope(session, actor, body.volunteer_id, lock=True)
        records = set(
            (
                await session.execute(
                    select(ServiceRecord.id)
                    .join(ServiceParticipant, ServiceParticipant.record_id == ServiceRecord.id)
                    .where(ServiceRecord.order_id == order.id, ServiceParticipant.volunteer_id == body.volunteer_id)
                )
            ).scalars()
        )
        if not records:
            raise InvalidInput("该志愿者未参与此订单的服务", volunteer_id=body.volunteer_id)
        window = await _service_window_hours(session, order.id, records)
        if body.hours > window:
            raise InvalidInput(
                f"更正后的时长不能超过服务时段 (签到至完成, 向上取整到半小时: {window} 小时)",
                allowed_hours=str(window),
            )
        previous = await ledger.order_hours(session, body.volunteer_id, order.id)
        delta = body.hours - previous
        if delta == 0:
            raise InvalidInput("时长与当前记录相同, 无需更正", hours=str(previous))
        entry = HoursEntry(
            volunteer_id=body.volunteer_id,
            kind=HoursKind.ADJUSTMENT.value,
            hours=delta,
            order_id=order.id,
            reason=body.reason,
            actor_id=actor.user_id,
            created_at=now,
        )
        session.add(entry)
        per_hour = (await effective_policy(session, order.unit_path)).points_per_hour
        points_delta = ledger.earned_points(body.hours, per_hour) - ledger.earned_points(previous, per_hour)
        if points_delta < 0:
            points_delta = max(points_delta, -await ledger.points_balance(session, [body.volunteer_id]))
        if points_delta:
            session.add(
                PointsEntry(
                    volunteer_id=body.volunteer_id,
                    kind=PointsKind.EARNED.value,
                    delta=points_delta,
                    reason=f"时长更正 {previous} → {body.hours} 小时: {body.reason}",
                    order_id=order.id,
                    actor_id=actor.user_id,
                    created_at=now,
                )
            )
        order.updated_at = now
        payload = {
            "volunteer_id": body.volunteer_id,
            "previous_hours": float(previous),
            "hours": float(body.hours),
            "delta": float(delta),
            "points_delta": points_delta,
        }
        await _note(session, order, TimelineNote.ADJUST_HOURS, actor, body.reason, payload, now)
        await session.flush()
        return HoursAdjustmentOut(
            order_id=order.id,
            volunteer_id=body.volunteer_id,
            previous_hours=previous,
            hours=body.hours,
            delta=delta,
            points_delta=points_delta,
            entry=HoursEntryOut.model_validate(entry),
        )


async def add_honor_hours(
    session: AsyncSession, actor: Actor, volunteer_id: int, body: HonorHoursIn, now: datetime | None = None
) -> VolunteerHoursOut:
    """荣誉时长: hours with no order behind them, kept apart from 信用时长 (no points, no star)."""
    now = now or datetime.now(UTC)
    async with transaction(session):
        volunteer = await _volunteer_in_scope(session, actor, volunteer_id, lock=True)
        if body.hours < 0:
            honor = (await ledger.hours_totals(session, [volunteer.id])).honor
            if honor + body.hours < 0:
                raise Conflict("荣誉时长不足以扣减", honor_hours=str(honor))
        entry = HoursEntry(
            volunteer_id=volunteer.id,
            kind=HoursKind.HONOR.value,
            hours=body.hours,
            reason=body.reason,
            actor_id=actor.user_id,
            created_at=now,
        )
        session.add(entry)
        await session.flush()
        return VolunteerHoursOut(
            volunteer_id=volunteer.id,
            entry=HoursEntryOut.model_validate(entry),
            totals=await ledger.hours_totals(session, [volunteer.id]),
        )


async def add_bonus_points(
    session: AsyncSession, actor: Actor, volunteer_id: int, body: PointsBonusIn, now: datetime | None = None
) -> VolunteerPointsOut:
    """积分奖扣 with a reason; a deduction larger than the balance is refused (409)."""
    now = now or datetime.now(UTC)
    async with transaction(session):
        volunteer = await _volunteer_in_scope(session, actor, volunteer_id, lock=True)
        balance = await ledger.points_balance(session, [volunteer.id])
        if balance + body.delta < 0:
            raise Conflict("积分余额不足以扣减", balance=balance, delta=body.delta)
        entry = PointsEntry(
            volunteer_id=volunteer.id,
            kind=PointsKind.BONUS.value,
            delta=body.delta,
            reason=body.reason,
            actor_id=actor.user_id,
            created_at=now,
        )
        session.add(entry)
        await session.flush()
        return VolunteerPointsOut(
            volunteer_id=volunteer.id, entry=PointsEntryOut.model_validate(entry), balance=balance + body.delta
        )


# --- summaries ------------------------------------------------------------------------------------


async def volunteer_summary(session: AsyncSession, actor: Actor, volunteer_id: int) -> VolunteerSummary:
    """A volunteer's hours by kind, points, star level, ratings and orders served."""
    async with transaction(session):
        volunteer = await _volunteer_in_scope(session, actor, volunteer_id, lock=False)
        hours = await ledger.hours_totals(session, [volunteer.id])
        balance = await ledger.points_balance(session, [volunteer.id])
        served = await ledger.served_stats(session, [volunteer.id])
    return VolunteerSummary(
        volunteer_id=volunteer.id,
        real_name=volunteer.real_name,
        home_unit_id=volunteer.home_unit_id,
        hours=hours,
        points_balance=balance,
        star_level=star_level(hours.credit),
        rating_avg=served.rating_avg,
        rating_count=served.rating_count,
        orders_served=served.orders_served,
        service_count=served.service_count,
    )


async def team_summary(session: AsyncSession, actor: Actor, team_id: int) -> TeamSummary:
    """A team's figures: its current members' hours and points, and the ratings and orders of the
    rounds any of them served (each counted once)."""
    async with transaction(session):
        team = (
            await session.execute(
                select(Team)
                .join(OrgUnit, OrgUnit.id == Team.unit_id)
                .where(Team.id == team_id, subtree(OrgUnit.path, jurisdiction(actor)))
            )
        ).scalar_one_or_none()
        if team is None:
            raise NotFound("服务队不存在")
        members = list(await session.scalars(select(TeamMember.volunteer_id).where(TeamMember.team_id == team.id)))
        hours = await ledger.hours_totals(session, members)
        balance = await ledger.points_balance(session, members)
        served = await ledger.served_stats(session, members)
    return TeamSummary(
        team_id=team.id,
        name=team.name,
        unit_id=team.unit_id,
        member_count=len(members),
        hours=hours,
        points_balance=balance,
        rating_avg=served.rating_avg,
        rating_count=served.rating_count,
        orders_served=served.orders_served,
    )


# --- 回访 ------------------------------------------------------------------------------------------


async def follow_up(
    session: AsyncSession, actor: Actor, order_id: int, note: str, now: datetime | None = None
) -> OrderOut:
    """差评回访: record what staff heard back (``followup`` in the timeline) and clear the flag.
    409 when the order is not waiting for a follow-up."""
    now = now or datetime.now(UTC)
    async with transaction(session):
        order = await _lock_order_in_scope(session, actor, order_id)
        if not order.needs_followup:
            raise Conflict("该订单没有待回访的评价", status=order.status)
        order.needs_followup = False
        order.updated_at = now
        await _note(session, order, TimelineNote.FOLLOWUP, actor, note, {"round": order.round}, now)
        await session.flush()
        return present_order(order, actor, answering_action=True)
