from __future__ import annotations

from fastapi import APIRouter

from app.auth import CurrentAdmin
from app.db import Session
from app.routers.deps import ObjectId, errors
from app.schemas.dispatching import CandidatesOut, PolicyIn, PolicyOut
from app.services import dispatching

router = APIRouter(prefix="/admin", tags=["admin_dispatch"])


@router.get("/units/{unit_id}/policy", response_model=PolicyOut, responses=errors(401, 403, 404, 422))
async def get_policy(unit_id: ObjectId, session: Session, actor: CurrentAdmin) -> PolicyOut:
    """派单策略 in force at a unit (its own, inherited, or the defaults)."""
    return await dispatching.get_policy(session, actor, unit_id)


@router.put("/units/{unit_id}/policy", response_model=PolicyOut, responses=errors(401, 403, 404, 422))
async def set_policy(unit_id: ObjectId, body: PolicyIn, session: Session, actor: CurrentAdmin) -> PolicyOut:
    """Set deadlines and the auto-dispatch mode (manual / auto_assign / auto_pool) of a unit and its subtree."""
    return await dispatching.set_policy(session, actor, unit_id, body)


@router.get("/orders/{order_id}/candidates", response_model=CandidatesOut, responses=errors(401, 403, 404, 422))
async def candidates(order_id: ObjectId, session: Session, actor: CurrentAdmin) -> CandidatesOut:
    """候选人: eligible teams and volunteers, best first, with each score's parts."""
    return await dispatching.order_candidates(session, actor, order_id)
