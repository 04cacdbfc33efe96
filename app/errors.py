"""Domain errors and the one place that renders every error as ``{"error": {code, message, details}}``."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.http import JsonResponse
from app.schemas.errors import ErrorResponse as ErrorResponse  # the answer's model (``responses=``)

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


class Busy(Conflict):
    """A row lock was not granted within ``lock_timeout`` (or a deadlock / serialization failure):
    someone else is changing the same data right now; the request changed nothing and may be retried."""

    code, message = "busy", "数据正被其他操作处理, 请稍后重试"


class InvalidInput(DomainError):
    status_code, code, message = 422, "invalid_input", "请求参数不正确"


class PresenceRefused(InvalidInput):
    """签到核验未通过: a proof of presence that does not hold (``details.reason`` says which check)."""

    code, message = "presence_refused", "签到核验未通过"


class PresenceCodeUsed(Conflict):
    code, message = "presence_code_used", "签到码已使用过"


class RateLimited(DomainError):
    status_code, code, message = 429, "rate_limited", "请求过于频繁"


class ServiceUnavailable(DomainError):
    status_code, code, message = 503, "unavailable", "服务暂不可用, 请稍后再试"


class DatabaseTimeout(ServiceUnavailable):
    """A statement ran past ``statement_timeout``: the database is overloaded, not the request wrong."""

    message = "数据库响应超时, 请稍后再试"


RETRY_AFTER_SECONDS = 1


def error_response(status: int, code: str, message: str, details: Any = None) -> JsonResponse:
    details = dict(details or {})
    # 429, 503 and "busy" are transient: tell clients (and proxies) when a retry is expected to work, in
    # the header and in ``details`` alike; a rate limit says when it lets them in again.
    if status in (429, 503) or code == Busy.code:
        details.setdefault("retry_after_seconds", RETRY_AFTER_SECONDS)
    retry = details.get("retry_after_seconds")
    headers = {"Retry-After": str(retry)} if retry is not None else None
    body = {"error": {"code": code, "message": message, "details": details}}
    return JsonResponse(body, status_code=status, headers=headers)


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
HTTP_ERROR, INTERNAL_ERROR = "http_error", "internal_error"  # any other HTTP status; a bug (500)


def error_codes() -> list[str]:
    """Every ``code`` an error answer may carry: each ``DomainError`` class's, wherever it is defined, and
    the HTTP-level ones (the OpenAPI enum of ``ErrorResponse``, ``app.schemas.errors``)."""
    codes = {HTTP_ERROR, INTERNAL_ERROR, *STATUS_CODES.values()}
    classes: list[type[DomainError]] = [DomainError]
    while classes:
        cls = classes.pop()
        codes.add(cls.code)
        classes.extend(cls.__subclasses__())
    return sorted(codes)


# SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html) that say nothing about the
# request itself: retrying later is expected to work.
_BUSY_SQLSTATES = frozenset({"55P03", "40001", "40P01"})  # lock_not_available, serialization, deadlock
_STATEMENT_TIMEOUT = "57014"  # query_canceled: statement_timeout
# admin_shutdown, crash_shutdown, cannot_connect_now (starting up / shutting down), database_dropped
_DOWN_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P04"})
_DOWN_SQLSTATE_CLASSES = frozenset({"08", "53"})  # connection exception, insufficient resources


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE behind a (wrapped) database error: SQLAlchemy's ``.orig``, then the ``__cause__`` chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        state = getattr(current, "sqlstate", None)
        if isinstance(state, str) and state:
            return state
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return None


_NO_CONNECTION = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def classify_database_error(exc: BaseException) -> DomainError | None:
    """The client-facing error for a database failure that is not the request's fault, or ``None``.

    The server down, restarting or refusing connections, a connection dropped mid-query, an exhausted
    pool → 503; a lock not granted within ``lock_timeout`` → 409 ``busy``; ``statement_timeout`` → 503.
    """
    state = _sqlstate(exc)
    if state in _BUSY_SQLSTATES:
        return Busy()
    if state == _STATEMENT_TIMEOUT:
        return DatabaseTimeout()
    if state is not None and (state in _DOWN_SQLSTATES or state[:2] in _DOWN_SQLSTATE_CLASSES):
        return ServiceUnavailable()
    # No SQLSTATE: refused / reset sockets and connect timeouts (OSError), a closed connection
    # (InterfaceError), no pooled connection within pool_timeout, a connection SQLAlchemy invalidated.
    # A connection found out of step with its server (asyncpg's InternalClientError) is as good as closed.
    if isinstance(exc, _NO_CONNECTION):
        return ServiceUnavailable()
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return ServiceUnavailable()
    return None


def connection_lost(exc: BaseException) -> bool:
    """The server said it is going away or the connection is broken (SQLSTATE class 08, 57P01–57P04):
    the connection must not serve another statement."""
    state = _sqlstate(exc)
    return state is not None and (state in _DOWN_SQLSTATES or state.startswith("08"))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JsonResponse:
        return domain_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JsonResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return error_response(422, "invalid_input", "请求参数不正确", {"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JsonResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (not UTF-8, broken form data): to the client
            # that is invalid input like any other, and 422 is what every endpoint declares for it.
            return error_response(422, "invalid_input", "请求体无法解析")
        code = STATUS_CODES.get(exc.status_code, HTTP_ERROR)
        return error_response(exc.status_code, code, str(exc.detail))

    async def _database(request: Request, exc: Exception) -> JsonResponse:
        response = database_error_response(exc, request.method, request.url.path)
        if response is None:
            raise exc  # a real bug: the 500 handler below logs it
        return response

    # Handled here (not only by the catch-all below) so a database outage is an ordinary response:
    # Starlette re-raises whatever reaches the ``Exception`` handler after answering 500.
    app.add_exception_handler(SQLAlchemyError, _database)
    app.add_exception_handler(OSError, _database)
    # Statements sent with asyncpg directly (``app.prepared``) raise its own errors.
    app.add_exception_handler(asyncpg.PostgresError, _database)
    app.add_exception_handler(asyncpg.InterfaceError, _database)
    app.add_exception_handler(asyncpg.InternalClientError, _database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JsonResponse:
        response = database_error_response(exc, request.method, request.url.path)
        if response is not None:
            return response
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, INTERNAL_ERROR, "服务器内部错误")


def domain_error_response(exc: DomainError) -> JsonResponse:
    return error_response(exc.status_code, exc.code, exc.message, exc.details)


def database_error_response(exc: BaseException, method: str, path: str) -> JsonResponse | None:
    """The answer to a database failure that is not the request's fault (``classify_database_error``),
    logged as a warning; ``None`` for anything else."""
    error = classify_database_error(exc)
    if error is None:
        return None
    log.warning("%s on %s %s: %s", error.code, method, path, _first_line(exc))
    return domain_error_response(error)


def _first_line(exc: BaseException) -> str:
    """``str(exc)`` without SQLAlchemy's statement and background-link lines."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
