from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto import EncryptedString
from app.models.base import Base, CreatedAtMixin, IdMixin


class User(IdMixin, CreatedAtMixin, Base):
    """A login: 群众 (resident), 志愿者 (volunteer) or 工作人员 (admin bound to one unit)."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('resident','volunteer','admin')", name="role"),)

    username: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    wechat_openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # admin: jurisdiction; resident: home 站; volunteer: home unit (mirrors the volunteer profile).
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    display_name: Mapped[str] = mapped_column(String(64), server_default="")
    phone: Mapped[str | None] = mapped_column(EncryptedString)  # encrypted at rest (app.crypto)
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))
    # Bumped on password change or disable: every token issued before is void.
    token_version: Mapped[int] = mapped_column(server_default=text("0"))
