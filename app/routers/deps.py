"""Dependencies and OpenAPI error declarations shared by the routers.

Dependencies are ``async def`` even when they do not await: FastAPI runs a plain ``def`` dependency in
its thread pool, two thread hops per request on the hottest endpoints.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from pydantic import WithJsonSchema

from app.config import Settings
from app.errors import ErrorResponse, InvalidInput
from app.schemas.common import MAX_BIGINT


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
ObjectId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="retries with the same key return the first response"),
]


async def parse_if_match(
    if_match: Annotated[
        str | None,
        # Declared as what clients send, the order's ``version``; ``"3"`` and ``W/"3"`` are read too.
        WithJsonSchema({"type": "integer", "minimum": 0}),
        Header(alias="If-Match", description="expected order version (its ``version``); 409 if it moved on"),
    ] = None,
) -> int | None:
    return expected_version(if_match)


def expected_version(if_match: str | None) -> int | None:
    """The order version an ``If-Match`` header names (``3``, ``"3"`` or ``W/"3"``)."""
    if if_match is None:
        return None
    try:
        return int(if_match.strip().strip('"').removeprefix('W/"'))
    except ValueError as exc:
        raise InvalidInput("If-Match 须为订单版本号") from exc


ExpectedVersion = Annotated[int | None, Depends(parse_if_match)]


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the error codes an endpoint may answer; every endpoint that touches the
    database may also answer 503 (database unavailable), so it is always declared."""
    descriptions = {
        401: "未登录或令牌无效",
        403: "角色无权执行",
        404: "对象不存在或不在可见范围",
        409: "状态冲突 (当前状态与允许的操作见 details; busy: 他人正在修改, 请重试)",
        413: "请求体过大",
        422: "请求参数不正确",
        429: "请求过于频繁",
        503: "数据库或上游不可用",
    }
    return {code: {"model": ErrorResponse, "description": descriptions[code]} for code in sorted({*codes, 503})}
