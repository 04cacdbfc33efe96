"""What a volunteer is offered on an order beyond the state machine's guards: grab and accept need the
qualifications its menu item requires (``app.services.qualifications``), which the actions check when
taken (``Read.QUALIFIED``); a page of orders leaves them out of ``allowed_actions`` where they would
refuse."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, any_, bindparam, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.models import Order
from app.models.orders import OrderView
from app.services.guards import QUALIFIED_ACTIONS, allowed_actions
from app.services.qualifications import lacks_a_qualification


async def lacking(session: AsyncSession, actor: Actor, orders: Sequence[OrderView]) -> frozenset[int]:
    """The ids of ``orders`` that ``actor`` (a volunteer) could grab or accept by the state machine but
    lacks a qualification for, in one query (none for anyone else, or when no such action is open)."""
    if actor.volunteer_id is None:
        return frozenset()
    open_to_them = [
        order.id
        for order in orders
        if order.item_id is not None and QUALIFIED_ACTIONS.intersection(allowed_actions(actor, order))
    ]
    if not open_to_them:
        return frozenset()
    volunteer = literal(actor.volunteer_id, BigInteger)
    rows = await session.execute(
        select(Order.id).where(
            Order.id == any_(bindparam("order_ids", open_to_them, type_=ARRAY(BigInteger))),  # one statement, any page
            lacks_a_qualification(volunteer, Order.item_id, Order.preferred_start),
        )
    )
    return frozenset(rows.scalars())
