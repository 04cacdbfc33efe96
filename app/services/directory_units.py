"""管理后台 · 组织与菜单: units, menu categories and menu items, within the admin's subtree.

Also the scope helpers the people side (``directory_people``) shares: an object outside the caller's
subtree is 404 when addressed in the URL, and 422 when referenced from a request body.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.db import transaction
from app.domain import UnitLevel
from app.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.models import MenuCategory, MenuItem, OrgUnit
from app.schemas.directory import (
    CategoryCreate,
    CategoryOut,
    CategoryUpdate,
    ItemCreate,
    ItemOut,
    ItemUpdate,
    UnitCreate,
    UnitOut,
    UnitUpdate,
)
from app.services.scope import subtree

UNIQUE_VIOLATION = "23505"
PATH_MAX_LENGTH = 400  # org_units.path

# A child sits strictly below its parent: no 中心 inside a 站. 实践点 and 基地 are leaves.
LEVEL_RANK: dict[UnitLevel, int] = {
    UnitLevel.PROVINCE: 0,
    UnitLevel.CITY: 1,
    UnitLevel.CENTER: 2,
    UnitLevel.INSTITUTE: 3,
    UnitLevel.STATION: 4,
    UnitLevel.POINT: 5,
    UnitLevel.BASE: 5,
}
LEVEL_LABELS: dict[UnitLevel, str] = {
    UnitLevel.PROVINCE: "省",
    UnitLevel.CITY: "市",
    UnitLevel.CENTER: "中心",
    UnitLevel.INSTITUTE: "所",
    UnitLevel.STATION: "站",
    UnitLevel.POINT: "实践点",
    UnitLevel.BASE: "基地",
}


# --- scope helpers -------------------------------------------------------------------------------


def jurisdiction(actor: Actor) -> str:
    """The materialized path of the admin's unit: everything it may manage starts with it (管辖范围)."""
    if actor.unit_path is None:
        raise Forbidden("管理员账号未绑定单位")
    return actor.unit_path


async def unit_in_scope(session: AsyncSession, actor: Actor, unit_id: int, *, lock: bool = False) -> OrgUnit:
    """The unit addressed by the URL, or 404 when it does not exist or lies outside the subtree."""
    unit = await session.get(OrgUnit, unit_id, with_for_update=lock or None)
    if unit is None or not actor.administers(unit.path):
        raise NotFound("单位不存在")
    return unit


async def listing_scope(session: AsyncSession, actor: Actor, unit_id: int | None) -> str:
    """The subtree a list covers: ``unit_id`` and everything under it (404 outside scope), or the caller's."""
    if unit_id is None:
        return jurisdiction(actor)
    return (await unit_in_scope(session, actor, unit_id)).path


async def referenced_unit(
    session: AsyncSession, actor: Actor, unit_id: int, field: str, *, lock: bool = False
) -> OrgUnit:
    """An active unit named in a request body; 422 when missing, outside the subtree, or disabled."""
    unit = await session.get(OrgUnit, unit_id, with_for_update=lock or None)
    if unit is None or not actor.administers(unit.path):
        raise InvalidInput(f"单位 {unit_id} 不存在或不在管辖范围内", field=field)
    if not unit.is_active:
        raise InvalidInput(f"单位「{unit.name}」已停用", field=field)
    return unit


async def flush_unique(session: AsyncSession, message: str, **details: Any) -> None:
    """Flush; a unique violation (e.g. a concurrent insert of the same code) becomes a clean 409."""
    try:
        await session.flush()
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) == UNIQUE_VIOLATION:
            raise Conflict(message, **details) from exc
        raise


# --- units (组织架构) ------------------------------------------------------------------------------


async def list_units(session: AsyncSession, actor: Actor) -> list[UnitOut]:
    """The caller's unit and everything under it, active or not, parents before children."""
    async with transaction(session):
        units = await session.scalars(
            select(OrgUnit).where(subtree(OrgUnit.path, jurisdiction(actor))).order_by(OrgUnit.path)
        )
        return [UnitOut.model_validate(u) for u in units]


async def get_unit(session: AsyncSession, actor: Actor, unit_id: int) -> UnitOut:
    async with transaction(session):
        return UnitOut.model_validate(await unit_in_scope(session, actor, unit_id))


async def _ensure_unit_code_free(session: AsyncSession, code: str) -> None:
    if await session.scalar(select(exists().where(OrgUnit.code == code))):
        raise Conflict(f"单位编码 {code} 已存在", code=code)


async def create_unit(session: AsyncSession, actor: Actor, body: UnitCreate) -> UnitOut:
    """新增下级单位 under an active unit of the caller's subtree; the path is ``parent.path + "<id>."``."""
    async with transaction(session):
        # The parent row stays locked so a concurrent 停用 cannot leave an active child under it.
        parent = await referenced_unit(session, actor, body.parent_id, "parent_id", lock=True)
        parent_level = UnitLevel(parent.level)
        if LEVEL_RANK[body.level] <= LEVEL_RANK[parent_level]:
            raise InvalidInput(
                f"{LEVEL_LABELS[parent_level]}下不能设立{LEVEL_LABELS[body.level]}",
                field="level",
                parent_level=parent_level.value,
            )
        await _ensure_unit_code_free(session, body.code)
        unit = OrgUnit(
            parent_id=parent.id,
            level=body.level.value,
            name=body.name,
            code=body.code,
            address=body.address,
            depth=parent.depth + 1,
            # Unique stand-in until the id is known: concurrent creations never collide on it.
            path=f"{parent.path}~{uuid.uuid4().hex}",
        )
        session.add(unit)
        await flush_unique(session, f"单位编码 {body.code} 已存在", code=body.code)
        unit.path = f"{parent.path}{unit.id}."
        if len(unit.path) > PATH_MAX_LENGTH:
            raise InvalidInput("单位层级过深", field="parent_id")
        await session.flush()
        return UnitOut.model_validate(unit)


async def update_unit(session: AsyncSession, actor: Actor, unit_id: int, body: UnitUpdate) -> UnitOut:
    """Rename, recode, move the address, or 停用/启用 a unit below the caller (never its own)."""
    changes = body.model_dump(exclude_unset=True)
    async with transaction(session):
        unit = await unit_in_scope(session, actor, unit_id, lock=True)
        if "code" in changes and changes["code"] != unit.code:
            await _ensure_unit_code_free(session, changes["code"])
        if "is_active" in changes and changes["is_active"] != unit.is_active:
            await _check_activation(session, actor, unit, active=changes["is_active"])
        for name, value in changes.items():
            setattr(unit, name, value)
        await flush_unique(session, "单位编码已存在", code=unit.code)
        return UnitOut.model_validate(unit)


async def _check_activation(session: AsyncSession, actor: Actor, unit: OrgUnit, *, active: bool) -> None:
    if unit.id == actor.unit_id:
        raise Forbidden("不能停用或启用本单位, 请由上级单位管理员操作")
    if active:
        parent = await session.get(OrgUnit, unit.parent_id) if unit.parent_id else None
        if parent is not None and not parent.is_active:
            raise Conflict("上级单位已停用, 请先启用上级单位")
        return
    active_child = await session.scalar(
        select(exists().where(OrgUnit.parent_id == unit.id, OrgUnit.is_active.is_(True)))
    )
    if active_child:
        raise Conflict("该单位仍有启用中的下级单位, 请先停用下级单位")


# --- menu categories (菜单类别, shared by the whole deployment) ---------------------------------


async def _require_top_admin(session: AsyncSession, actor: Actor) -> None:
    unit = await session.get(OrgUnit, actor.unit_id) if actor.unit_id is not None else None
    if unit is None or unit.parent_id is not None:
        raise Forbidden("仅顶级单位的管理员可以维护菜单类别")


async def _ensure_category_free(
    session: AsyncSession, name: str | None, code: str | None, except_id: int | None = None
) -> None:
    clauses = []
    if name is not None:
        clauses.append(MenuCategory.name == name)
    if code is not None:
        clauses.append(MenuCategory.code == code)
    if not clauses:
        return
    query = select(MenuCategory).where(or_(*clauses))
    if except_id is not None:
        query = query.where(MenuCategory.id != except_id)
    taken = (await session.scalars(query.limit(1))).first()
    if taken is not None:
        field = "name" if taken.name == name else "code"
        raise Conflict(f"菜单类别{'名称' if field == 'name' else '编码'}已存在", field=field)


async def list_categories(session: AsyncSession) -> list[CategoryOut]:
    async with transaction(session):
        categories = await session.scalars(select(MenuCategory).order_by(MenuCategory.sort_order, MenuCategory.id))
        return [CategoryOut.model_validate(c) for c in categories]


async def get_category(session: AsyncSession, category_id: int) -> CategoryOut:
    async with transaction(session):
        category = await session.get(MenuCategory, category_id)
        if category is None:
            raise NotFound("菜单类别不存在")
        return CategoryOut.model_validate(category)


async def create_category(session: AsyncSession, actor: Actor, body: CategoryCreate) -> CategoryOut:
    """新增菜单类别: only the top unit's admins, since every unit's menu uses the same categories."""
    async with transaction(session):
        await _require_top_admin(session, actor)
        await _ensure_category_free(session, body.name, body.code)
        category = MenuCategory(name=body.name, code=body.code, sort_order=body.sort_order)
        session.add(category)
        await flush_unique(session, "菜单类别名称或编码已存在")
        return CategoryOut.model_validate(category)


async def update_category(session: AsyncSession, actor: Actor, category_id: int, body: CategoryUpdate) -> CategoryOut:
    """Rename, recode or reorder a category (top unit's admins only)."""
    changes = body.model_dump(exclude_unset=True)
    async with transaction(session):
        await _require_top_admin(session, actor)
        category = await session.get(MenuCategory, category_id, with_for_update=True)
        if category is None:
            raise NotFound("菜单类别不存在")
        await _ensure_category_free(session, changes.get("name"), changes.get("code"), except_id=category.id)
        for name, value in changes.items():
            setattr(category, name, value)
        await flush_unique(session, "菜单类别名称或编码已存在")
        return CategoryOut.model_validate(category)


async def _referenced_category(session: AsyncSession, category_id: int) -> MenuCategory:
    category = await session.get(MenuCategory, category_id)
    if category is None:
        raise InvalidInput(f"菜单类别 {category_id} 不存在", field="category_id")
    return category


# --- menu items (菜单项, owned by a unit) ---------------------------------------------------------


async def _item_in_scope(session: AsyncSession, actor: Actor, item_id: int, *, lock: bool = False) -> MenuItem:
    query = (
        select(MenuItem)
        .join(OrgUnit, OrgUnit.id == MenuItem.unit_id)
        .where(MenuItem.id == item_id, subtree(OrgUnit.path, jurisdiction(actor)))
    )
    if lock:
        query = query.with_for_update(of=MenuItem)
    item = (await session.scalars(query)).one_or_none()
    if item is None:
        raise NotFound("菜单项不存在")
    return item


async def list_items(session: AsyncSession, actor: Actor, unit_id: int | None) -> list[ItemOut]:
    """Items owned by units of the caller's subtree (or of ``unit_id`` and everything under it)."""
    async with transaction(session):
        path = await listing_scope(session, actor, unit_id)
        items = await session.scalars(
            select(MenuItem)
            .join(OrgUnit, OrgUnit.id == MenuItem.unit_id)
            .where(subtree(OrgUnit.path, path))
            .order_by(OrgUnit.path, MenuItem.id)
        )
        return [ItemOut.model_validate(i) for i in items]


async def get_item(session: AsyncSession, actor: Actor, item_id: int) -> ItemOut:
    async with transaction(session):
        return ItemOut.model_validate(await _item_in_scope(session, actor, item_id))


async def create_item(session: AsyncSession, actor: Actor, body: ItemCreate) -> ItemOut:
    """新增菜单项 for an active unit of the caller's subtree (its stations see it too)."""
    async with transaction(session):
        unit = await referenced_unit(session, actor, body.unit_id, "unit_id")
        await _referenced_category(session, body.category_id)
        item = MenuItem(
            unit_id=unit.id,
            category_id=body.category_id,
            name=body.name,
            description=body.description,
            auto_approve=body.auto_approve,
        )
        session.add(item)
        await session.flush()
        return ItemOut.model_validate(item)


async def update_item(session: AsyncSession, actor: Actor, item_id: int, body: ItemUpdate) -> ItemOut:
    """Edit a menu item; ``is_active=false`` takes it off the menu (下架) without losing its orders."""
    changes = body.model_dump(exclude_unset=True)
    async with transaction(session):
        item = await _item_in_scope(session, actor, item_id, lock=True)
        if "category_id" in changes:
            await _referenced_category(session, changes["category_id"])
        for name, value in changes.items():
            setattr(item, name, value)
        await session.flush()
        return ItemOut.model_validate(item)
