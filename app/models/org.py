from __future__ import annotations

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin


class OrgUnit(IdMixin, CreatedAtMixin, Base):
    """组织单元: 省/市/中心/所/站/实践点/基地, a tree of any depth.

    ``path`` is the materialized path of ids, ``"1.5.12."``; "this unit and everything under it"
    is ``path LIKE '1.5.%'``, served by a ``text_pattern_ops`` index.
    """

    __tablename__ = "org_units"
    __table_args__ = (
        Index("ix_org_units_path_pattern", "path", postgresql_ops={"path": "text_pattern_ops"}),
        CheckConstraint("level IN ('province','city','center','institute','station','point','base')", name="level"),
    )

    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    level: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    code: Mapped[str] = mapped_column(String(40), unique=True)
    path: Mapped[str] = mapped_column(String(400), unique=True)
    depth: Mapped[int] = mapped_column(server_default=text("0"))
    address: Mapped[str | None] = mapped_column(String(200))
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))


def ancestor_paths(path: str) -> list[str]:
    """``"1.5.12."`` → ``["1.", "1.5.", "1.5.12."]``: the paths of a unit and all its ancestors."""
    parts = path.rstrip(".").split(".")
    return [".".join(parts[: i + 1]) + "." for i in range(len(parts))]
