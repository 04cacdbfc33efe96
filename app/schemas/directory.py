"""Units, menu, teams, volunteers and admins as the API shows them."""

from __future__ import annotations

from app.domain import UnitLevel
from app.schemas.common import Schema


class UnitOut(Schema):
    id: int
    parent_id: int | None
    level: UnitLevel
    name: str
    code: str
    depth: int
    address: str | None
    is_active: bool


class CategoryOut(Schema):
    id: int
    name: str
    code: str
    sort_order: int


class ItemOut(Schema):
    id: int
    unit_id: int
    category_id: int
    name: str
    description: str
    auto_approve: bool
    is_active: bool


class MenuSection(Schema):
    category: CategoryOut
    items: list[ItemOut]


class MenuOut(Schema):
    unit_id: int
    sections: list[MenuSection]
