from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel
from sqlalchemy import select

from app.auth import CurrentUser
from app.db import Session
from app.errors import NotFound
from app.models import User
from app.routers.deps import SettingsDep, errors
from app.schemas.auth import LoginIn, LoginName, MeOut, PasswordChangeIn, TokenOut, WechatLoginIn
from app.services import accounts

router = APIRouter(tags=["auth"])


@router.post("/auth/login", response_model=TokenOut, responses=errors(401, 422, 429))
async def login(body: LoginIn, request: Request, session: Session, settings: SettingsDep) -> TokenOut:
    """用户名密码登录 (工作人员、志愿者). Repeated failures are refused with 429 for a while."""
    throttle = request.app.state.login_throttle
    return await accounts.login(session, settings, throttle, body.username, body.password, client_address(request))


def client_address(request: Request) -> str:
    """The address logins are counted against (the direct peer: a proxy in front sets its own)."""
    return request.client.host if request.client else "unknown"


@router.post("/auth/refresh", response_model=TokenOut, responses=errors(401))
async def refresh(actor: CurrentUser, session: Session, settings: SettingsDep) -> TokenOut:
    """续期: a new token for a caller whose token is still valid."""
    return await accounts.refresh(session, settings, actor.user_id)


@router.post("/auth/password", response_model=TokenOut, responses=errors(401, 422, 429))
async def change_password(
    body: PasswordChangeIn, request: Request, actor: CurrentUser, session: Session, settings: SettingsDep
) -> TokenOut:
    """修改密码: all earlier tokens stop working; use the returned one. Wrong old passwords count like
    failed logins (429 past ``SIDAN_LOGIN_FAILURES_PER_ACCOUNT`` in the window)."""
    throttle = request.app.state.login_throttle
    return await accounts.change_password(
        session, settings, throttle, actor.user_id, body.old_password, body.new_password
    )


@router.post("/auth/wechat", response_model=TokenOut, responses=errors(401, 403, 409, 422, 429, 503))
async def wechat_login(body: WechatLoginIn, request: Request, session: Session, settings: SettingsDep) -> TokenOut:
    """微信小程序登录: ``code`` from ``wx.login()``. A first login with ``phone_code`` takes over the
    volunteer or resident account registered with that phone (imported volunteers log in this way);
    otherwise a resident is created on first login. A WeChat whose resident, created that way, was
    never used moves to the account with the phone it verifies (the resident is stopped); one used
    is 409."""
    throttle, address = request.app.state.login_throttle, client_address(request)
    http = request.app.state.http
    return await accounts.wechat_login(session, settings, throttle, http, body.code, address, body.phone_code)


@router.get("/me", response_model=MeOut, responses=errors(401))
async def me(actor: CurrentUser) -> MeOut:
    return MeOut(
        id=actor.user_id,
        username=actor.username,
        role=actor.role,
        unit_id=actor.unit_id,
        volunteer_id=actor.volunteer_id,
    )


class DevTokenIn(BaseModel):
    username: LoginName


dev_router = APIRouter(tags=["auth"])


@dev_router.post("/auth/dev-token", response_model=TokenOut, responses=errors(404, 422))
async def dev_token(body: Annotated[DevTokenIn, Body()], session: Session, settings: SettingsDep) -> TokenOut:
    """开发/测试专用: a token for any username without its password. Never mounted in production."""
    async with session.begin():
        user = (await session.execute(select(User).where(User.username == body.username))).scalar_one_or_none()
    if user is None or not user.is_active:
        raise NotFound("用户不存在")
    return accounts.token_response(settings, user)
