from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from app.auth import CurrentVolunteer
from app.db import Session, read_only
from app.routers.deps import errors
from app.schemas.common import Page
from app.schemas.orders import OrderOut
from app.schemas.volunteers import VolunteerMe
from app.services import volunteering

router = APIRouter(prefix="/volunteer", tags=["volunteer"])


@router.get("/tasks", response_model=Page[OrderOut], responses=errors(401, 403, 422))
@read_only
async def tasks(
    session: Session,
    actor: CurrentVolunteer,
    kind: Literal["assigned", "pool"] = "assigned",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Page[OrderOut]:
    """我的任务 (``assigned``) or 抢单池 (``pool``)."""
    return await volunteering.tasks(session, actor, kind, cursor, limit)


@router.get("/me", response_model=VolunteerMe, responses=errors(401, 403, 404))
async def me(session: Session, actor: CurrentVolunteer) -> VolunteerMe:
    """My profile: 服务时长, 积分, 星级 and progress to the next star."""
    return await volunteering.volunteer_me(session, actor)
