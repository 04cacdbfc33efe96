"""微信订阅消息 (subscribe message) through the mini-program's server API, with a cached access token.

What WeChat answers, and what the sender does about it:

- 0: delivered; one of the user's consents (``app.services.consents``) is spent.
- 40001 / 40014 / 42001: the access token is stale or expired: fetch it again once, then retry.
- 43101 (the user gave no consent, or it is used up): none left: the next channel (SMS) at once.
- 47003 (template data invalid), 40037 (template id invalid), 41030 (page invalid), 40003 (openid
  invalid): permanent: logged with WeChat's errmsg and passed to the next channel at once, never
  retried (a retry would meet the same refusal for 43 minutes of backoff).
- anything else (network, 5xx, -1 system busy, 45009 limits): transient: retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.models import OutboxMessage
from app.services.channels import DeliveryError, Recipient, Undeliverable, about_an_activity, message_fields
from app.services.consents import ConsentBook

log = logging.getLogger("app.services.delivery")

TOKEN_ERRORS = frozenset({40001, 40014, 42001})
NO_CONSENT = 43101
PERMANENT_ERRORS = frozenset({47003, 40037, 41030, 40003})
DEFAULT_FIELDS = {"character_string1": "code", "thing2": "title", "phrase3": "status_label"}
DEFAULT_PAGE = "pages/order/detail?id={order_id}"
DEFAULT_ACTIVITY_PAGE = "pages/activity/detail?id={activity_id}"
# WeChat's length limit of a keyword's value, by the keyword's type (its name without the number).
VALUE_LIMITS = {"thing": 20, "character_string": 32, "phrase": 5, "number": 32, "letter": 32, "symbol": 5, "name": 10}


class NoConsent(Undeliverable):
    """WeChat answered 43101: the user has no consent left for this template."""


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def keyword_value(keyword: str, value: str) -> str:
    kind = keyword.rstrip("0123456789")
    limit = VALUE_LIMITS.get(kind)
    return value[:limit] if limit else value


@dataclass
class WechatSubscribeChannel:
    """Subscribe messages of one template; ``consents`` (when given) counts the user's consents."""

    http: httpx.AsyncClient
    base_url: str
    appid: str
    secret: str
    template_id: str
    timeout: float = 5.0
    template_fields: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FIELDS))
    page: str = DEFAULT_PAGE
    activity_page: str = DEFAULT_ACTIVITY_PAGE  # for the ``activity.…`` topics
    consents: ConsentBook | None = None
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

    @property
    def server(self) -> WechatServer:
        return WechatServer(self.http, self.base_url, self.appid, self.secret, self.timeout)

    async def _stable_token(self, *, force_refresh: bool) -> tuple[str, int]:
        return await self.server.stable_token(force_refresh=force_refresh)

    async def send(self, recipient: Recipient, message: OutboxMessage) -> bool:
        if not recipient.wechat_openid:
            return False
        user_id, consents = recipient.user_id, self.consents
        if consents is not None and user_id is not None and not await consents.take(user_id, self.template_id):
            return False  # no consent left: WeChat would answer 43101
        try:
            await self._send(recipient.wechat_openid, message)
        except NoConsent:
            if self.consents is not None and user_id is not None:
                await self.consents.exhaust(user_id, self.template_id)
            raise
        except Exception:
            if self.consents is not None and user_id is not None:
                await self.consents.give_back(user_id, self.template_id)  # not sent: the consent stays
            raise
        return True

    async def _send(self, openid: str, message: OutboxMessage) -> None:
        """Returns once WeChat took the message; raises otherwise."""
        body = self._message(openid, message)
        failed: str | None = None
        for _ in range(2):
            token = await self.access_token(failed=failed)
            data = await self._call(
                "POST", "/cgi-bin/message/subscribe/send", params={"access_token": token}, json=body
            )
            errcode = int(data.get("errcode", 0) or 0)
            errmsg = str(data.get("errmsg", ""))[:200]
            if errcode == 0:
                return
            if errcode == NO_CONSENT:
                raise NoConsent(f"wechat 43101: no consent ({errmsg})")
            if errcode in PERMANENT_ERRORS:
                log.warning("wechat send refused for good: errcode %s %s (topic %s, outbox %s)",
                            errcode, errmsg, message.topic, message.id)  # fmt: skip
                raise Undeliverable(f"wechat {errcode}: {errmsg}")
            if errcode not in TOKEN_ERRORS:
                raise DeliveryError(f"wechat send: errcode {errcode} {errmsg}")
            failed = token
        raise DeliveryError("wechat send: access token refused twice")

    def _message(self, openid: str, message: OutboxMessage) -> dict[str, Any]:
        fields = message_fields(message)
        page = self.activity_page if about_an_activity(message) else self.page
        return {
            "touser": openid,
            "template_id": self.template_id,
            "page": page.format_map(_Blank(fields)),
            "data": {
                keyword: {"value": keyword_value(keyword, fields.get(source, ""))}
                for keyword, source in self.template_fields.items()
            },
        }

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return await self.server.call(method, path, **kwargs)


@dataclass(frozen=True, slots=True)
class WechatServer:
    """WeChat's server API for one mini-program: where it is, our credentials, how long to wait."""

    http: httpx.AsyncClient
    base_url: str
    appid: str
    secret: str
    timeout_seconds: float

    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One call: WeChat's JSON object (errcode and all); ``DeliveryError`` when no answer came
        (network, 5xx, not JSON)."""
        url = self.base_url.rstrip("/") + path
        try:
            response = await self.http.request(method, url, timeout=self.timeout_seconds, **kwargs)
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

    async def stable_token(self, *, force_refresh: bool) -> tuple[str, int]:
        """The access token and its lifetime from ``cgi-bin/stable_token`` (normal mode: the token
        every instance gets while it is valid); ``DeliveryError`` if WeChat gives none."""
        data = await self.call("POST", "/cgi-bin/stable_token", json={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret,
            "force_refresh": force_refresh,
        })  # fmt: skip
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            errcode = data.get("errcode")
            if errcode in (40013, 40125, 40164):
                log.error("wechat stable_token refused: errcode %s %s (check appid/secret/IP whitelist)",
                          errcode, data.get("errmsg", ""))  # fmt: skip
            raise DeliveryError(f"wechat stable_token: errcode {errcode}")
        return token, int(data.get("expires_in", 7200))
