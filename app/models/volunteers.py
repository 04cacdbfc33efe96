from __future__ import annotations

from sqlalchemy import ARRAY, CheckConstraint, Column, Float, ForeignKey, LargeBinary, String, Table, text
from sqlalchemy.orm import Mapped, mapped_column, validates

from app.crypto import EncryptedString, lookup_hash
from app.models.base import Base, CreatedAtMixin, IdMixin


class Volunteer(IdMixin, CreatedAtMixin, Base):
    """志愿者档案: real name, phone, skills, home unit, status."""

    __tablename__ = "volunteers"
    __table_args__ = (CheckConstraint("status IN ('active','suspended')", name="status"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    real_name: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(EncryptedString)  # encrypted at rest (app.crypto)
    # One profile per phone: the phone's lookup hash (app.crypto.lookup_hash), kept by ``_hash_phone``.
    phone_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    skills: Mapped[list[str]] = mapped_column(ARRAY(String(32)), server_default="{}")
    home_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    max_open_orders: Mapped[int] = mapped_column(server_default=text("3"))
    # Where the volunteer usually serves from (就近派单), optional.
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)
    # Reliability counters, bumped in the transaction of each accept/decline/release/expire.
    accepted_count: Mapped[int] = mapped_column(server_default=text("0"))
    declined_count: Mapped[int] = mapped_column(server_default=text("0"))
    released_count: Mapped[int] = mapped_column(server_default=text("0"))
    expired_count: Mapped[int] = mapped_column(server_default=text("0"))

    @validates("phone")
    def _hash_phone(self, key: str, phone: str) -> str:
        self.phone_hash = lookup_hash(phone)
        return phone


volunteer_categories = Table(
    "volunteer_categories",
    Base.metadata,
    Column("volunteer_id", ForeignKey("volunteers.id", ondelete="CASCADE"), primary_key=True),
    Column("category_id", ForeignKey("menu_categories.id", ondelete="CASCADE"), primary_key=True),
)


team_categories = Table(
    "team_categories",
    Base.metadata,
    Column("team_id", ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column("category_id", ForeignKey("menu_categories.id", ondelete="CASCADE"), primary_key=True),
)


class Team(IdMixin, CreatedAtMixin, Base):
    """志愿服务队 (总队/大队/中队): belongs to a unit, has a leader, members and categories it serves."""

    __tablename__ = "teams"

    unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    leader_volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("volunteers.id"))
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))


class TeamMember(Base):
    __tablename__ = "team_members"

    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(
        ForeignKey("volunteers.id", ondelete="CASCADE"), primary_key=True, index=True
    )
