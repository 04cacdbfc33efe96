from __future__ import annotations

from sqlalchemy import CheckConstraint, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin


class PiiAccess(IdMixin, CreatedAtMixin, Base):
    """个人信息访问记录: an admin saw a phone number unmasked (who, when, through which route): an
    order's contact phone (``order_id``) or a volunteer's own (``volunteer_id``).

    No foreign keys: an audit record outlives whatever it names and never holds it up, and every
    transition by an admin writes one (see ``app.models``)."""

    __tablename__ = "pii_access_log"
    __table_args__ = (
        Index("ix_pii_access_log_user_id_created_at", "user_id", "created_at"),
        # A row names an order or a volunteer: each row is indexed under the one it names.
        Index("ix_pii_access_log_order_id", "order_id", postgresql_where=text("order_id IS NOT NULL")),
        Index("ix_pii_access_log_volunteer_id", "volunteer_id", postgresql_where=text("volunteer_id IS NOT NULL")),
        CheckConstraint("(order_id IS NULL) <> (volunteer_id IS NULL)", name="subject"),
    )

    user_id: Mapped[int]
    order_id: Mapped[int | None]
    volunteer_id: Mapped[int | None]
    field: Mapped[str] = mapped_column(String(32))
    route: Mapped[str] = mapped_column(String(64))
