"""管理后台 · 基础数据: units, menu categories and items, teams, volunteers and admins.

Every endpoint needs an admin; objects outside the caller's subtree answer 404, ids in a body that
are outside it answer 422. The rules live in ``app.services.directory_units`` / ``directory_people``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import status as http_status

from app.auth import CurrentAdmin
from app.db import Session
from app.routers.deps import ObjectId, errors
from app.schemas.common import Id, Page
from app.schemas.directory import (
    AdminCreate,
    AdminOut,
    AdminUpdate,
    CategoryCreate,
    CategoryOut,
    CategoryUpdate,
    ItemCreate,
    ItemOut,
    ItemUpdate,
    TeamCreate,
    TeamMembersIn,
    TeamOut,
    TeamUpdate,
    UnitCreate,
    UnitOut,
    UnitUpdate,
    VolunteerCreate,
    VolunteerOut,
    VolunteerStatus,
    VolunteerUpdate,
)
from app.services import directory_people as people
from app.services import directory_units as units

router = APIRouter(prefix="/admin", tags=["admin"])

UnitFilter = Annotated[Id | None, Query(description="this unit and everything under it")]
CREATED = http_status.HTTP_201_CREATED

# --- units ----------------------------------------------------------------------------------------


@router.get("/units", response_model=list[UnitOut], responses=errors(401, 403))
async def list_units(session: Session, actor: CurrentAdmin) -> list[UnitOut]:
    """组织架构: the caller's unit and everything under it (停用 ones included), parents first."""
    return await units.list_units(session, actor)


@router.post("/units", response_model=UnitOut, status_code=CREATED, responses=errors(401, 403, 409, 422))
async def create_unit(body: UnitCreate, session: Session, actor: CurrentAdmin) -> UnitOut:
    """新增下级单位 under a unit of the caller's subtree; ``code`` is unique."""
    return await units.create_unit(session, actor, body)


@router.get("/units/{unit_id}", response_model=UnitOut, responses=errors(401, 403, 404, 422))
async def get_unit(unit_id: ObjectId, session: Session, actor: CurrentAdmin) -> UnitOut:
    return await units.get_unit(session, actor, unit_id)


@router.patch("/units/{unit_id}", response_model=UnitOut, responses=errors(401, 403, 404, 409, 422))
async def update_unit(unit_id: ObjectId, body: UnitUpdate, session: Session, actor: CurrentAdmin) -> UnitOut:
    """Edit a unit; ``is_active=false`` 停用 (no hard delete). The parent cannot change."""
    return await units.update_unit(session, actor, unit_id, body)


# --- menu -----------------------------------------------------------------------------------------


@router.get("/menu/categories", response_model=list[CategoryOut], responses=errors(401, 403))
async def list_categories(session: Session, _: CurrentAdmin) -> list[CategoryOut]:
    """菜单类别, shared by every unit."""
    return await units.list_categories(session)


@router.post("/menu/categories", response_model=CategoryOut, status_code=CREATED, responses=errors(401, 403, 409, 422))
async def create_category(body: CategoryCreate, session: Session, actor: CurrentAdmin) -> CategoryOut:
    """新增菜单类别 (admins of the top unit only)."""
    return await units.create_category(session, actor, body)


@router.get("/menu/categories/{category_id}", response_model=CategoryOut, responses=errors(401, 403, 404, 422))
async def get_category(category_id: ObjectId, session: Session, _: CurrentAdmin) -> CategoryOut:
    return await units.get_category(session, category_id)


@router.patch("/menu/categories/{category_id}", response_model=CategoryOut, responses=errors(401, 403, 404, 409, 422))
async def update_category(
    category_id: ObjectId, body: CategoryUpdate, session: Session, actor: CurrentAdmin
) -> CategoryOut:
    """Edit a category (admins of the top unit only)."""
    return await units.update_category(session, actor, category_id, body)


@router.get("/menu/items", response_model=list[ItemOut], responses=errors(401, 403, 404, 422))
async def list_items(session: Session, actor: CurrentAdmin, unit_id: UnitFilter = None) -> list[ItemOut]:
    """菜单项 owned by units of the caller's subtree, 下架 ones included."""
    return await units.list_items(session, actor, unit_id)


@router.post("/menu/items", response_model=ItemOut, status_code=CREATED, responses=errors(401, 403, 422))
async def create_item(body: ItemCreate, session: Session, actor: CurrentAdmin) -> ItemOut:
    """新增菜单项 for a unit of the caller's subtree."""
    return await units.create_item(session, actor, body)


@router.get("/menu/items/{item_id}", response_model=ItemOut, responses=errors(401, 403, 404, 422))
async def get_item(item_id: ObjectId, session: Session, actor: CurrentAdmin) -> ItemOut:
    return await units.get_item(session, actor, item_id)


@router.patch("/menu/items/{item_id}", response_model=ItemOut, responses=errors(401, 403, 404, 422))
async def update_item(item_id: ObjectId, body: ItemUpdate, session: Session, actor: CurrentAdmin) -> ItemOut:
    """Edit a menu item; ``is_active=false`` takes it off the menu (下架)."""
    return await units.update_item(session, actor, item_id, body)


# --- teams ----------------------------------------------------------------------------------------


@router.get("/teams", response_model=list[TeamOut], responses=errors(401, 403, 404, 422))
async def list_teams(session: Session, actor: CurrentAdmin, unit_id: UnitFilter = None) -> list[TeamOut]:
    """志愿服务队 of units in the caller's subtree, with members and categories served."""
    return await people.list_teams(session, actor, unit_id)


@router.post("/teams", response_model=TeamOut, status_code=CREATED, responses=errors(401, 403, 422))
async def create_team(body: TeamCreate, session: Session, actor: CurrentAdmin) -> TeamOut:
    """组建服务队; the leader, if given, becomes its first member."""
    return await people.create_team(session, actor, body)


@router.get("/teams/{team_id}", response_model=TeamOut, responses=errors(401, 403, 404, 422))
async def get_team(team_id: ObjectId, session: Session, actor: CurrentAdmin) -> TeamOut:
    return await people.get_team(session, actor, team_id)


@router.patch("/teams/{team_id}", response_model=TeamOut, responses=errors(401, 403, 404, 422))
async def update_team(team_id: ObjectId, body: TeamUpdate, session: Session, actor: CurrentAdmin) -> TeamOut:
    """Edit a team; ``category_ids`` replaces the categories it serves."""
    return await people.update_team(session, actor, team_id, body)


@router.put("/teams/{team_id}/members", response_model=TeamOut, responses=errors(401, 403, 404, 422))
async def replace_members(team_id: ObjectId, body: TeamMembersIn, session: Session, actor: CurrentAdmin) -> TeamOut:
    """设置队员: the list replaces the members and must include the leader."""
    return await people.replace_members(session, actor, team_id, body)


# --- volunteers -----------------------------------------------------------------------------------


@router.get("/volunteers", response_model=Page[VolunteerOut], responses=errors(401, 403, 404, 422))
async def list_volunteers(
    session: Session,
    actor: CurrentAdmin,
    unit_id: UnitFilter = None,
    status: VolunteerStatus | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[VolunteerOut]:
    """志愿者 whose home unit lies in the caller's subtree, newest first, keyset-paginated."""
    return await people.list_volunteers(session, actor, unit_id=unit_id, status=status, cursor=cursor, limit=limit)


@router.post("/volunteers", response_model=VolunteerOut, status_code=CREATED, responses=errors(401, 403, 409, 422))
async def create_volunteer(body: VolunteerCreate, session: Session, actor: CurrentAdmin) -> VolunteerOut:
    """志愿者注册: creates the login and the profile together; ``username`` is unique."""
    return await people.create_volunteer(session, actor, body)


@router.get("/volunteers/{volunteer_id}", response_model=VolunteerOut, responses=errors(401, 403, 404, 422))
async def get_volunteer(volunteer_id: ObjectId, session: Session, actor: CurrentAdmin) -> VolunteerOut:
    return await people.get_volunteer(session, actor, volunteer_id)


@router.patch("/volunteers/{volunteer_id}", response_model=VolunteerOut, responses=errors(401, 403, 404, 422))
async def update_volunteer(
    volunteer_id: ObjectId, body: VolunteerUpdate, session: Session, actor: CurrentAdmin
) -> VolunteerOut:
    """Edit a profile; ``status=suspended`` 暂停接单 (the volunteer can still log in)."""
    return await people.update_volunteer(session, actor, volunteer_id, body)


# --- admins ---------------------------------------------------------------------------------------


@router.get("/admins", response_model=list[AdminOut], responses=errors(401, 403))
async def list_admins(session: Session, actor: CurrentAdmin) -> list[AdminOut]:
    """管理员 of units in the caller's subtree."""
    return await people.list_admins(session, actor)


@router.post("/admins", response_model=AdminOut, status_code=CREATED, responses=errors(401, 403, 409, 422))
async def create_admin(body: AdminCreate, session: Session, actor: CurrentAdmin) -> AdminOut:
    """新增管理员 for a unit of the caller's subtree; ``username`` is unique."""
    return await people.create_admin(session, actor, body)


@router.get("/admins/{user_id}", response_model=AdminOut, responses=errors(401, 403, 404, 422))
async def get_admin(user_id: ObjectId, session: Session, actor: CurrentAdmin) -> AdminOut:
    return await people.get_admin(session, actor, user_id)


@router.patch("/admins/{user_id}", response_model=AdminOut, responses=errors(401, 403, 404, 422))
async def update_admin(user_id: ObjectId, body: AdminUpdate, session: Session, actor: CurrentAdmin) -> AdminOut:
    """Rename, reset the password, or 停用/启用 an admin; the last two void its tokens at once."""
    return await people.update_admin(session, actor, user_id, body)
