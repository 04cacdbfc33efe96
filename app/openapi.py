"""The OpenAPI contract as client generators read it, and the docs pages that show it with no network.

- **Names.** Every operationId is ``<tag>_<route name>`` (``orders_accept``, ``admin_stats_center``) and
  every tag is an ASCII slug (``supermarket``; its Chinese name is in the tag's description): a new
  router gets both without doing anything (``operation_id`` and ``SidanAPI.openapi``).
- **Facts FastAPI does not write down** are added to the generated document once, for every operation:
  413 on every endpoint that takes a body, 409 ``busy`` on every write, the ``Retry-After`` header on
  429, 503 and 409 answers, integer bounds written as integers (FastAPI's models carry them as floats:
  ``2**63 - 1`` became ``9.223372036854776e18``), and every property of a response schema required
  (a successful answer always carries every field of its model; Pydantic marks fields with defaults
  optional).
- **Docs offline.** Swagger UI and ReDoc come from the installed ``fastapi-offline`` package (its
  ``static`` directory, MIT), served under ``/static/docs``; no page names another host.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from app.schemas.common import MAX_BIGINT

# The tags' ASCII names and what they are; a router's tag is slugged (``admin: stats`` → ``admin_stats``).
TAG_DESCRIPTIONS: dict[str, str] = {
    "auth": "登录与令牌 (账号密码, 微信)",
    "public": "公开: 组织架构与服务菜单",
    "orders": "订单: 点单, 订单时间线, 四单流程的每个动作 (`POST /orders/{id}/{action}`)",
    "volunteer": "志愿者: 任务, 服务记录, 时长与积分",
    "admin": "管理后台: 订单, 单位, 菜单, 服务队, 志愿者, 管理员",
    "admin_dispatch": "管理后台 · 派单策略与候选人",
    "admin_ledger": "管理后台 · 服务时长与积分",
    "admin_stats": "管理后台 · 统计与导出",
    "supermarket": "爱心超市: 积分兑换",
    "activities": "活动招募: 活动, 报名与候补, 签到签退",
    "certificates": "志愿服务时长证明: 开具与公开核验",
    "admin_imports": "管理后台 · 花名册导入 (Excel/CSV)",
    "standing_orders": "常态化服务: 周期性订单",
    "notifications": "通知: 微信订阅消息授权",
    "ops": "运维: 健康检查与指标",
}

DOCS_STATIC = "/static/docs"
BUSY_DESCRIPTION = "busy: 数据正被其他操作处理, 未做任何修改, 请按 Retry-After 重试"
RETRY_AFTER_HEADER: dict[str, Any] = {
    "description": "seconds to wait before retrying",
    "schema": {"type": "integer", "minimum": 0},
}
_WRITES = frozenset({"post", "put", "patch", "delete"})
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def tag_slug(tag: str) -> str:
    """``admin: stats`` → ``admin_stats``; a tag with no ASCII letter keeps ``api``."""
    return re.sub(r"[^a-z0-9]+", "_", tag.lower()).strip("_") or "api"


def operation_id(route: APIRoute) -> str:
    """``<tag>_<route name>``, the name's words that repeat the tag dropped (``order_accept`` under
    ``orders`` → ``orders_accept``); the HTTP method when nothing is left."""
    tag = tag_slug(str(route.tags[0])) if route.tags else "api"
    said = {word for part in tag.split("_") for word in (part, part.removesuffix("s"))}
    words = [word for word in tag_slug(route.name).split("_") if word not in said]
    if not words:
        words = sorted(method.lower() for method in route.methods or ())[:1]
    return "_".join([tag, *words])


class SidanAPI(FastAPI):
    """FastAPI whose OpenAPI document carries what clients need (see the module docstring)."""

    refined: int | None = None

    def openapi(self) -> dict[str, Any]:
        document = super().openapi()
        if self.refined != id(document):  # FastAPI builds it again when routes change
            refine(document)
            self.refined = id(document)
        return document


def refine(document: dict[str, Any]) -> None:
    """Add to FastAPI's document what it leaves out (module docstring); idempotent."""
    for operation, method in _operations(document):
        operation["tags"] = [tag_slug(tag) for tag in operation.get("tags", ())]
        responses: dict[str, Any] = operation.setdefault("responses", {})
        if "requestBody" in operation:
            responses.setdefault("413", _error("请求体过大"))
        if method in _WRITES:
            conflict = responses.setdefault("409", _error(BUSY_DESCRIPTION))
            if "busy" not in conflict["description"]:
                conflict["description"] += f"; {BUSY_DESCRIPTION}"
        for status in ("409", "429", "503"):
            if status in responses:
                responses[status].setdefault("headers", {})["Retry-After"] = RETRY_AFTER_HEADER
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    for name in _response_only(document, schemas):
        properties = schemas[name].get("properties")
        if properties:
            schemas[name]["required"] = list(properties)
    _integer_bounds(document)


def _operations(document: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                yield operation, method


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            yield ref.removeprefix("#/components/schemas/")
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _closure(roots: list[str], schemas: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    while roots:
        name = roots.pop()
        if name not in seen and name in schemas:
            seen.add(name)
            roots.extend(_refs(schemas[name]))
    return seen


def _response_only(document: dict[str, Any], schemas: dict[str, Any]) -> set[str]:
    """Schemas reached from successful responses and never from a request (body or parameter). Error
    answers are built by hand (``app.errors``): their schemas say themselves what is required."""
    out: list[str] = []
    into: list[str] = []
    for operation, _ in _operations(document):
        for status, response in operation.get("responses", {}).items():
            if str(status).startswith("2"):
                out.extend(_refs(response))
        into.extend(_refs(operation.get("requestBody")))
        into.extend(_refs(operation.get("parameters")))
    return _closure(out, schemas) - _closure(into, schemas)


def _integer_bounds(node: Any) -> None:
    """Bounds of integer schemas as integers (``MAX_BIGINT`` exactly: a float cannot hold it)."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in _BOUNDS:
                value = node.get(key)
                if isinstance(value, float):
                    node[key] = MAX_BIGINT if value == float(MAX_BIGINT) else int(value)
        for value in node.values():
            _integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _integer_bounds(value)


def install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI), ``/redoc`` and ``GET /`` → ``/docs``, with assets from the installed package."""
    assets = files("fastapi_offline") / "static"
    app.mount(DOCS_STATIC, StaticFiles(directory=str(assets)), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    # Plain Starlette routes, as FastAPI's own docs routes: GET and HEAD, outside the schema.
    async def root(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/docs")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect}",
            swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
            # No badge from the public validator service.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    async def swagger_ui_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
            with_google_fonts=False,
        )

    for path, page in (("/", root), ("/docs", swagger_ui), (oauth2_redirect, swagger_ui_redirect), ("/redoc", redoc)):
        app.add_route(path, page, include_in_schema=False)
