"""登录: password login for staff and volunteers, WeChat mini-program login for residents."""

from __future__ import annotations

import logging

import httpx
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import hash_password, issue_token, verify_password
from app.config import Settings
from app.db import transaction
from app.domain import Role
from app.errors import DomainError, Forbidden, InvalidInput, RateLimited, ServiceUnavailable, Unauthorized
from app.models import User
from app.schemas.auth import TokenOut, UserOut
from app.services.throttle import LoginThrottle

log = logging.getLogger(__name__)

# code2session's errcodes, by whose problem they are: the user's code (401), the user's account (403),
# WeChat's load (try later), our configuration (the operator's: 503 and an error in the log).
INVALID_CODE = frozenset({40029, 40163})
BLOCKED_USER = 40226
WECHAT_BUSY = -1
WECHAT_QUOTA = 45011
CONFIG_ERRORS = frozenset({40013, 40125, 40164})
QUOTA_RETRY_SECONDS = 60  # 45011 is WeChat's per-minute quota


def code2session_error(errcode: object, errmsg: str) -> DomainError:
    """The error a refused code2session gives the caller."""
    code = errcode if isinstance(errcode, int) else None
    if code in INVALID_CODE:
        return Unauthorized("微信登录凭证无效", wechat_errcode=code)
    if code == BLOCKED_USER:
        return Forbidden("该微信账号已被限制登录", wechat_errcode=code)
    if code == WECHAT_QUOTA:
        return RateLimited("微信登录繁忙, 请稍后再试", retry_after_seconds=QUOTA_RETRY_SECONDS, wechat_errcode=code)
    if code == WECHAT_BUSY:
        return ServiceUnavailable("微信登录繁忙, 请稍后再试", wechat_errcode=code)
    if code in CONFIG_ERRORS:
        log.error("wechat code2session refused our credentials: errcode %s %s (check SIDAN_WECHAT_APPID, "
                  "SIDAN_WECHAT_SECRET and the server's IP whitelist)", code, errmsg)  # fmt: skip
        return ServiceUnavailable("微信登录暂不可用")
    log.warning("wechat code2session: unexpected errcode %r %s", errcode, errmsg)
    return ServiceUnavailable("微信登录暂不可用")


# A real argon2 hash of a random string: unknown usernames cost as much as wrong passwords.
_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$s5X707NJ9eFg3UUMdIENqw$CjrBYuGZbs38A48ikKyU9WpN2nT2od3gXD+3fgLTzEw"


def token_response(settings: Settings, user: User) -> TokenOut:
    return TokenOut(access_token=issue_token(settings, user), user=UserOut.model_validate(user))


async def login(
    session: AsyncSession, settings: Settings, throttle: LoginThrottle, username: str, password: str, address: str
) -> TokenOut:
    """用户名密码登录, throttled per account and per client address (429 past the limit)."""
    async with transaction(session):
        # Counted and committed before the password is checked: concurrent guesses see each other.
        await throttle.attempt(session, username, address)
        user = (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()
    ok = await verify_password(user.password_hash if user and user.password_hash else _DUMMY_HASH, password)
    if user is None or not ok or not user.is_active:
        raise Unauthorized("用户名或密码错误")
    async with transaction(session):
        await throttle.succeeded(session, username)
    return token_response(settings, user)


async def refresh(session: AsyncSession, settings: Settings, user_id: int) -> TokenOut:
    """A fresh token for a caller whose current token is still valid (same token version)."""
    async with transaction(session):
        user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthorized()
    return token_response(settings, user)


async def change_password(
    session: AsyncSession,
    settings: Settings,
    throttle: LoginThrottle,
    user_id: int,
    old_password: str,
    new_password: str,
) -> TokenOut:
    """修改密码: every token issued before stops working; the answer carries a new one. Throttled like
    logins: each attempt is counted (and committed) before the old password is checked."""
    async with transaction(session):
        await throttle.password_attempt(session, user_id)
    async with transaction(session):
        user = (await session.execute(select(User).where(User.id == user_id).with_for_update())).scalar_one_or_none()
        if user is None or not user.password_hash or not await verify_password(user.password_hash, old_password):
            raise InvalidInput("原密码不正确")
        user.password_hash = await hash_password(new_password)
        user.token_version += 1
        await throttle.password_succeeded(session, user_id)
    return token_response(settings, user)


async def wechat_login(
    session: AsyncSession,
    settings: Settings,
    throttle: LoginThrottle,
    http: httpx.AsyncClient,
    code: str,
    address: str,
) -> TokenOut:
    """小程序登录: exchange ``code`` at code2session for the openid; first login creates the resident.
    Counted against the client address like any login (429 past the limit), before WeChat is asked."""
    async with transaction(session):
        await throttle.address_attempt(session, address)
    try:
        response = await http.get(
            f"{settings.wechat_base_url.rstrip('/')}/sns/jscode2session",
            params={
                "appid": settings.wechat_appid,
                "secret": settings.wechat_secret,
                "js_code": code,
                "grant_type": "authorization_code",
            },
            timeout=settings.wechat_timeout_seconds,
        )
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ServiceUnavailable("微信登录服务暂不可用") from exc
    if not isinstance(data, dict):
        raise ServiceUnavailable("微信登录服务返回异常")
    openid = data.get("openid")
    if data.get("errcode") or not isinstance(openid, str) or not openid:
        raise code2session_error(data.get("errcode"), str(data.get("errmsg", ""))[:200])
    async with transaction(session):
        await session.execute(
            insert(User)
            .values(wechat_openid=openid, role=Role.RESIDENT.value, display_name="微信用户")
            .on_conflict_do_nothing(index_elements=[User.wechat_openid])
        )
        user = (await session.execute(select(User).where(User.wechat_openid == openid))).scalar_one()
    if not user.is_active:
        raise Unauthorized("账号已停用")
    return token_response(settings, user)
