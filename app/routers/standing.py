"""常态化服务 (standing orders): a resident or staff set one up; the resident or an admin in scope pauses,
resumes or ends it. Each occurrence is an ordinary order (``GET /orders/{id}``) listed under
``GET /standing-orders/{id}/occurrences``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from fastapi import status as http_status

from app.auth import Actor, require_role
from app.db import Session
from app.domain import Role
from app.routers.deps import ObjectId, SettingsDep, errors
from app.schemas.standing import OccurrenceOut, StandingOrderCreate, StandingOrderOut, StandingReason
from app.services import standing

router = APIRouter(prefix="/standing-orders", tags=["standing orders"])

# Residents and staff: a volunteer orders for residents one by one (代点单), never standing orders.
CurrentUser = Annotated[Actor, require_role(Role.RESIDENT, Role.ADMIN)]


@router.post(
    "",
    response_model=StandingOrderOut,
    status_code=http_status.HTTP_201_CREATED,
    responses=errors(401, 403, 422),
)
async def create_standing_order(
    body: StandingOrderCreate, session: Session, settings: SettingsDep, actor: CurrentUser
) -> StandingOrderOut:
    """设立常态化服务: the order each occurrence places and its schedule (an RRULE in Asia/Shanghai time).
    A resident sets one up for themself; an admin for a resident of their subtree (代点单)."""
    return await standing.create_standing_order(session, settings, actor, body)


@router.get("", response_model=list[StandingOrderOut], responses=errors(401, 403))
async def list_standing_orders(session: Session, actor: CurrentUser) -> list[StandingOrderOut]:
    """A resident's own standing orders; an admin's subtree's. Newest first, at most 100."""
    return await standing.list_standing_orders(session, actor)


@router.get("/{standing_id}", response_model=StandingOrderOut, responses=errors(401, 403, 404, 422))
async def get_standing_order(standing_id: ObjectId, session: Session, actor: CurrentUser) -> StandingOrderOut:
    return await standing.get_standing_order(session, actor, standing_id)


@router.get("/{standing_id}/occurrences", response_model=list[OccurrenceOut], responses=errors(401, 403, 404, 422))
async def list_occurrences(standing_id: ObjectId, session: Session, actor: CurrentUser) -> list[OccurrenceOut]:
    """Occurrences so far, oldest first: the order placed for each, or why none was."""
    return await standing.occurrences(session, actor, standing_id)


def _move_endpoint(move: Literal["pause", "resume", "end"], summary: str) -> None:
    async def endpoint(
        standing_id: ObjectId, session: Session, actor: CurrentUser, body: StandingReason | None = None
    ) -> StandingOrderOut:
        reason = body.reason if body is not None else None
        return await standing.change_status(session, actor, standing_id, move, reason)

    endpoint.__name__ = f"{move}_standing_order"
    router.add_api_route(
        f"/{{standing_id}}/{move}",
        endpoint,
        methods=["POST"],
        response_model=StandingOrderOut,
        responses=errors(401, 403, 404, 409, 422),
        summary=summary,
    )


_move_endpoint("pause", "暂停: no further occurrences are placed until resumed")
_move_endpoint("resume", "恢复: from the first occurrence still to come")
_move_endpoint("end", "终止: for good")
