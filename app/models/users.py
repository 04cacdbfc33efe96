from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, Index, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column, validates

from app.crypto import EncryptedString, lookup_hash
from app.models.base import Base, CreatedAtMixin, IdMixin


class User(IdMixin, CreatedAtMixin, Base):
    """A login: 群众 (resident), 志愿者 (volunteer) or 工作人员 (admin bound to one unit)."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('resident','volunteer','admin')", name="role"),
        # One resident per phone (导入按手机号更新); volunteers' logins mirror their profile's phone.
        Index("uq_users_resident_phone_hash", "phone_hash", unique=True, postgresql_where=text("role = 'resident'")),
    )

    username: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    wechat_openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # admin: jurisdiction; resident: home 站; volunteer: home unit (mirrors the volunteer profile).
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    display_name: Mapped[str] = mapped_column(String(64), server_default="")
    phone: Mapped[str | None] = mapped_column(EncryptedString)  # encrypted at rest (app.crypto)
    phone_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))  # app.crypto.lookup_hash, by ``_hash_phone``
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))
    # Bumped on password change or disable: every token issued before is void.
    token_version: Mapped[int] = mapped_column(server_default=text("0"))

    @validates("phone")
    def _hash_phone(self, key: str, phone: str | None) -> str | None:
        self.phone_hash = lookup_hash(phone)
        return phone
