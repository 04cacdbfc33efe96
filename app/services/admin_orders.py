"""The admin's order list: 本单位及下级 orders, filtered, keyset-paginated."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import transaction
from app.domain import Status
from app.errors import InvalidInput, NotFound
from app.models import Order, OrgUnit
from app.schemas.common import Page
from app.schemas.orders import OrderOut
from app.services.pagination import keyset, page_of
from app.services.presenters import present_order
from app.services.privacy import record_phone_reads
from app.services.scope import order_visible_to, subtree


async def list_orders(
    session: AsyncSession,
    actor: Actor,
    *,
    statuses: list[Status],
    unit_id: int | None,
    category_id: int | None,
    created_from: datetime | None,
    created_to: datetime | None,
    cursor: str | None,
    needs_followup: bool | None = None,
    limit: int,
) -> Page[OrderOut]:
    if created_from and created_to and created_from >= created_to:
        raise InvalidInput("created_from 须早于 created_to")
    query = select(Order).where(order_visible_to(actor))
    async with transaction(session):
        if unit_id is not None:
            unit = await session.get(OrgUnit, unit_id)
            if unit is None or not actor.administers(unit.path):
                raise NotFound("单位不存在")
            query = query.where(subtree(Order.unit_path, unit.path))
        if statuses:
            query = query.where(Order.status.in_([s.value for s in statuses]))
        if category_id is not None:
            query = query.where(Order.category_id == category_id)
        if created_from is not None:
            query = query.where(Order.created_at >= created_from)
        if created_to is not None:
            query = query.where(Order.created_at < created_to)
        if needs_followup is not None:
            query = query.where(Order.needs_followup.is_(needs_followup))
        rows = list((await session.execute(keyset(query, Order.created_at, Order.id, cursor, limit))).scalars())
        items, next_cursor = page_of(rows, limit)
        await record_phone_reads(session, actor, items, "GET /admin/orders")
        return Page[OrderOut](items=[present_order(o, actor) for o in items], next_cursor=next_cursor)
