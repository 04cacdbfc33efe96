"""爱心超市: goods of a unit priced in 积分, redeemed by volunteers of that unit's subtree.

A volunteer sees the active goods of their home unit and of every unit above it. Redeeming locks the
volunteer row (so the balance cannot move under the debit) and then the goods row (so the stock
cannot), checks both, and writes the redemption, the debit and the new stock in one transaction: under
any concurrency neither points nor stock go below zero. A redemption waits (``pending``) until the
unit's staff hand the goods over (``collected``) or cancel it (points refunded, stock restored).
Locks are taken volunteer → goods (redeem) and redemption → goods (cancel), never the other way round.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import transaction
from app.domain import Role
from app.errors import Conflict, NotFound
from app.models import Goods, OrgUnit, PointsEntry, Redemption, Volunteer
from app.models.org import ancestor_paths
from app.schemas.common import Page
from app.schemas.ledger import (
    GoodsCreate,
    GoodsOut,
    GoodsUpdate,
    PointsKind,
    RedeemIn,
    RedemptionOut,
    RedemptionStatus,
)
from app.services import idempotency, ledger
from app.services.directory_units import jurisdiction, listing_scope, referenced_unit
from app.services.pagination import keyset, page_of
from app.services.scope import subtree

# --- goods (管理后台) ------------------------------------------------------------------------------


async def _goods_in_scope(session: AsyncSession, actor: Actor, goods_id: int, *, lock: bool = False) -> Goods:
    query = (
        select(Goods)
        .join(OrgUnit, OrgUnit.id == Goods.unit_id)
        .where(Goods.id == goods_id, subtree(OrgUnit.path, jurisdiction(actor)))
    )
    if lock:
        query = query.with_for_update(of=Goods)
    goods = (await session.execute(query)).scalar_one_or_none()
    if goods is None:
        raise NotFound("商品不存在")
    return goods


async def list_goods(session: AsyncSession, actor: Actor, unit_id: int | None) -> list[GoodsOut]:
    """Goods of the units in the caller's subtree (or under ``unit_id``), 下架 ones included."""
    async with transaction(session):
        path = await listing_scope(session, actor, unit_id)
        rows = await session.scalars(
            select(Goods)
            .join(OrgUnit, OrgUnit.id == Goods.unit_id)
            .where(subtree(OrgUnit.path, path))
            .order_by(Goods.id)
        )
        return [GoodsOut.model_validate(g) for g in rows]


async def create_goods(session: AsyncSession, actor: Actor, body: GoodsCreate) -> GoodsOut:
    """上架 goods for a unit of the caller's subtree."""
    async with transaction(session):
        unit = await referenced_unit(session, actor, body.unit_id, "unit_id")
        goods = Goods(
            unit_id=unit.id,
            name=body.name,
            description=body.description,
            points_price=body.points_price,
            stock=body.stock,
            is_active=body.is_active,
        )
        session.add(goods)
        await session.flush()
        await session.refresh(goods)
        return GoodsOut.model_validate(goods)


async def get_goods(session: AsyncSession, actor: Actor, goods_id: int) -> GoodsOut:
    async with transaction(session):
        return GoodsOut.model_validate(await _goods_in_scope(session, actor, goods_id))


async def update_goods(session: AsyncSession, actor: Actor, goods_id: int, body: GoodsUpdate) -> GoodsOut:
    """Edit goods; the row is locked, so a stock count set here never races a redemption."""
    async with transaction(session):
        goods = await _goods_in_scope(session, actor, goods_id, lock=True)
        for name, value in body.model_dump(exclude_unset=True).items():
            setattr(goods, name, value)
        await session.flush()
        return GoodsOut.model_validate(goods)


async def goods_for_volunteer(session: AsyncSession, actor: Actor) -> list[GoodsOut]:
    """What the caller may redeem: active goods of their home unit and its ancestors (sold-out included)."""
    if actor.unit_path is None:
        return []
    async with transaction(session):
        rows = await session.scalars(_redeemable(actor).order_by(Goods.points_price, Goods.id))
        return [GoodsOut.model_validate(g) for g in rows]


def _redeemable(actor: Actor) -> Select[Goods]:
    return (
        select(Goods)
        .join(OrgUnit, OrgUnit.id == Goods.unit_id)
        .where(
            Goods.is_active.is_(True),
            OrgUnit.is_active.is_(True),
            OrgUnit.path.in_(ancestor_paths(actor.unit_path or "")),
        )
    )


# --- redemptions (兑换) ----------------------------------------------------------------------------


def _redemptions() -> Select[Redemption, Goods, str]:
    return (
        select(Redemption, Goods, Volunteer.real_name)
        .join(Goods, Goods.id == Redemption.goods_id)
        .join(Volunteer, Volunteer.id == Redemption.volunteer_id)
    )


def _present(redemption: Redemption, goods: Goods, volunteer_name: str) -> RedemptionOut:
    return RedemptionOut(
        id=redemption.id,
        goods_id=goods.id,
        goods_name=goods.name,
        unit_id=goods.unit_id,
        volunteer_id=redemption.volunteer_id,
        volunteer_name=volunteer_name,
        quantity=redemption.quantity,
        points=redemption.points,
        status=cast(RedemptionStatus, redemption.status),  # a check constraint holds it to these values
        handled_by_id=redemption.handled_by_id,
        handled_at=redemption.handled_at,
        created_at=redemption.created_at,
    )


async def redeem(
    session: AsyncSession,
    actor: Actor,
    body: RedeemIn,
    idem: idempotency.IdempotencyKey | None = None,
    now: datetime | None = None,
) -> RedemptionOut:
    """兑换: debit ``price × quantity`` points and take the goods from stock, or 409 and nothing changes."""
    now = now or datetime.now(UTC)
    async with transaction(session):
        if idem is not None:
            replay = await idempotency.claim(session, actor.user_id, idem)
            if replay is not None:
                return RedemptionOut.model_validate(replay)
        volunteer = await ledger.lock_volunteer(session, actor.volunteer_id) if actor.volunteer_id else None
        if volunteer is None:
            raise NotFound("志愿者档案不存在")
        goods = (
            await session.execute(_redeemable(actor).where(Goods.id == body.goods_id).with_for_update(of=Goods))
        ).scalar_one_or_none()
        if goods is None:
            raise NotFound("商品不存在或已下架")
        cost = goods.points_price * body.quantity
        if goods.stock < body.quantity:
            raise Conflict("库存不足", stock=goods.stock, quantity=body.quantity)
        balance = await ledger.points_balance(session, [volunteer.id])
        if balance < cost:
            raise Conflict("积分不足", balance=balance, required=cost)
        goods.stock -= body.quantity
        redemption = Redemption(
            goods_id=goods.id,
            volunteer_id=volunteer.id,
            quantity=body.quantity,
            points=cost,
            status="pending",
            created_at=now,
        )
        session.add(redemption)
        await session.flush()
        session.add(
            PointsEntry(
                volunteer_id=volunteer.id,
                kind=PointsKind.REDEMPTION.value,
                delta=-cost,
                reason=f"兑换 {goods.name} × {body.quantity}",
                redemption_id=redemption.id,
                actor_id=actor.user_id,
                created_at=now,
            )
        )
        result = _present(redemption, goods, volunteer.real_name)
        if idem is not None:
            await idempotency.store(session, actor.user_id, idem, 201, result.model_dump(mode="json"))
    return result


async def my_redemptions(
    session: AsyncSession, actor: Actor, status: RedemptionStatus | None, cursor: str | None, limit: int
) -> Page[RedemptionOut]:
    """The caller's redemptions, newest first."""
    if actor.volunteer_id is None:
        raise NotFound("志愿者档案不存在")
    async with transaction(session):
        query = _redemptions().where(Redemption.volunteer_id == actor.volunteer_id)
        return await _fetch_page(session, query, status, cursor, limit)


async def list_redemptions(
    session: AsyncSession,
    actor: Actor,
    status: RedemptionStatus | None,
    unit_id: int | None,
    cursor: str | None,
    limit: int,
) -> Page[RedemptionOut]:
    """Redemptions of goods of the units in the caller's subtree (or under ``unit_id``), newest first."""
    async with transaction(session):
        path = await listing_scope(session, actor, unit_id)
        query = _redemptions().join(OrgUnit, OrgUnit.id == Goods.unit_id).where(subtree(OrgUnit.path, path))
        return await _fetch_page(session, query, status, cursor, limit)


async def _fetch_page(
    session: AsyncSession,
    query: Select[Redemption, Goods, str],
    status: RedemptionStatus | None,
    cursor: str | None,
    limit: int,
) -> Page[RedemptionOut]:
    if status is not None:
        query = query.where(Redemption.status == status)
    # ``keyset`` is typed for one-entity selects; these rows keep their (redemption, goods, name) shape.
    page = keyset(cast("Select[Any]", query), Redemption.created_at, Redemption.id, cursor, limit)
    rows: list[tuple[Redemption, Goods, str]] = [(r[0], r[1], r[2]) for r in await session.execute(page)]
    items, next_cursor = page_of([redemption for redemption, _, _ in rows], limit)
    extra = {redemption.id: (goods, name) for redemption, goods, name in rows}
    return Page[RedemptionOut](items=[_present(r, *extra[r.id]) for r in items], next_cursor=next_cursor)


async def _pending_in_scope(session: AsyncSession, actor: Actor, redemption_id: int) -> tuple[Redemption, Goods, str]:
    """The pending redemption, locked: of goods in an admin's subtree, or a volunteer's own."""
    in_scope = (
        Redemption.volunteer_id == actor.volunteer_id
        if actor.role is Role.VOLUNTEER
        else subtree(OrgUnit.path, jurisdiction(actor))
    )
    row = (
        await session.execute(
            _redemptions()
            .join(OrgUnit, OrgUnit.id == Goods.unit_id)
            .where(Redemption.id == redemption_id, in_scope)
            .with_for_update(of=Redemption)
        )
    ).one_or_none()
    if row is None:
        raise NotFound("兑换记录不存在")
    redemption, goods, name = row
    if redemption.status != "pending":
        raise Conflict("只能处理待领取的兑换", status=redemption.status)
    return redemption, goods, name


async def collect(
    session: AsyncSession, actor: Actor, redemption_id: int, now: datetime | None = None
) -> RedemptionOut:
    """领取: the goods were handed over."""
    now = now or datetime.now(UTC)
    async with transaction(session):
        redemption, goods, name = await _pending_in_scope(session, actor, redemption_id)
        redemption.status = "collected"
        redemption.handled_by_id, redemption.handled_at = actor.user_id, now
        await session.flush()
        return _present(redemption, goods, name)


async def cancel(
    session: AsyncSession, actor: Actor, redemption_id: int, reason: str, now: datetime | None = None
) -> RedemptionOut:
    """取消兑换 by an admin of the goods' unit or the volunteer who redeemed: refund the points and put
    the goods back in stock (pending redemptions only)."""
    now = now or datetime.now(UTC)
    async with transaction(session):
        redemption, goods, name = await _pending_in_scope(session, actor, redemption_id)
        redemption.status = "cancelled"
        redemption.handled_by_id, redemption.handled_at = actor.user_id, now
        await session.execute(update(Goods).where(Goods.id == goods.id).values(stock=Goods.stock + redemption.quantity))
        session.add(
            PointsEntry(
                volunteer_id=redemption.volunteer_id,
                kind=PointsKind.REFUND.value,
                delta=redemption.points,
                reason=reason,
                redemption_id=redemption.id,
                actor_id=actor.user_id,
                created_at=now,
            )
        )
        await session.flush()
        return _present(redemption, goods, name)
