"""爱心超市: goods managed by the staff of a unit, redeemed with points by the volunteers below it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import status as http_status

from app.auth import CurrentAdmin, CurrentVolunteer
from app.db import Session
from app.routers.deps import IdempotencyKeyHeader, ObjectId, errors
from app.schemas.common import Id, Page
from app.schemas.ledger import (
    GoodsCreate,
    GoodsOut,
    GoodsUpdate,
    RedeemIn,
    RedemptionCancelIn,
    RedemptionOut,
    RedemptionStatus,
)
from app.services import supermarket
from app.services.idempotency import IdempotencyKey

router = APIRouter(tags=["supermarket"])
CREATED = http_status.HTTP_201_CREATED
UnitFilter = Annotated[Id | None, Query(description="this unit and everything under it")]
Cursor = Annotated[str | None, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=200)]

# --- admin ----------------------------------------------------------------------------------------


@router.get("/admin/goods", response_model=list[GoodsOut], responses=errors(401, 403, 404, 422))
async def list_goods(session: Session, actor: CurrentAdmin, unit_id: UnitFilter = None) -> list[GoodsOut]:
    """Goods of the units in the caller's subtree, 下架 ones included."""
    return await supermarket.list_goods(session, actor, unit_id)


@router.post("/admin/goods", response_model=GoodsOut, status_code=CREATED, responses=errors(401, 403, 422))
async def create_goods(body: GoodsCreate, session: Session, actor: CurrentAdmin) -> GoodsOut:
    """上架: goods of a unit in the caller's subtree, priced in points."""
    return await supermarket.create_goods(session, actor, body)


@router.get("/admin/goods/{goods_id}", response_model=GoodsOut, responses=errors(401, 403, 404, 422))
async def get_goods(goods_id: ObjectId, session: Session, actor: CurrentAdmin) -> GoodsOut:
    return await supermarket.get_goods(session, actor, goods_id)


@router.patch("/admin/goods/{goods_id}", response_model=GoodsOut, responses=errors(401, 403, 404, 422))
async def update_goods(goods_id: ObjectId, body: GoodsUpdate, session: Session, actor: CurrentAdmin) -> GoodsOut:
    """Edit name, description, price, stock on hand; ``is_active=false`` takes it off the shelf (下架)."""
    return await supermarket.update_goods(session, actor, goods_id, body)


@router.get("/admin/redemptions", response_model=Page[RedemptionOut], responses=errors(401, 403, 404, 422))
async def list_redemptions(
    session: Session,
    actor: CurrentAdmin,
    status: RedemptionStatus | None = None,
    unit_id: UnitFilter = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[RedemptionOut]:
    """兑换记录 of goods of the caller's subtree, newest first, keyset-paginated."""
    return await supermarket.list_redemptions(session, actor, status, unit_id, cursor, limit)


@router.post(
    "/admin/redemptions/{redemption_id}/collect",
    response_model=RedemptionOut,
    responses=errors(401, 403, 404, 409, 422),
)
async def collect(redemption_id: ObjectId, session: Session, actor: CurrentAdmin) -> RedemptionOut:
    """领取: the goods were handed over (pending only, else 409)."""
    return await supermarket.collect(session, actor, redemption_id)


@router.post(
    "/admin/redemptions/{redemption_id}/cancel", response_model=RedemptionOut, responses=errors(401, 403, 404, 409, 422)
)
async def cancel(
    redemption_id: ObjectId, body: RedemptionCancelIn, session: Session, actor: CurrentAdmin
) -> RedemptionOut:
    """取消兑换: points refunded, stock restored (pending only, else 409)."""
    return await supermarket.cancel(session, actor, redemption_id, body.reason)


# --- volunteer ------------------------------------------------------------------------------------


@router.get("/volunteer/goods", response_model=list[GoodsOut], responses=errors(401, 403))
async def redeemable_goods(session: Session, actor: CurrentVolunteer) -> list[GoodsOut]:
    """What I can redeem: active goods of my home unit and every unit above it."""
    return await supermarket.goods_for_volunteer(session, actor)


@router.post(
    "/volunteer/redemptions",
    response_model=RedemptionOut,
    status_code=CREATED,
    responses=errors(401, 403, 404, 409, 422),
)
async def redeem(
    body: RedeemIn,
    request: Request,
    session: Session,
    actor: CurrentVolunteer,
    idempotency_key: IdempotencyKeyHeader = None,
) -> RedemptionOut:
    """兑换: debits points and takes the goods from stock at once; 409 (nothing changes) when either is
    short. Send ``Idempotency-Key`` so a retry never redeems twice."""
    idem = IdempotencyKey.from_request(idempotency_key, "POST", request.url.path, body.model_dump(mode="json"))
    return await supermarket.redeem(session, actor, body, idem)


@router.get("/volunteer/redemptions", response_model=Page[RedemptionOut], responses=errors(401, 403, 404, 422))
async def my_redemptions(
    session: Session,
    actor: CurrentVolunteer,
    status: RedemptionStatus | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[RedemptionOut]:
    """我的兑换, newest first."""
    return await supermarket.my_redemptions(session, actor, status, cursor, limit)


@router.post(
    "/volunteer/redemptions/{redemption_id}/cancel",
    response_model=RedemptionOut,
    responses=errors(401, 403, 404, 409, 422),
)
async def cancel_mine(
    redemption_id: ObjectId, body: RedemptionCancelIn, session: Session, actor: CurrentVolunteer
) -> RedemptionOut:
    """取消我的兑换 before collecting it: points refunded, stock restored (pending only, else 409;
    another volunteer's: 404)."""
    return await supermarket.cancel(session, actor, redemption_id, body.reason)
