"""签到码: the one-time code the resident's mini-program shows to the volunteer (app.services.presence)."""

from __future__ import annotations

from fastapi import APIRouter

from app.auth import CurrentUser
from app.db import Session
from app.routers.deps import ObjectId, errors
from app.schemas.presence import PresenceCodeOut
from app.services import presence_orders

router = APIRouter(tags=["orders"])


@router.get(
    "/orders/{order_id}/presence-code", response_model=PresenceCodeOut, responses=errors(401, 403, 404, 409, 422)
)
async def order_presence_code(order_id: ObjectId, session: Session, actor: CurrentUser) -> PresenceCodeOut:
    """签到码 of an order held by a volunteer (已接单): for the resident served or whoever placed the
    order for them (代点单), to show to the volunteer on arrival. Rotating; valid a few minutes; used once."""
    return await presence_orders.order_presence_code(session, actor, order_id)
