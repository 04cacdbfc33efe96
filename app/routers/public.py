from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.db import Session
from app.routers.deps import errors
from app.schemas.common import Id
from app.schemas.directory import MenuOut, UnitOut
from app.services import catalog

router = APIRouter(tags=["public"])


@router.get("/units", response_model=list[UnitOut], responses=errors(404, 422))
async def list_units(
    session: Session,
    parent_id: Annotated[Id | None, Query(description="only the direct children of this unit")] = None,
) -> list[UnitOut]:
    """组织架构: active 中心/所/站 (whole tree, or one unit's children)."""
    return await catalog.list_units(session, parent_id)


@router.get("/menu", response_model=MenuOut, responses=errors(404, 422))
async def menu(session: Session, unit_id: Annotated[Id, Query()]) -> MenuOut:
    """服务菜单 of a unit: its ancestors' items plus its own, grouped by category."""
    return await catalog.menu_for_unit(session, unit_id)
