"""登录 / 退出: the API's login service and throttle; the token in an HttpOnly cookie (``session``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from app.console.session import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    check_csrf,
    check_login_nonce,
    clear_session_cookie,
    console_user,
    new_login_nonce,
    read_form,
    revoke_tokens,
    set_login_cookie,
    set_session_cookie,
)
from app.console.web import page, render
from app.db import Session
from app.errors import DomainError, Forbidden, Unauthorized
from app.routers.auth import client_address
from app.services import accounts

router = APIRouter()


def _safe_next(target: str) -> str:
    """Only a path inside the console: never an open redirect."""
    return (
        target if target.startswith("/console") and not target.startswith("//") and "\\" not in target else "/console/"
    )


def _login_page(request: Request, message: str = "", status_code: int = 200, username: str = "") -> Response:
    nonce = new_login_nonce()
    response = render(
        request,
        "login.html",
        None,
        status_code=status_code,
        message=message,
        username=username,
        next=_safe_next(request.query_params.get("next", "/console/")),
        nonce=nonce,
    )
    set_login_cookie(response, nonce, request.app.state.settings)
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
async def login(request: Request, session: Session) -> Response:
    """Sign in through ``accounts.login``: wrong passwords and the throttle answer as the API does."""
    settings = request.app.state.settings
    form = await read_form(request)
    username = form.get("username", "").strip()[:64]
    try:
        check_login_nonce(request, form)
        if not username or not form.get("password"):
            raise Unauthorized("请输入用户名和密码")
        throttle = request.app.state.login_throttle
        token = await accounts.login(
            session, settings, throttle, username, form.get("password", "")[:256], client_address(request)
        )
        if token.user.role != "admin":
            raise Forbidden("工作台仅供中心/所/站工作人员使用")
    except DomainError as exc:
        response = _login_page(request, exc.message, exc.status_code, username)
        if exc.status_code == 429 and "retry_after_seconds" in exc.details:
            response.headers["Retry-After"] = str(exc.details["retry_after_seconds"])
        return response
    response = RedirectResponse(_safe_next(form.get("next", "/console/")), status_code=303)
    set_session_cookie(response, token.access_token, settings)
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout")
@page
async def logout(request: Request, session: Session) -> Response:
    """退出: the token is voided server-side (``revoke_tokens``), then the cookie is cleared."""
    user = await console_user(request, session)
    check_csrf(request, user, await read_form(request))
    await revoke_tokens(session, user.actor.user_id)
    response = RedirectResponse("/console/login", status_code=303)
    clear_session_cookie(response, request.app.state.settings)
    return response
