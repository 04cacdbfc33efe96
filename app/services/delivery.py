"""Delivering the outbox (通知投递): at-least-once, with retries and backoff, through pluggable channels.

Channels are tried in order for each message: a channel that does not apply to the recipient (no
WeChat openid, no subscription consent) passes to the next; a transient failure (network, 5xx, busy)
schedules a retry of the message with exponential backoff. Delivery never touches the transition that
wrote the message: a channel that is down delays notifications, nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.domain import STATUS_LABELS, Status
from app.models import OutboxMessage, User

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_CAP = timedelta(hours=1)


class DeliveryError(Exception):
    """A transient failure: the message is retried later."""


@dataclass(frozen=True, slots=True)
class Recipient:
    user_id: int | None
    wechat_openid: str | None


class Channel(Protocol):
    name: str

    async def send(self, recipient: Recipient, message: OutboxMessage) -> bool:
        """True when delivered; False when this channel cannot reach the recipient (try the next).
        Raises ``DeliveryError`` on a transient failure."""
        ...


class LogChannel:
    """Writes the notification to the service log: the default, and the last resort."""

    name = "log"

    async def send(self, recipient: Recipient, message: OutboxMessage) -> bool:
        log.info("notify user=%s topic=%s payload=%s", recipient.user_id, message.topic, message.payload)
        return True


# errcodes of the WeChat API: token invalid/expired → refresh once; the user gave no consent → next channel.
_TOKEN_ERRORS = frozenset({40001, 40014, 42001})
_NO_CONSENT = frozenset({43101, 40003})
_STATUS_VALUES = frozenset(s.value for s in Status)


@dataclass
class WechatSubscribeChannel:
    """微信订阅消息 (subscribe message) through the mini-program's server API, with a cached access token."""

    http: httpx.AsyncClient
    base_url: str
    appid: str
    secret: str
    template_id: str
    timeout: float = 5.0
    name: str = "wechat"
    _token: str | None = field(default=None, repr=False)
    _token_expires: datetime = field(default=datetime.min.replace(tzinfo=UTC), repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def access_token(self, *, failed: str | None = None) -> str:
        """The access token, from ``cgi-bin/stable_token``: every service instance fetching it in its
        normal mode gets the same token while it is valid, so instances never knock out each other's
        (``cgi-bin/token`` issues a new one on every call and voids the last). ``failed``: a token
        WeChat just refused; a refresh is forced only if the normal fetch still returns that one."""
        async with self._lock:
            if failed is not None and self._token is not None and failed != self._token:
                return self._token  # another send refreshed it meanwhile
            if failed is None and self._token is not None and datetime.now(UTC) < self._token_expires:
                return self._token
            token, lifetime = await self._stable_token(force_refresh=False)
            if failed is not None and token == failed:
                token, lifetime = await self._stable_token(force_refresh=True)
            # Fetched again five minutes early so a token never expires mid-send.
            self._token, self._token_expires = token, datetime.now(UTC) + timedelta(seconds=lifetime - 300)
            return token

    async def _stable_token(self, *, force_refresh: bool) -> tuple[str, int]:
        data = await self._call("POST", "/cgi-bin/stable_token", json={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret,
            "force_refresh": force_refresh,
        })  # fmt: skip
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise DeliveryError(f"wechat stable_token: errcode {data.get('errcode')}")
        return token, int(data.get("expires_in", 7200))

    async def send(self, recipient: Recipient, message: OutboxMessage) -> bool:
        if not recipient.wechat_openid:
            return False
        body = self._message(recipient.wechat_openid, message)
        failed: str | None = None
        for _ in range(2):
            token = await self.access_token(failed=failed)
            data = await self._call(
                "POST", "/cgi-bin/message/subscribe/send", params={"access_token": token}, json=body
            )
            errcode = int(data.get("errcode", 0) or 0)
            if errcode == 0:
                return True
            if errcode in _NO_CONSENT:
                return False
            if errcode not in _TOKEN_ERRORS:
                raise DeliveryError(f"wechat send: errcode {errcode} {data.get('errmsg', '')}")
            failed = token
        raise DeliveryError("wechat send: access token refused twice")

    def _message(self, openid: str, message: OutboxMessage) -> dict[str, Any]:
        payload = message.payload
        status = str(payload.get("status", ""))
        label = STATUS_LABELS[Status(status)] if status in _STATUS_VALUES else status
        return {
            "touser": openid,
            "template_id": self.template_id,
            "page": f"pages/order/detail?id={payload.get('order_id', '')}",
            "data": {
                "character_string1": {"value": str(payload.get("code", ""))[:32]},
                "thing2": {"value": str(payload.get("title", ""))[:20]},
                "phrase3": {"value": label[:5]},
            },
        }

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self.http.request(method, self.base_url.rstrip("/") + path, timeout=self.timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"wechat {path}: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise DeliveryError(f"wechat {path}: HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError as exc:
            raise DeliveryError(f"wechat {path}: not JSON") from exc
        if not isinstance(data, dict):
            raise DeliveryError(f"wechat {path}: unexpected body")
        return data


def default_channels(settings: Settings, http: httpx.AsyncClient) -> list[Channel]:
    """WeChat first for residents who logged in through the mini-program, the log for everyone else."""
    wechat = WechatSubscribeChannel(
        http, settings.wechat_base_url, settings.wechat_appid, settings.wechat_secret, settings.wechat_template_id
    )
    return [wechat, LogChannel()]


def backoff(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s … up to an hour."""
    seconds = BACKOFF_BASE.total_seconds() * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, BACKOFF_CAP.total_seconds()))


@dataclass
class DeliveryStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0


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
                channel = await _first_that_delivers(channels, recipient, message)
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
            stats.sent += 1
    return stats


async def _first_that_delivers(channels: list[Channel], recipient: Recipient, message: OutboxMessage) -> str:
    for channel in channels:
        if await channel.send(recipient, message):
            return channel.name
    raise DeliveryError("no channel could reach the recipient")
