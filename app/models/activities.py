"""活动招募: activities a 站 or 所 publishes, their time slots with a capacity each, and sign-ups."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ARRAY, CheckConstraint, Float, ForeignKey, Index, Numeric, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin


class Activity(IdMixin, CreatedAtMixin, Base):
    """活动 (宣讲, 义诊, 文艺演出 …) of a unit; volunteers of the unit's subtree may sign up.
    ``unit_path`` copies the unit's materialized path, as orders do, so scopes are one predicate."""

    __tablename__ = "activities"
    __table_args__ = (
        CheckConstraint("kind IN ('lecture','clinic','performance','other')", name="kind"),
        CheckConstraint("status IN ('published','cancelled')", name="status"),
        Index("ix_activities_unit_path_created_at", "unit_path", "created_at"),
    )

    unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"))
    unit_path: Mapped[str] = mapped_column(String(400))
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, server_default="")
    address: Mapped[str] = mapped_column(String(300))
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)
    required_skills: Mapped[list[str]] = mapped_column(ARRAY(String(32)), server_default="{}")
    status: Mapped[str] = mapped_column(String(16), server_default="published")
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # 取消: who cancelled it, when and why (``app.services.activities.cancel_activity``).
    cancelled_at: Mapped[datetime | None]
    cancelled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    cancel_reason: Mapped[str | None] = mapped_column(Text)


class ActivitySlot(IdMixin, Base):
    """时段 of an activity. ``confirmed`` counts confirmed sign-ups; every sign-up, cancellation and
    promotion locks the slot row first, and the check keeps the count within the capacity."""

    __tablename__ = "activity_slots"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="span"),
        CheckConstraint("capacity >= 1 AND confirmed >= 0 AND confirmed <= capacity", name="capacity"),
    )

    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    capacity: Mapped[int]
    confirmed: Mapped[int] = mapped_column(server_default=text("0"))


class ActivitySignup(IdMixin, CreatedAtMixin, Base):
    """报名: confirmed, waitlisted (候补, promoted in id order) or cancelled; then 签到 / 签退 with the
    proof of each (``app.services.presence``) and the hours credited at check-out."""

    __tablename__ = "activity_signups"
    __table_args__ = (
        CheckConstraint("status IN ('confirmed','waitlisted','cancelled')", name="status"),
        # One live sign-up per volunteer and slot.
        Index(
            "uq_activity_signups_live",
            "slot_id",
            "volunteer_id",
            unique=True,
            postgresql_where=text("status <> 'cancelled'"),
        ),
        Index("ix_activity_signups_waitlist", "slot_id", "id", postgresql_where=text("status = 'waitlisted'")),
    )

    slot_id: Mapped[int] = mapped_column(ForeignKey("activity_slots.id", ondelete="CASCADE"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    checked_in_at: Mapped[datetime | None]
    checked_in_proof: Mapped[str | None] = mapped_column(String(8))
    checked_out_at: Mapped[datetime | None]
    checked_out_proof: Mapped[str | None] = mapped_column(String(8))
    hours: Mapped[Decimal | None] = mapped_column(Numeric(5, 1))
    # 管理员确认到场: who confirmed presence and why (the audit an order keeps in its timeline).
    presence_confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    presence_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class PresenceCodeUse(Base):
    """One-time codes already used (签到码): a code of ``subject`` for time window ``window`` is taken
    once; the primary key makes a second use fail, whatever runs at the same time."""

    __tablename__ = "presence_code_uses"

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    window: Mapped[int] = mapped_column(primary_key=True)
    used_at: Mapped[datetime] = mapped_column(server_default=func.now())
