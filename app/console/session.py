"""工作台 sessions: the API's own bearer token, kept in an HttpOnly cookie, plus a CSRF token.

- Login goes through ``app.services.accounts.login`` (same passwords, same throttle, same 429s).
- The cookie holds the token ``accounts.login`` issued: HttpOnly, ``SameSite=Strict``, path ``/console``,
  ``Secure`` in production. Every request reads the caller as the API does (``load_actor``: account
  active, token version current), and only admins get in.
- CSRF: every form and htmx post carries ``csrf_token`` (field) or ``X-CSRF-Token`` (header), an HMAC of
  the session token under the token secret; without it, or with another session's, the post is refused
  with 403. The login form is guarded by a random value in a short-lived cookie (double submit).
- Logout voids the token server-side the way the API does on a password change: the account's token
  version moves on, so this token (and every other token issued before) stops working everywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor, Caller, caller_from_token, load_actor
from app.config import Settings
from app.db import transaction
from app.domain import Role
from app.errors import DomainError, Forbidden, Unauthorized
from app.models import User

SESSION_COOKIE = "sidan_console"
LOGIN_COOKIE = "sidan_console_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
COOKIE_PATH = "/console"
MAX_FORM_BYTES = 64 * 1024


class CsrfRefused(Forbidden):
    """A console post without its session's CSRF token (403)."""

    code = "csrf_refused"


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """The signed-in admin: the actor the services take, the caller ``apply`` takes, the CSRF token."""

    actor: Actor
    caller: Caller
    csrf: str


def csrf_for(token: str, settings: Settings) -> str:
    """The CSRF token bound to one session token (HMAC-SHA256 under the token secret)."""
    return hmac.new(settings.token_secret.encode(), b"console-csrf:" + token.encode(), hashlib.sha256).hexdigest()


def set_session_cookie(response: Response, token: str, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.token_ttl_minutes * 60,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=settings.environment == "production",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=settings.environment == "production"
    )


def new_login_nonce() -> str:
    """A random value for the login form, set as a cookie too (``set_login_cookie``): the login post
    must carry both."""
    return secrets.token_urlsafe(24)


def set_login_cookie(response: Response, nonce: str, settings: Settings) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=settings.environment == "production",
    )


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (what the console's forms and htmx send); the last value of a repeated
    field wins. Bodies past ``MAX_FORM_BYTES`` are refused before parsing."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Forbidden("表单过大")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Forbidden("表单编码无效") from exc
    return dict(parse_qsl(text, keep_blank_values=True))


def check_login_nonce(request: Request, form: dict[str, str]) -> None:
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    sent = form.get(CSRF_FIELD, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise CsrfRefused("表单已失效 (CSRF), 请刷新页面后重试")


async def console_user(request: Request, session: AsyncSession) -> ConsoleUser:
    """The admin the session cookie names (``Unauthorized`` without a valid one; ``Forbidden`` for
    anyone else)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise Unauthorized("请先登录")
    settings: Settings = request.app.state.settings
    caller = caller_from_token(token, settings)
    actor = await load_actor(session, caller.user_id, caller.token_version)
    # ``load_actor`` leaves its transaction open for services to join; pages that call several
    # services start each in a transaction of its own.
    await session.commit()
    if actor.role is not Role.ADMIN:
        raise Forbidden("工作台仅供中心/所/站工作人员使用")
    request.state.user_id = actor.user_id
    user = ConsoleUser(actor=actor, caller=caller, csrf=csrf_for(token, settings))
    request.state.console_user = user  # error pages keep the navigation
    return user


def check_csrf(request: Request, user: ConsoleUser, form: dict[str, str]) -> None:
    """Refuse (403) a post that carries neither the session's CSRF field nor its header."""
    sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not hmac.compare_digest(sent.encode(), user.csrf.encode()):
        raise CsrfRefused("表单已失效 (CSRF), 请刷新页面后重试")


async def revoke_tokens(session: AsyncSession, user_id: int) -> None:
    """退出登录: move the account's token version on, as a password change does (``load_actor``
    refuses tokens of an older version): this session's token is void from now on, on every instance."""
    async with transaction(session):
        await session.execute(update(User).where(User.id == user_id).values(token_version=User.token_version + 1))


def is_domain_error(exc: BaseException) -> bool:
    return isinstance(exc, DomainError)
