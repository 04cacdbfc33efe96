"""常态化服务: standing orders (one recurring need, e.g. "every Tuesday 9:00 visit 王奶奶") and the
occurrences the sweeper spawned from them, each an ordinary order."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto import EncryptedString
from app.models.base import Base, CreatedAtMixin, IdMixin


class StandingOrder(IdMixin, CreatedAtMixin, Base):
    """常态化服务单: an order template and a recurrence rule (RFC 5545 RRULE, local time Asia/Shanghai).

    ``next_occurrence_at`` is the next occurrence not yet spawned and ``next_spawn_at`` when it is due
    to be spawned (the occurrence less the lead time); the sweeper reads ``ix_standing_orders_due``.
    """

    __tablename__ = "standing_orders"
    __table_args__ = (
        CheckConstraint("status IN ('active','paused','ended','finished')", name="status"),
        CheckConstraint("beneficiaries >= 1", name="beneficiaries"),
        CheckConstraint("duration_minutes BETWEEN 15 AND 1440", name="duration_minutes"),
        CheckConstraint("lead_minutes BETWEEN 0 AND 20160", name="lead_minutes"),
        Index("ix_standing_orders_due", "next_spawn_at", postgresql_where=text("status = 'active'")),
        Index("ix_standing_orders_resident_id", "resident_id"),
        Index("ix_standing_orders_placed_by_id", "placed_by_id"),
    )

    resident_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    placed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id"))
    unit_path: Mapped[str] = mapped_column(String(400))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("menu_items.id"))
    title: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, server_default="")
    address: Mapped[str] = mapped_column(String(300))
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)
    contact_name: Mapped[str] = mapped_column(String(64))
    contact_phone: Mapped[str] = mapped_column(EncryptedString)  # encrypted at rest (app.crypto)
    beneficiaries: Mapped[int] = mapped_column(server_default=text("1"))
    channel: Mapped[str | None] = mapped_column(String(16))
    # The schedule: the RRULE (without DTSTART) applied from ``starts_at`` in Asia/Shanghai local time.
    rrule: Mapped[str] = mapped_column(String(500))
    starts_at: Mapped[datetime]
    duration_minutes: Mapped[int] = mapped_column(server_default=text("60"))
    lead_minutes: Mapped[int]
    keep_volunteer: Mapped[bool] = mapped_column(server_default=text("false"))
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    next_occurrence_at: Mapped[datetime | None]
    next_spawn_at: Mapped[datetime | None]
    last_occurrence_at: Mapped[datetime | None]  # the latest occurrence spawned (or skipped)
    status_reason: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(server_default=text("1"))
    updated_at: Mapped[datetime]


class StandingOccurrence(IdMixin, CreatedAtMixin, Base):
    """One occurrence of a standing order: the order spawned for it, or why none was (``skipped``).

    ``(standing_order_id, occurrence_at)`` is unique: however many sweepers run, on however many
    instances, an occurrence is claimed once (``INSERT … ON CONFLICT DO NOTHING``) in the transaction
    that places its order."""

    __tablename__ = "standing_occurrences"
    __table_args__ = (UniqueConstraint("standing_order_id", "occurrence_at", name="uq_standing_occurrences_slot"),)

    standing_order_id: Mapped[int] = mapped_column(ForeignKey("standing_orders.id"))
    occurrence_at: Mapped[datetime]
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), unique=True)
    skipped: Mapped[str | None] = mapped_column(String(300))  # why no order was placed
