"""点单 and order reads: placing orders (also 代点单), one order, its timeline, the caller's orders."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, String, bindparam, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor, hold_account
from app.config import Settings
from app.db import transaction
from app.domain import Action, Channel, Role, Status
from app.errors import Conflict, InvalidInput, NotFound, RateLimited
from app.models import MenuItem, Order, OrderEvent, OrderView, OrgUnit, Rating, StandingOccurrence, User
from app.models.org import ancestor_paths
from app.schemas.common import Page
from app.schemas.orders import EventOut, OrderCreate, OrderOut, OrderRating, ReasonBody
from app.services import idempotency, offers, outbox
from app.services.applying import apply_as_system
from app.services.pagination import newest_first, page_of, page_params
from app.services.policies import effective_policy, step_deadline
from app.services.presenters import present_order
from app.services.privacy import record_phone_reads
from app.services.scope import order_visible_to
from app.services.statements import event_row, record_event
from app.workflow import ACTIONS

_ORDER_WINDOW = timedelta(hours=1)  # of resident_orders_per_hour
_CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud over the hotline


@dataclass(frozen=True, slots=True)
class Occurrence:
    """The occurrence of a standing order (常态化服务) an order is placed for (``app.services.standing_spawn``).

    ``to_previous_volunteer``: a 免审 approval is not followed by the automatic dispatch, the spawner
    dispatches the order to the volunteer who served the previous occurrence."""

    standing_order_id: int
    occurrence_at: datetime
    to_previous_volunteer: bool = False


_CLAIM_OCCURRENCE = (
    insert(StandingOccurrence)
    .values(
        standing_order_id=bindparam("standing_order_id"),
        occurrence_at=bindparam("occurrence_at"),
        order_id=bindparam("order_id"),
    )
    .on_conflict_do_nothing(constraint="uq_standing_occurrences_slot")
    .returning(StandingOccurrence.id)
)


def new_order_code(now: datetime) -> str:
    return f"SD{now:%Y%m%d}" + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(6))


async def place_order(
    session: AsyncSession,
    settings: Settings,
    actor: Actor,
    body: OrderCreate,
    idem: idempotency.IdempotencyKey | None = None,
    now: datetime | None = None,
    occurrence: Occurrence | None = None,
) -> OrderOut:
    """点单. A resident orders for themself; a volunteer or admin may order for a resident (代点单).

    Items marked auto-approve (免审) are approved by the system in the same transaction. An
    ``occurrence`` of a standing order is claimed in the same transaction too (its unique slot, 409 if
    already taken: nothing is placed) and is not counted against the resident's hourly limit.
    """
    now = now or datetime.now(UTC)
    async with transaction(session):
        if idem is not None:
            replay = await idempotency.claim(session, actor.user_id, idem)
            if replay is not None:
                return OrderOut.model_validate(replay)
        if actor.role is Role.RESIDENT and occurrence is None:
            await _check_hourly_limit(session, settings, actor, now)
            await hold_account(session, actor.user_id)
        unit = await session.get(OrgUnit, body.unit_id)
        if unit is None or not unit.is_active:
            raise InvalidInput("服务单位不存在或已停用", unit_id=body.unit_id)
        if actor.role is Role.ADMIN and not actor.administers(unit.path):
            raise InvalidInput("只能为本单位及下级单位代点单", unit_id=body.unit_id)
        resident_id = await _resident_served(session, actor, body)
        item = await _menu_item(session, body, unit) if body.item_id is not None else None
        default_channel = Channel.MINIPROGRAM if actor.role is Role.RESIDENT else Channel.APP
        order = Order(
            code=new_order_code(now),
            resident_id=resident_id,
            placed_by_id=actor.user_id,
            item_id=item.id if item else None,
            category_id=item.category_id if item else None,
            title=body.title or (item.name if item else ""),
            description=body.description,
            unit_id=unit.id,
            unit_path=unit.path,
            address=body.address,
            lat=body.lat,
            lng=body.lng,
            contact_name=body.contact_name,
            contact_phone=body.contact_phone,
            preferred_start=body.preferred_start,
            preferred_end=body.preferred_end,
            beneficiaries=body.beneficiaries,
            channel=(body.channel or default_channel).value,
            status=Status.SUBMITTED.value,
            created_at=now,
            updated_at=now,
        )
        session.add(order)
        await session.flush()
        place_rule = ACTIONS[Action.PLACE].rules[None]
        order.deadline_at = step_deadline(Status.SUBMITTED, await effective_policy(session, unit.path), now)
        payload: dict[str, object] = {"channel": order.channel, "by_proxy": order.placed_by_id != order.resident_id}
        if occurrence is not None:
            await _claim(session, occurrence, order.id)
            payload |= {
                "standing_order_id": occurrence.standing_order_id,
                "occurrence_at": occurrence.occurrence_at.isoformat(),
            }
        await record_event(session, event_row(order, Action.PLACE, None, actor, None, payload, now))
        await outbox.enqueue(session, order, Action.PLACE, place_rule.notify)
        await session.flush()
        placed: OrderView = order
        if item is not None and item.auto_approve:
            auto = ReasonBody(reason="菜单项免审, 系统自动受理")
            connection = await session.connection()
            onward = occurrence is None or not occurrence.to_previous_volunteer
            approved = await apply_as_system(connection, order.id, Action.APPROVE, auto, now, dispatch_onward=onward)
            placed = approved or order
        result = present_order(placed, actor)
        if idem is not None:
            await idempotency.store(session, actor.user_id, idem, 201, result.model_dump(mode="json"))
    return result


async def _claim(session: AsyncSession, occurrence: Occurrence, order_id: int) -> None:
    """Claim the occurrence's slot for this order: one order per occurrence whichever sweeper, on
    whichever instance, gets there first (the others' inserts do nothing and they place nothing)."""
    params = {
        "standing_order_id": occurrence.standing_order_id,
        "occurrence_at": occurrence.occurrence_at,
        "order_id": order_id,
    }
    if await session.scalar(_CLAIM_OCCURRENCE, params) is None:
        raise Conflict("该次常态化服务已生成订单", standing_order_id=occurrence.standing_order_id)


async def _check_hourly_limit(session: AsyncSession, settings: Settings, actor: Actor, now: datetime) -> None:
    """A resident places at most ``resident_orders_per_hour`` orders an hour (staff ordering for others, not).

    Takes a lock on the resident for the rest of the order's transaction first: counting their orders
    of the last hour and inserting this one are then one step for every request on every instance (a
    concurrent order waits here, and counts this one once it is committed)."""
    lock_key = func.hashtextextended(f"orders-per-hour:{actor.user_id}", 0)
    await session.execute(select(func.pg_advisory_xact_lock(lock_key)))
    limit = settings.resident_orders_per_hour
    # The hour's ``limit``-th newest order: while it is in the window, the limit is reached.
    nth_newest = await session.scalar(
        select(Order.created_at)
        .where(Order.placed_by_id == actor.user_id, Order.created_at > now - _ORDER_WINDOW)
        .order_by(Order.created_at.desc())
        .offset(limit - 1)
        .limit(1)
    )
    if nth_newest is not None:
        retry_after = max(1, math.ceil((nth_newest + _ORDER_WINDOW - now).total_seconds()))
        raise RateLimited(f"每小时最多点单 {limit} 次, 请稍后再试", retry_after_seconds=retry_after)


async def _resident_served(session: AsyncSession, actor: Actor, body: OrderCreate) -> int | None:
    if actor.role is Role.RESIDENT:
        if body.resident_id not in (None, actor.user_id):
            raise InvalidInput("群众只能为本人点单", resident_id=body.resident_id)
        return actor.user_id
    if body.resident_id is None:
        return None  # ordered by phone / offline for someone without an account
    role = await session.scalar(select(User.role).where(User.id == body.resident_id, User.is_active.is_(True)))
    if role != Role.RESIDENT.value:
        raise InvalidInput("resident_id 不是有效的群众账号", resident_id=body.resident_id)
    return body.resident_id


async def _menu_item(session: AsyncSession, body: OrderCreate, unit: OrgUnit) -> MenuItem:
    item = (
        await session.execute(
            select(MenuItem)
            .join(OrgUnit, OrgUnit.id == MenuItem.unit_id)
            .where(
                MenuItem.id == body.item_id,
                MenuItem.is_active.is_(True),
                OrgUnit.path.in_(ancestor_paths(unit.path)),
            )
        )
    ).scalar_one_or_none()
    if item is None:
        raise InvalidInput("菜单项不存在, 或不在该单位的服务菜单中", item_id=body.item_id)
    return item


async def visible_order(session: AsyncSession, actor: Actor, order_id: int) -> Order:
    order = (
        await session.execute(select(Order).where(Order.id == order_id, order_visible_to(actor)))
    ).scalar_one_or_none()
    if order is None:
        raise NotFound("订单不存在")
    return order


async def get_order(session: AsyncSession, actor: Actor, order_id: int) -> OrderOut:
    async with transaction(session):
        order = await visible_order(session, actor, order_id)
        await record_phone_reads(session, actor, [order], "GET /orders/{id}")
        rating = (
            await session.execute(
                select(Rating.stars, Rating.by_proxy, Rating.created_at.label("rated_at")).where(
                    Rating.order_id == order.id, Rating.round == order.round
                )
            )
        ).one_or_none()
        return present_order(
            order,
            actor,
            rating=None if rating is None else OrderRating.model_validate(rating),
            unqualified=order.id in await offers.lacking(session, actor, [order]),
        )


async def order_events(session: AsyncSession, actor: Actor, order_id: int) -> list[EventOut]:
    """The order's timeline, oldest first."""
    async with transaction(session):
        await visible_order(session, actor, order_id)
        events = (
            await session.execute(select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id))
        ).scalars()
        return [EventOut.model_validate(e) for e in events]


_ORDERER = bindparam("scope_user_id", type_=BigInteger)
# ``my_orders``'s statements, built once (see ``app.services.volunteering``): by (status filter, cursor).
_MINE = {
    (by_status, after_cursor): newest_first(
        select(Order).where(
            or_(Order.resident_id == _ORDERER, Order.placed_by_id == _ORDERER),
            *([Order.status == bindparam("order_status", type_=String)] if by_status else []),
        ),
        Order.created_at,
        Order.id,
        after_cursor=after_cursor,
    )
    for by_status in (False, True)
    for after_cursor in (False, True)
}


async def my_orders(
    session: AsyncSession, actor: Actor, status: Status | None, cursor: str | None, limit: int
) -> Page[OrderOut]:
    """Orders the caller is served by or placed (代点单 included), newest first."""
    params = {"scope_user_id": actor.user_id, "order_status": status.value if status else None}
    params |= page_params(cursor, limit)
    async with transaction(session):
        query = _MINE[status is not None, bool(cursor)]
        rows = list((await session.execute(query, params)).scalars())
        items, next_cursor = page_of(rows, limit)
        unqualified = await offers.lacking(session, actor, items)
        return Page[OrderOut](
            items=[present_order(o, actor, unqualified=o.id in unqualified) for o in items], next_cursor=next_cursor
        )
