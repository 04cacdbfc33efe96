from __future__ import annotations

from sqlalchemy import ARRAY, ForeignKey, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin


class MenuCategory(IdMixin, CreatedAtMixin, Base):
    """服务菜单类别 (理论宣讲, 文化惠民 …), shared by the whole deployment."""

    __tablename__ = "menu_categories"

    name: Mapped[str] = mapped_column(String(50), unique=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    sort_order: Mapped[int] = mapped_column(server_default=text("0"))


class MenuItem(IdMixin, CreatedAtMixin, Base):
    """服务菜单项, owned by a unit; a unit's menu is its ancestors' items plus its own."""

    __tablename__ = "menu_items"

    unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("menu_categories.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(1000), server_default="")
    auto_approve: Mapped[bool] = mapped_column(server_default=text("false"))
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))
    # 技能与资质要求: skills raise a candidate's score (``app.services.candidates``); a volunteer
    # without a valid qualification of every kind listed is not offered the order and cannot take it.
    required_skills: Mapped[list[str]] = mapped_column(ARRAY(String(32)), server_default="{}")
    required_qualifications: Mapped[list[str]] = mapped_column(ARRAY(String(32)), server_default="{}")
