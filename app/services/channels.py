"""What a notification channel is (通知渠道), and how it tells the sender what happened.

A channel's ``send`` answers ``True`` (delivered) or ``False`` (it cannot reach this recipient: the
next channel is tried), or raises:

- ``DeliveryError``: a transient failure; the message is retried later, from the first channel.
- ``Undeliverable``: a permanent refusal for this message (a WeChat 47003, a bad SMS template): the
  next channel is tried at once, and the reason is kept on the outbox row.
- ``Deferred``: not now (SMS quiet hours): the message waits until ``until`` and is not counted as
  an attempt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from app.domain import STATUS_LABELS
from app.models import OutboxMessage

log = logging.getLogger("app.services.delivery")


class DeliveryError(Exception):
    """A transient failure: the message is retried later."""


class Undeliverable(Exception):
    """This channel will never deliver this message: try the next one now."""


class Deferred(Exception):
    """Send this message no earlier than ``until``."""

    def __init__(self, reason: str, until: datetime) -> None:
        super().__init__(reason)
        self.until = until


@dataclass(frozen=True, slots=True)
class Recipient:
    user_id: int | None
    wechat_openid: str | None


class Channel(Protocol):
    name: str

    async def send(self, recipient: Recipient, message: OutboxMessage) -> bool:
        """True when delivered; False when this channel cannot reach the recipient (try the next).
        Raises ``DeliveryError`` (retry later), ``Undeliverable`` (try the next, noting why) or
        ``Deferred`` (wait)."""
        ...


class LogChannel:
    """Writes the notification to the service log: the default, and the last resort."""

    name = "log"

    async def send(self, recipient: Recipient, message: OutboxMessage) -> bool:
        log.info("notify user=%s topic=%s payload=%s", recipient.user_id, message.topic, message.payload)
        return True


# 中文 of an order's status, and of an activity sign-up's (``activity.…`` topics).
_LABELS = {status.value: label for status, label in STATUS_LABELS.items()}
_SIGNUP_LABELS = _LABELS | {"confirmed": "已录取", "waitlisted": "候补", "changed": "有变更"}


def about_an_activity(message: OutboxMessage) -> bool:
    """An ``activity.…`` notification (活动招募), not an order's."""
    return (message.topic or "").startswith("activity.")


def message_fields(message: OutboxMessage) -> dict[str, str]:
    """The fields a template may name (``app.config.NOTIFICATION_FIELDS``): ``code``, ``title``,
    ``status`` and ``status_label`` (中文), ``action``, ``order_id``, ``activity_id``."""
    payload = message.payload or {}
    status = str(payload.get("status", ""))
    labels = _SIGNUP_LABELS if about_an_activity(message) else _LABELS
    return {
        "code": str(payload.get("code", "")),
        "title": str(payload.get("title", "")),
        "status": status,
        "status_label": labels.get(status, status),
        "action": str(payload.get("action", "")),
        "order_id": str(payload.get("order_id", "")),
        "activity_id": str(payload.get("activity_id", "")),
    }
