from __future__ import annotations

from datetime import datetime

from sqlalchemy import ARRAY, CheckConstraint, ForeignKey, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class UnitPolicy(Base):
    """派单策略 of a unit: deadlines and auto-dispatch. A unit without a row inherits its nearest
    ancestor's policy, and the root falls back to the defaults in ``app.services.policies``."""

    __tablename__ = "unit_policies"
    __table_args__ = (
        CheckConstraint("dispatch_mode IN ('manual','auto_assign','auto_pool')", name="dispatch_mode"),
        CheckConstraint(
            "review_hours > 0 AND accept_minutes > 0 AND pool_hours > 0 AND auto_close_days > 0 "
            "AND points_per_hour >= 0",
            name="positive",
        ),
        CheckConstraint(
            "presence_proofs <@ ARRAY['code','gps','admin']::varchar[] "
            "AND presence_radius_m > 0 AND presence_max_accuracy_m > 0",
            name="presence",
        ),
    )

    unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), primary_key=True)
    review_hours: Mapped[int] = mapped_column(server_default=text("24"))  # 审核时限
    accept_minutes: Mapped[int] = mapped_column(server_default=text("120"))  # 接单时限
    pool_hours: Mapped[int] = mapped_column(server_default=text("24"))  # 抢单池开放时长
    auto_close_days: Mapped[int] = mapped_column(server_default=text("7"))  # 超期未评自动关闭
    dispatch_mode: Mapped[str] = mapped_column(String(16), server_default="manual")
    points_per_hour: Mapped[int] = mapped_column(server_default=text("10"))  # 积分/小时
    # 签到核验 (app.services.presence): the proofs of presence the unit accepts, whether a check-in
    # with none is allowed (its hours are then 未核验), and the GPS radius and worst accuracy accepted.
    presence_proofs: Mapped[list[str]] = mapped_column(ARRAY(String(8)), server_default="{code,gps,admin}")
    allow_unproven: Mapped[bool] = mapped_column(server_default=text("true"))
    presence_radius_m: Mapped[int] = mapped_column(server_default=text("300"))
    presence_max_accuracy_m: Mapped[int] = mapped_column(server_default=text("100"))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
