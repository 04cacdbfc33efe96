from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.auth import CurrentAdmin
from app.db import Session
from app.domain import Status
from app.routers.deps import errors
from app.schemas.common import DateTime, Id, Page
from app.schemas.orders import OrderOut
from app.services import admin_orders

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/orders", response_model=Page[OrderOut], responses=errors(401, 403, 404, 422))
async def list_orders(
    session: Session,
    actor: CurrentAdmin,
    status: Annotated[list[Status] | None, Query(description="repeat for several")] = None,
    unit_id: Annotated[Id | None, Query(description="this unit and everything under it")] = None,
    category_id: Annotated[Id | None, Query()] = None,
    created_from: Annotated[DateTime | None, Query()] = None,
    created_to: Annotated[DateTime | None, Query()] = None,
    needs_followup: Annotated[bool | None, Query(description="true: low ratings waiting for 回访")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[OrderOut]:
    """订单管理: orders of the caller's subtree, newest first, keyset-paginated."""
    return await admin_orders.list_orders(
        session,
        actor,
        statuses=status or [],
        unit_id=unit_id,
        category_id=category_id,
        created_from=created_from,
        created_to=created_to,
        needs_followup=needs_followup,
        cursor=cursor,
        limit=limit,
    )
