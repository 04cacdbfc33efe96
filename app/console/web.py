"""The console's rendering: one Jinja2 environment (autoescape on), pages, and errors as pages.

Console routes call the API's services and render what they return; a ``DomainError`` a service raises
becomes a page with the same status code (404 "不存在" for anything outside the caller's scope), never
the API's JSON. A session that is missing or void sends a page request to the login page.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.console.session import ConsoleUser
from app.domain import STATUS_LABELS, Status
from app.errors import DomainError, Unauthorized

HERE = Path(__file__).resolve().parent
LOCAL = ZoneInfo("Asia/Shanghai")

ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every value is escaped unless a template says otherwise (none does)
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

ACTION_LABELS = {
    "place": "点单",
    "approve": "审核通过",
    "reject": "驳回",
    "escalate": "上报",
    "transfer": "转派下级",
    "dispatch": "派单",
    "publish": "发布抢单",
    "accept": "接单",
    "decline": "退单",
    "grab": "抢单",
    "withdraw": "撤回",
    "expire": "超时",
    "release": "放弃",
    "check_in": "签到",
    "complete": "完成",
    "rate": "评价",
    "auto_close": "自动关闭",
    "reopen": "返工",
    "cancel": "取消",
    "confirm_presence": "管理员确认到场",
    "adjust_hours": "时长更正",
    "followup": "回访",
}
ROLE_LABELS = {"resident": "群众", "volunteer": "志愿者", "admin": "工作人员", "system": "系统"}
CHANNEL_LABELS = {"miniprogram": "小程序", "kiosk": "点单机", "hotline": "热线", "offline": "线下", "proxy": "代点单"}


def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return value.astimezone(LOCAL).strftime(fmt) if value is not None else ""


def status_label(value: str) -> str:
    try:
        return STATUS_LABELS[Status(value)]
    except ValueError:
        return value


def duration(seconds: float | None) -> str:
    """3 小时 20 分 / 2 天 5 小时: a duration as staff read it."""
    if seconds is None:
        return "—"
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} 天 {hours} 小时"
    if hours:
        return f"{hours} 小时 {mins} 分"
    return f"{mins} 分"


ENV.filters.update(
    local_time=local_time,
    status_label=status_label,
    action_label=lambda a: ACTION_LABELS.get(a, a),
    role_label=lambda r: ROLE_LABELS.get(r, r),
    channel_label=lambda c: CHANNEL_LABELS.get(c, c),
    duration=duration,
    percent=lambda v: "—" if v is None else f"{v * 100:.1f}%",
    urlquote=lambda v: quote(str(v), safe=""),
)


def render(
    request: Request, template: str, user: ConsoleUser | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    html = ENV.get_template(template).render(
        request=request, user=user, csrf=user.csrf if user else "", path=request.url.path, **context
    )
    return HTMLResponse(html, status_code=status_code)


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def login_redirect(request: Request) -> Response:
    target = f"/console/login?next={quote(request.url.path, safe='')}"
    if is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def error_page(request: Request, exc: DomainError, user: ConsoleUser | None = None) -> Response:
    if isinstance(exc, Unauthorized):
        return login_redirect(request)
    title = {403: "无权访问", 404: "不存在", 409: "操作未完成", 422: "填写有误", 429: "请求过于频繁"}.get(
        exc.status_code, "出错了"
    )
    return render(
        request, "error.html", user, status_code=exc.status_code, title=title, message=exc.message, code=exc.code
    )


P = ParamSpec("P")


def page(endpoint: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    """Render a service's refusal as a page (same status code) instead of the API's JSON error."""

    @functools.wraps(endpoint)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return await endpoint(*args, **kwargs)
        except DomainError as exc:
            request = kwargs.get("request")
            assert isinstance(request, Request)
            return error_page(request, exc, getattr(request.state, "console_user", None))

    return wrapper


def validation_message(exc: ValidationError) -> str:
    """The first problem pydantic found, in a line staff can read."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{where}: {first.get('msg', '')}" if where else str(first.get("msg", ""))
