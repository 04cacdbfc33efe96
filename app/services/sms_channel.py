"""短信通知 (Tencent Cloud SMS, API 3.0 ``SendSms``) for whom WeChat cannot reach.

Tried after WeChat: a recipient with no openid (代点单, kiosk and hotline residents), with no
subscription consent left, or whose message WeChat refused for good gets an SMS, if the message's
kind has a template (``SIDAN_SMS_TEMPLATES``) and there is a mobile number to send to
(``app.services.sms_state.SmsBook.phone_for``). Before the call:

- quiet hours (免打扰, ``SIDAN_SMS_QUIET_START``–``END`` in ``SIDAN_SMS_TIMEZONE``): a non-urgent
  kind is deferred to their end (``Deferred``: the message waits, it is not dropped);
- the per-phone daily cap (``SIDAN_SMS_DAILY_CAP_PER_PHONE``, counted in PostgreSQL): past it the
  message is recorded ``capped`` and passes to the next channel.

Tencent's answers: ``InternalError*``, ``RequestLimitExceeded*``, the 30-second and one-hour
per-number limits, a network error or an HTTP 5xx are transient (retried with backoff); any other
error (a bad signature or secret, an unapproved template, an invalid number, the provider's own
daily limit) is permanent: recorded ``failed`` with its code, logged, and the next channel is tried.
"""

from __future__ import annotations

import json
import logging
import time as clock_time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx

from app.config import SmsTemplate
from app.models import OutboxMessage
from app.services.channels import Deferred, DeliveryError, Recipient, Undeliverable, message_fields
from app.services.sms_state import SmsBook, SmsTarget, e164
from app.services.tencent_signing import signed_headers

log = logging.getLogger("app.services.delivery")

TRANSIENT_CODES = (
    "InternalError",
    "RequestLimitExceeded",
    "LimitExceeded.PhoneNumberThirtySecondLimit",
    "LimitExceeded.PhoneNumberOneHourLimit",
    "LimitExceeded.DeliveryFrequencyLimit",
)
PARAM_MAX_CHARS = 35  # Tencent's limit for a template variable of the general kind
API_VERSION = "2021-01-11"


def quiet_until(now: datetime, zone: ZoneInfo, start: time, end: time) -> datetime | None:
    """When the quiet hours around ``now`` end (UTC), or None outside them (``start == end``: none)."""
    local = now.astimezone(zone)
    at = local.timetz().replace(tzinfo=None)
    quiet = (start <= at < end) if start < end else (at >= start or at < end) if start > end else False
    if not quiet:
        return None
    until = datetime.combine(local.date(), end, tzinfo=zone)
    if until <= local:
        until = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=zone)
    return until.astimezone(UTC)


@dataclass
class TencentSmsChannel:
    http: httpx.AsyncClient
    book: SmsBook
    endpoint: str
    secret_id: str
    secret_key: str
    sdk_app_id: str
    sign_name: str
    templates: dict[str, SmsTemplate]
    region: str = "ap-guangzhou"
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    timeout: float = 5.0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), repr=False)
    name: str = "sms"

    async def send(self, recipient: Recipient, message: OutboxMessage) -> bool:
        template = self.templates.get(message.topic)
        if template is None:
            return False
        number = await self.book.phone_for(recipient.user_id, message.order_id, message.topic)
        phone = e164(number) if number else None
        if phone is None:
            return False
        target = SmsTarget(message.id, recipient.user_id, phone, message.topic, template.template_id)
        now = self.clock()
        if not template.urgent and (until := quiet_until(now, self.zone, self.quiet_start, self.quiet_end)):
            await self.book.record(target, "deferred")
            raise Deferred(f"sms: quiet hours until {until.isoformat()}", until)
        day = now.astimezone(self.zone).date()
        if not await self.book.take_slot(phone, day):
            await self.book.record(target, "capped")
            raise Undeliverable("sms: daily cap of this phone reached")
        await self.book.record(target, "queued", attempt=True)
        try:
            serial = await self._send_sms(phone, template, message)
        except (DeliveryError, Undeliverable) as exc:
            await self.book.give_back_slot(phone, day)
            code = getattr(exc, "code", None) or type(exc).__name__
            await self.book.record(target, "failed", error_code=code, error_message=str(exc))
            raise
        await self.book.record(target, "sent", serial=serial)
        return True

    async def _send_sms(self, phone: str, template: SmsTemplate, message: OutboxMessage) -> str:
        fields = message_fields(message)
        body = {
            "PhoneNumberSet": [phone],
            "SmsSdkAppId": self.sdk_app_id,
            "SignName": self.sign_name,
            "TemplateId": template.template_id,
            "TemplateParamSet": [fields.get(name, "")[:PARAM_MAX_CHARS] for name in template.params],
            "SessionContext": str(message.id or ""),
        }
        payload = json.dumps(body, ensure_ascii=False).encode()
        host = urlsplit(self.endpoint).netloc
        headers = signed_headers(
            secret_id=self.secret_id, secret_key=self.secret_key, service="sms", host=host, action="SendSms",
            version=API_VERSION, region=self.region, payload=payload, timestamp=int(clock_time.time()),
        )  # fmt: skip
        try:
            response = await self.http.post(self.endpoint, content=payload, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise SmsTransient("Network", type(exc).__name__) from exc
        if response.status_code >= 500:
            raise SmsTransient(f"HTTP{response.status_code}", "provider unavailable")
        try:
            data: Any = response.json()["Response"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SmsTransient("BadResponse", f"HTTP {response.status_code}, not an API 3.0 answer") from exc
        error = data.get("Error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            raise classify(str(error.get("Code", "")), str(error.get("Message", "")))
        statuses = data.get("SendStatusSet") if isinstance(data, dict) else None
        if not isinstance(statuses, list) or not statuses or not isinstance(statuses[0], dict):
            raise SmsTransient("BadResponse", "no SendStatusSet")
        status = statuses[0]
        if status.get("Code") != "Ok":
            raise classify(str(status.get("Code", "")), str(status.get("Message", "")))
        return str(status.get("SerialNo", ""))


class SmsTransient(DeliveryError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"sms {code}: {message}")
        self.code = code


class SmsRefused(Undeliverable):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"sms {code}: {message}")
        self.code = code


def classify(code: str, message: str) -> SmsTransient | SmsRefused:
    if code.startswith(TRANSIENT_CODES):
        return SmsTransient(code, message)
    log.warning("sms refused for good: %s %s", code, message)
    return SmsRefused(code, message)
