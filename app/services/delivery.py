"""Delivering the outbox (通知投递): at-least-once, with retries and backoff, through pluggable channels.

Channels are tried in order for each message: a channel that does not apply to the recipient (no
WeChat openid, no subscription consent) passes to the next; a transient failure (network, 5xx, busy)
schedules a retry of the message with exponential backoff. Delivery never touches the transition that
wrote the message: a channel that is down delays notifications, nothing else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.models import OutboxMessage, User
from app.services.channels import Channel, Deferred, DeliveryError, LogChannel, Recipient, Undeliverable
from app.services.consents import ConsentBook
from app.services.sms_channel import TencentSmsChannel
from app.services.sms_state import SmsBook, key_from_data_key
from app.services.wechat_channel import WechatSubscribeChannel

__all__ = [
    "Channel",
    "Deferred",
    "DeliveryError",
    "DeliveryStats",
    "LogChannel",
    "Recipient",
    "Undeliverable",
    "WechatSubscribeChannel",
    "default_channels",
    "deliver_due",
]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_CAP = timedelta(hours=1)


def default_channels(
    settings: Settings, http: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession] | None = None
) -> list[Channel]:
    """WeChat first for residents who logged in through the mini-program, then SMS (when switched on
    with ``SIDAN_SMS_ENABLED``), the log for everyone else. Consents are counted and SMS sent only
    with a ``sessionmaker`` (the worker's)."""
    wechat = WechatSubscribeChannel(
        http,
        settings.wechat_base_url,
        settings.wechat_appid,
        settings.wechat_secret,
        settings.wechat_template_id,
        timeout=settings.wechat_timeout_seconds,
        template_fields=dict(settings.wechat_template_fields),
        page=settings.wechat_page,
        activity_page=settings.wechat_activity_page,
        consents=ConsentBook(sessionmaker) if sessionmaker is not None and settings.wechat_count_consents else None,
    )
    channels: list[Channel] = [wechat]
    if settings.sms_enabled and sessionmaker is not None:
        book = SmsBook(sessionmaker, key_from_data_key(settings.data_key_list[0]), settings.sms_daily_cap_per_phone)
        channels.append(
            TencentSmsChannel(
                http,
                book,
                settings.sms_endpoint,
                settings.sms_secret_id,
                settings.sms_secret_key,
                settings.sms_sdk_app_id,
                settings.sms_sign_name,
                dict(settings.sms_templates),
                region=settings.sms_region,
                zone=ZoneInfo(settings.sms_timezone),
                quiet_start=settings.sms_quiet_start,
                quiet_end=settings.sms_quiet_end,
                timeout=settings.sms_timeout_seconds,
            )
        )
    return [*channels, LogChannel()]


def backoff(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s … up to an hour."""
    seconds = BACKOFF_BASE.total_seconds() * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, BACKOFF_CAP.total_seconds()))


@dataclass
class DeliveryStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0


async def deliver_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    channels: list[Channel],
    *,
    now: datetime | None = None,
    batch: int = 100,
) -> DeliveryStats:
    """Send the pending messages due at ``now`` (locked ``SKIP LOCKED``: safe with several senders)."""
    now = now or datetime.now(UTC)
    stats = DeliveryStats()
    async with sessionmaker() as session, session.begin():
        rows = (
            await session.execute(
                select(OutboxMessage, User.wechat_openid)
                .outerjoin(User, User.id == OutboxMessage.recipient_user_id)
                .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
                .order_by(OutboxMessage.id)
                .limit(batch)
                .with_for_update(of=OutboxMessage, skip_locked=True)
            )
        ).all()
        for message, openid in rows:
            recipient = Recipient(message.recipient_user_id, openid)
            try:
                channel, refusals = await _first_that_delivers(channels, recipient, message)
            except Deferred as exc:  # not an attempt: the message waits for its time
                message.next_attempt_at, message.last_error = exc.until, str(exc)[:500]
                stats.deferred += 1
                continue
            except DeliveryError as exc:
                message.attempts += 1
                message.last_error = str(exc)[:500]
                if message.attempts >= MAX_ATTEMPTS:
                    message.status = "failed"
                    stats.failed += 1
                else:
                    message.next_attempt_at = now + backoff(message.attempts)
                    stats.retried += 1
                continue
            message.attempts += 1
            message.status, message.channel, message.sent_at = "sent", channel, now
            if refusals:  # e.g. WeChat's 43101 before the SMS went out: kept for the record
                message.last_error = "; ".join(refusals)[:500]
            stats.sent += 1
    return stats


async def _first_that_delivers(
    channels: list[Channel], recipient: Recipient, message: OutboxMessage
) -> tuple[str, list[str]]:
    """The first channel that delivers, and why those before it refused for good."""
    refusals: list[str] = []
    for channel in channels:
        try:
            if await channel.send(recipient, message):
                return channel.name, refusals
        except Undeliverable as exc:
            refusals.append(str(exc))
    raise DeliveryError("no channel could reach the recipient: " + "; ".join(refusals))
