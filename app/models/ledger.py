from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin


class HoursEntry(IdMixin, CreatedAtMixin, Base):
    """服务时长台账, append-only. ``service`` = 信用时长 recorded through a completed order;
    ``adjustment`` = an admin's audited correction of an order's hours; ``honor`` = 荣誉时长 entered
    by an admin with no order. The kinds are kept apart in every total."""

    __tablename__ = "hours_entries"
    __table_args__ = (
        CheckConstraint("kind IN ('service','adjustment','honor')", name="kind"),
        # 统计: an order's hours and volunteers, index-only; 荣誉时长 of a volunteer in a period.
        Index(
            "ix_hours_entries_order_id_covering",
            "order_id",
            postgresql_include=["kind", "hours", "volunteer_id", "verified"],
        ),
        Index(
            "ix_hours_entries_honor",
            "volunteer_id",
            "created_at",
            postgresql_include=["hours"],
            postgresql_where=text("kind = 'honor'"),
        ),
    )

    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    hours: Mapped[Decimal] = mapped_column(Numeric(7, 1))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))  # ix_hours_entries_order_id_covering
    record_id: Mapped[int | None] = mapped_column(ForeignKey("service_records.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # 未核验 when false: hours of a span whose presence nobody proved (app.services.presence).
    verified: Mapped[bool] = mapped_column(server_default=text("true"))
    # 活动: the sign-up whose check-in → check-out span this is (``order_id`` is then null).
    activity_signup_id: Mapped[int | None] = mapped_column(ForeignKey("activity_signups.id"), index=True)


class PointsEntry(IdMixin, CreatedAtMixin, Base):
    """积分台账, append-only; the balance is the sum and never goes negative (debits lock the volunteer)."""

    __tablename__ = "points_entries"
    __table_args__ = (CheckConstraint("kind IN ('earned','bonus','redemption','refund')", name="kind"),)

    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    delta: Mapped[int]
    reason: Mapped[str | None] = mapped_column(Text)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    redemption_id: Mapped[int | None] = mapped_column(ForeignKey("redemptions.id"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Goods(IdMixin, CreatedAtMixin, Base):
    """爱心超市 goods of a unit, with stock and a price in points."""

    __tablename__ = "goods"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock"),
        CheckConstraint("points_price > 0", name="points_price"),
    )

    unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(1000), server_default="")
    points_price: Mapped[int]
    stock: Mapped[int] = mapped_column(server_default=text("0"))
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))


class Redemption(IdMixin, CreatedAtMixin, Base):
    """兑换: pending until the unit's admin marks it collected, or cancels it (points refunded)."""

    __tablename__ = "redemptions"
    __table_args__ = (
        CheckConstraint("status IN ('pending','collected','cancelled')", name="status"),
        CheckConstraint("quantity > 0", name="quantity"),
    )

    goods_id: Mapped[int] = mapped_column(ForeignKey("goods.id"), index=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"), index=True)
    quantity: Mapped[int] = mapped_column(server_default=text("1"))
    points: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    handled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    handled_at: Mapped[datetime | None]
