from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin


class IdempotencyRecord(CreatedAtMixin, Base):
    """The first response to a request carrying ``Idempotency-Key``, replayed on retries."""

    __tablename__ = "idempotency_records"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int]
    response: Mapped[dict[str, Any]] = mapped_column(JSONB)


class OutboxMessage(IdMixin, CreatedAtMixin, Base):
    """通知发件箱: written in the transaction of the event that causes it, delivered later.

    No foreign keys: a queue entry, written by the statement that changes the order, to recipients
    that statement read (see ``app.models``). Nothing looks messages up by order: ``order_id`` is not
    indexed (an entry in one more index for every notification of every transition)."""

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),)

    topic: Mapped[str] = mapped_column(String(40))
    order_id: Mapped[int | None]
    recipient_user_id: Mapped[int | None]
    recipient_unit_id: Mapped[int | None]
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    channel: Mapped[str | None] = mapped_column(String(16))  # the channel that delivered it
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]


class RateLimitCounter(Base):
    """限流计数: attempts counted under one key (a login account, a client address) until ``expires_at``.

    In the database so that every instance of the service counts against the same limit, one row per
    key so that one upsert both counts an attempt and answers whether it is allowed
    (``app.services.throttle``). Rows whose window has passed are deleted by the worker."""

    __tablename__ = "rate_limit_counters"
    __table_args__ = (Index("ix_rate_limit_counters_expires_at", "expires_at"),)

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime]
