"""签到码 of an order, for the resident served (or the proxy who placed the order)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import transaction
from app.domain import Status
from app.errors import Conflict, Forbidden
from app.schemas.presence import PresenceCodeOut
from app.services import presence
from app.services.guards import is_orderer
from app.services.ordering import visible_order

# The code is shown while the volunteer holds the order and has not yet checked in.
CODE_STATES = frozenset({Status.ACCEPTED.value})


async def order_presence_code(session: AsyncSession, actor: Actor, order_id: int) -> PresenceCodeOut:
    """The current code of an order the caller placed or is served by: 404 outside what the caller may
    see, 403 for anyone else who may see it (the volunteer must not see the code they are to prove
    presence with), 409 unless a volunteer holds the order and has not checked in."""
    async with transaction(session):
        order = await visible_order(session, actor, order_id)
    holder = actor.volunteer_id is not None and order.assignee_volunteer_id == actor.volunteer_id
    if not is_orderer(actor, order) or holder:
        raise Forbidden("只有下单的群众 (或代点单人) 可以出示签到码")
    if order.status not in CODE_STATES:
        raise Conflict(f"订单处于「{order.status}」, 无需签到码", status=order.status)
    issued = presence.issue(presence.order_subject(order.id), datetime.now(UTC))
    return PresenceCodeOut(
        code=issued.code, qr=issued.qr, expires_at=issued.expires_at, valid_seconds=issued.valid_seconds
    )
