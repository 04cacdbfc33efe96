"""Public reads: the unit tree and a unit's service menu (县级菜单 + 本站特色菜单)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import transaction
from app.errors import NotFound
from app.models import MenuCategory, MenuItem, OrgUnit
from app.models.org import ancestor_paths
from app.schemas.directory import CategoryOut, ItemOut, MenuOut, MenuSection, UnitOut


async def list_units(session: AsyncSession, parent_id: int | None) -> list[UnitOut]:
    async with transaction(session):
        query = select(OrgUnit).where(OrgUnit.is_active.is_(True)).order_by(OrgUnit.path)
        if parent_id is not None:
            if await session.get(OrgUnit, parent_id) is None:
                raise NotFound("单位不存在")
            query = query.where(OrgUnit.parent_id == parent_id)
        return [UnitOut.model_validate(u) for u in (await session.execute(query)).scalars()]


async def menu_for_unit(session: AsyncSession, unit_id: int) -> MenuOut:
    """A unit sees the active items of its ancestors and its own, grouped by category."""
    async with transaction(session):
        unit = await session.get(OrgUnit, unit_id)
        if unit is None or not unit.is_active:
            raise NotFound("单位不存在")
        rows = (
            await session.execute(
                select(MenuItem, MenuCategory)
                .join(MenuCategory, MenuCategory.id == MenuItem.category_id)
                .join(OrgUnit, OrgUnit.id == MenuItem.unit_id)
                .where(MenuItem.is_active.is_(True), OrgUnit.path.in_(ancestor_paths(unit.path)))
                .order_by(MenuCategory.sort_order, MenuCategory.id, OrgUnit.depth, MenuItem.id)
            )
        ).all()
    sections: dict[int, MenuSection] = {}
    for item, category in rows:
        section = sections.setdefault(category.id, MenuSection(category=CategoryOut.model_validate(category), items=[]))
        section.items.append(ItemOut.model_validate(item))
    return MenuOut(unit_id=unit_id, sections=list(sections.values()))
