"""Notification channels' own records: WeChat subscription consents and SMS deliveries."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto import EncryptedString
from app.models.base import Base, CreatedAtMixin, IdMixin

SMS_STATES = ("queued", "sent", "failed", "deferred", "capped")


class WechatConsent(Base):
    """订阅消息授权: how many subscribe messages of one template a user still allows. WeChat allows one
    message per consent (一次性订阅): each ``wx.requestSubscribeMessage`` the user accepts adds one,
    each message sent takes one (a conditional ``UPDATE``, so two senders never spend the same one)."""

    __tablename__ = "wechat_consents"
    __table_args__ = (CheckConstraint("remaining >= 0", name="remaining"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    template_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    remaining: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SmsDelivery(IdMixin, CreatedAtMixin, Base):
    """短信发送记录: one row per outbox message sent (or held back) by SMS, with its latest state.

    ``phone`` is encrypted at rest like every phone number (``app.crypto``); ``phone_masked`` is what
    staff and logs see. No foreign keys: a record of what was sent outlives what it names."""

    __tablename__ = "sms_deliveries"
    __table_args__ = (
        CheckConstraint(f"state IN ({', '.join(repr(s) for s in SMS_STATES)})", name="state"),
        Index("ix_sms_deliveries_created_at", "created_at"),
    )

    outbox_id: Mapped[int] = mapped_column(unique=True)
    user_id: Mapped[int | None]
    phone: Mapped[str] = mapped_column(EncryptedString)
    phone_masked: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(40))
    template_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    provider_serial: Mapped[str | None] = mapped_column(String(128))  # Tencent's SerialNo
    error_code: Mapped[str | None] = mapped_column(String(128))
    error_message: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SmsDailyCount(Base):
    """每号每日上限: SMS sent to one phone number on one local day, counted by one upsert that refuses
    past the cap, so the cap holds for every sender of every instance. The phone is a keyed hash
    (``app.services.sms_state.phone_key``), never the number."""

    __tablename__ = "sms_daily_counts"
    __table_args__ = (CheckConstraint("sent >= 0", name="sent"),)

    phone_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sent: Mapped[int] = mapped_column(Integer)
