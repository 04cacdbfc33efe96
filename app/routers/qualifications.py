"""管理后台 · 技能与资质: what menu items require, what volunteers hold (recorded = verified by the admin).

Objects outside the caller's subtree answer 404."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi import status as http_status

from app.auth import CurrentAdmin
from app.db import Session
from app.routers.deps import ObjectId, errors
from app.schemas.directory import ItemOut
from app.schemas.qualifications import ItemRequirements, QualificationIn, QualificationOut
from app.services import qualifications

router = APIRouter(prefix="/admin", tags=["admin"])

Kind = Annotated[str, Path(min_length=1, max_length=32)]


@router.put("/menu/items/{item_id}/requirements", response_model=ItemOut, responses=errors(401, 403, 404, 422))
async def set_item_requirements(
    item_id: ObjectId, body: ItemRequirements, session: Session, actor: CurrentAdmin
) -> ItemOut:
    """技能与资质要求 of a menu item: skills raise a candidate's score; without a valid qualification of
    every kind listed a volunteer is not offered the order and cannot accept or grab it."""
    return await qualifications.set_item_requirements(session, actor, item_id, body)


@router.get(
    "/volunteers/{volunteer_id}/qualifications",
    response_model=list[QualificationOut],
    responses=errors(401, 403, 404, 422),
)
async def list_qualifications(volunteer_id: ObjectId, session: Session, actor: CurrentAdmin) -> list[QualificationOut]:
    return await qualifications.list_qualifications(session, actor, volunteer_id)


@router.put(
    "/volunteers/{volunteer_id}/qualifications",
    response_model=QualificationOut,
    responses=errors(401, 403, 404, 422),
)
async def record_qualification(
    volunteer_id: ObjectId, body: QualificationIn, session: Session, actor: CurrentAdmin
) -> QualificationOut:
    """Record a qualification the admin has checked (certificate seen): one per kind, a renewal replaces it."""
    return await qualifications.record_qualification(session, actor, volunteer_id, body)


@router.delete(
    "/volunteers/{volunteer_id}/qualifications/{kind}",
    status_code=http_status.HTTP_204_NO_CONTENT,
    responses=errors(401, 403, 404, 422),
)
async def remove_qualification(volunteer_id: ObjectId, kind: Kind, session: Session, actor: CurrentAdmin) -> None:
    await qualifications.remove_qualification(session, actor, volunteer_id, kind)
