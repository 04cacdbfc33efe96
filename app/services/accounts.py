"""登录: password login for staff and volunteers, WeChat mini-program login for residents."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
from sqlalchemy import exists, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import hash_password, issue_token, verify_password
from app.config import Settings
from app.crypto import lookup_hash
from app.db import transaction
from app.domain import Role
from app.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
)
from app.models import Order, Rating, StandingOrder, User, Volunteer
from app.schemas.auth import TokenOut, UserOut
from app.services.channels import DeliveryError
from app.services.throttle import LoginThrottle
from app.services.wechat_channel import WechatServer

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
    phone_code: str | None = None,
) -> TokenOut:
    """小程序登录: exchange ``code`` at code2session for the openid. An openid seen before logs in its
    account. A new one with ``phone_code`` (the mini-program's 手机号快速验证) takes over the volunteer
    or resident account registered with that phone (an imported roster's volunteers have no password:
    this is how they first log in), unless another WeChat holds it (409); else, and without
    ``phone_code``, a resident is created. So does an openid whose account is the resident created at
    its first login and never used (no order, standing order or rating): that resident is retired (see
    ``_bind_by_phone``); one that was used is 409, for staff to sort out. Counted against the client
    address like any login (429 past the limit), before WeChat is asked."""
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
        user = await session.scalar(select(User).where(User.wechat_openid == openid))
    if phone_code is not None and (user is None or _created_at_first_login(user)):
        phone = await verified_phone(settings, http, phone_code)
        user = await _bind_by_phone(session, openid, phone, leaving=user) or user
    if user is None:
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


# getuserphonenumber's errcodes: a stale access token (fetched again once), a bad or used phone code.
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
INVALID_PHONE_CODE = 40029


async def verified_phone(settings: Settings, http: httpx.AsyncClient, phone_code: str) -> str:
    """The mainland mobile number WeChat verified for ``phone_code`` (``getPhoneNumber``, issued to our
    appid, single use): 422 for a code WeChat refuses or another country's number, 503 when WeChat
    cannot answer."""
    server = WechatServer(
        http, settings.wechat_base_url, settings.wechat_appid, settings.wechat_secret, settings.wechat_timeout_seconds
    )
    data: dict[str, Any] = {}
    failed: str | None = None
    try:
        for _ in range(2):
            token, _ = await server.stable_token(force_refresh=False)
            if token == failed:  # still the token WeChat just refused: the one time to force a new one
                token, _ = await server.stable_token(force_refresh=True)
            data = await server.call(
                "POST", "/wxa/business/getuserphonenumber", params={"access_token": token}, json={"code": phone_code}
            )
            if data.get("errcode") not in TOKEN_ERRORS:
                break
            failed = token
    except DeliveryError as exc:
        raise ServiceUnavailable("微信手机号验证暂不可用") from exc
    errcode = data.get("errcode") or 0
    if errcode == INVALID_PHONE_CODE:
        raise InvalidInput("手机号授权码无效或已使用", field="phone_code")
    info = data.get("phone_info")
    if errcode or not isinstance(info, dict):
        log.warning("wechat getuserphonenumber: errcode %r %s", errcode, str(data.get("errmsg", ""))[:200])
        raise ServiceUnavailable("微信手机号验证暂不可用")
    watermark = info.get("watermark")
    if not isinstance(watermark, dict) or watermark.get("appid") != settings.wechat_appid:
        raise InvalidInput("手机号授权码不属于本小程序", field="phone_code")
    phone = info.get("purePhoneNumber")
    if str(info.get("countryCode")) != "86" or not isinstance(phone, str) or not MAINLAND_MOBILE.fullmatch(phone):
        raise InvalidInput("仅支持中国大陆手机号", field="phone_code")
    return phone


MAINLAND_MOBILE = re.compile(r"1[3-9]\d{9}")


def _created_at_first_login(user: User) -> bool:
    """An active resident as ``wechat_login`` creates one: a WeChat, no password, no phone of its own."""
    return (
        user.role == Role.RESIDENT.value
        and user.is_active
        and user.password_hash is None
        and user.phone_hash is None
        and user.wechat_openid is not None
    )


async def _bind_by_phone(session: AsyncSession, openid: str, phone: str, leaving: User | None = None) -> User | None:
    """The volunteer (else resident) account registered with ``phone`` and without a password, now bound
    to ``openid``; ``None`` if there is none. Staff accounts are never found by phone. The binding is one conditional
    ``UPDATE … WHERE wechat_openid IS NULL``: of two WeChat users binding one account at once, one wins
    and the other gets 409.

    ``leaving``: the resident ``openid`` has had since its first login (``_created_at_first_login``). In
    the same transaction it gives up the WeChat and is stopped (its tokens with it), if it was never
    used: locked, then checked for orders, standing orders and ratings (placing an order waits for
    the lock, and one placed before is seen: 409, nothing changed)."""
    key = lookup_hash(phone)
    async with transaction(session):
        # Only an account with no other way in: no password (so a number that changed hands cannot take
        # over an account its owner signs in to), active, and a volunteer's or a resident's.
        open_to_binding = (User.password_hash.is_(None), User.is_active.is_(True))
        user_id = await session.scalar(
            select(Volunteer.user_id)
            .join(User, User.id == Volunteer.user_id)
            .where(Volunteer.phone_hash == key, User.role == Role.VOLUNTEER.value, *open_to_binding)
        )
        if user_id is None:
            user_id = await session.scalar(
                select(User.id).where(User.phone_hash == key, User.role == Role.RESIDENT.value, *open_to_binding)
            )
        if user_id is None or (leaving is not None and user_id == leaving.id):
            return None
        if leaving is not None:
            await _retire(session, leaving.id, openid)
        try:
            async with session.begin_nested():
                await session.execute(
                    update(User)
                    .where(User.id == user_id, User.wechat_openid.is_(None), *open_to_binding)
                    .values(wechat_openid=openid)
                    .execution_options(synchronize_session=False)
                )
        except IntegrityError as exc:  # this WeChat was bound to another account a moment ago
            raise Conflict("该微信已绑定其他账号") from exc
        user = await session.get(User, user_id, populate_existing=True)
        assert user is not None
        if user.wechat_openid != openid:
            raise Conflict("该手机号的账号已绑定其他微信")
        return user


async def _retire(session: AsyncSession, user_id: int, openid: str) -> None:
    """Stop the unused resident ``user_id`` and free ``openid`` for another account (see ``_bind_by_phone``)."""
    await session.execute(select(User.id).where(User.id == user_id, User.wechat_openid == openid).with_for_update())
    used = or_(
        exists().where(or_(Order.resident_id == user_id, Order.placed_by_id == user_id)),
        exists().where(or_(StandingOrder.resident_id == user_id, StandingOrder.placed_by_id == user_id)),
        exists().where(Rating.rated_by_id == user_id),
    )
    if await session.scalar(select(used)):
        raise Conflict("该微信已有居民账号的点单记录, 请联系工作人员合并账号")
    retired = await session.execute(
        update(User)
        .where(
            User.id == user_id,
            User.wechat_openid == openid,
            User.role == Role.RESIDENT.value,
            User.is_active.is_(True),
            User.password_hash.is_(None),
            User.phone_hash.is_(None),
        )
        .values(wechat_openid=None, is_active=False, token_version=User.token_version + 1)
        .execution_options(synchronize_session=False)
    )
    if retired.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("该微信的账号刚刚发生了变化, 请重新登录")
