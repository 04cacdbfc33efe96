"""Domain errors and the one place that renders every error as ``{"error": {code, message, details}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.http import JsonResponse

log = logging.getLogger(__name__)


class DomainError(Exception):
    status_code = 400
    code = "domain_error"
    message = "请求无法完成"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details


class Unauthorized(DomainError):
    status_code, code, message = 401, "unauthorized", "未登录或登录已失效"


class Forbidden(DomainError):
    status_code, code, message = 403, "forbidden", "无权执行此操作"


class NotFound(DomainError):
    status_code, code, message = 404, "not_found", "对象不存在"


class Conflict(DomainError):
    status_code, code, message = 409, "conflict", "状态冲突"


class IllegalTransition(Conflict):
    code, message = "illegal_transition", "当前状态不允许此操作"


class VersionMismatch(Conflict):
    code, message = "version_mismatch", "订单已被他人修改, 请刷新后重试"


class InvalidInput(DomainError):
    status_code, code, message = 422, "invalid_input", "请求参数不正确"


class RateLimited(DomainError):
    status_code, code, message = 429, "rate_limited", "请求过于频繁"


class ServiceUnavailable(DomainError):
    status_code, code, message = 503, "unavailable", "服务暂不可用, 请稍后再试"


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorResponse(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorBody


def error_response(status: int, code: str, message: str, details: Any = None) -> JsonResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JsonResponse(body, status_code=status)


STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
}


def _is_database_down(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError | ConnectionError | OSError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JsonResponse:
        return error_response(exc.status_code, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JsonResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return error_response(422, "invalid_input", "请求参数不正确", {"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JsonResponse:
        code = STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JsonResponse:
        if _is_database_down(exc):
            log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
            return error_response(503, "unavailable", ServiceUnavailable.message)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "服务器内部错误")
