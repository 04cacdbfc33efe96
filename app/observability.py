"""Observability: Prometheus metrics, structured logs, and the middleware that ties a request to both.

- ``/metrics``: requests by route template and status with latency histograms, requests in flight,
  committed transitions by action, the outbox backlog and the sweeper's lag (measured by the worker
  each round), and the database pool's use (read at scrape time, no I/O).
- Logs: one JSON object per line (``SIDAN_LOG_FORMAT=json``, the default) or plain text. Every line
  written while serving a request carries its request id (``X-Request-ID``, accepted from the client
  or generated, and echoed in the response), the caller's user id and the order id of the path; each
  request ends with one access line. Phone numbers are masked, and credentials in URL queries
  (WeChat's AppSecret, access tokens, login codes) replaced, in every line, whatever logged them.
  Every line goes through the same structlog processors: records of ``logging`` through a
  ``StreamHandler`` with structlog's ``ProcessorFormatter``, the access line through structlog's own
  logger, which writes it straight to the same stream. So the access line follows
  ``SIDAN_LOG_LEVEL`` (``configure_logging``), not ``logging``'s settings for a ``sidan.access`` logger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, date, datetime
from datetime import time as dt_time
from enum import Enum
from typing import Any, Final, TextIO, cast

import orjson
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from sqlalchemy import Connection, Engine, event, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import QueuePool
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.processors import format_exc_info
from structlog.stdlib import ExtraAdder, ProcessorFormatter, add_logger_name
from structlog.typing import EventDict, FilteringBoundLogger, Processor

from app.config import Settings
from app.models import Order, OutboxMessage

# ---- metrics -----------------------------------------------------------------------------------

REQUESTS = Counter("sidan_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("sidan_http_request_seconds", "HTTP request latency", ["method", "route"])
# Under ``sidan serve --workers N`` every worker writes its samples to PROMETHEUS_MULTIPROC_DIR and a
# scrape of any worker reports all of them (``metrics_payload``); ``multiprocess_mode`` says how a
# gauge combines across live workers.
IN_PROGRESS = Gauge("sidan_http_requests_in_progress", "HTTP requests being served", multiprocess_mode="livesum")
TRANSITIONS = Counter("sidan_transitions_total", "Committed state-machine transitions", ["action"])
OUTBOX_PENDING = Gauge(
    "sidan_outbox_pending_messages", "Notifications waiting to be delivered", multiprocess_mode="mostrecent"
)
OUTBOX_OLDEST_AGE = Gauge(
    "sidan_outbox_oldest_pending_age_seconds",
    "Age of the oldest notification still pending (0: none)",
    multiprocess_mode="mostrecent",
)
SWEEPER_LAG = Gauge(
    "sidan_sweeper_lag_seconds",
    "How long the oldest due, unfired deadline is overdue (0: none)",
    multiprocess_mode="mostrecent",
)
BACKLOG_MEASURED = Gauge(
    "sidan_backlog_measured_timestamp_seconds",
    "When the worker last measured the outbox and sweeper backlog",
    multiprocess_mode="max",
)
DB_POOL_CHECKED_OUT = Gauge("sidan_db_pool_checked_out", "Database connections in use", multiprocess_mode="livesum")
DB_POOL_IDLE = Gauge("sidan_db_pool_idle", "Open database connections waiting in the pool", multiprocess_mode="livesum")
DB_POOL_CAPACITY = Gauge(
    "sidan_db_pool_capacity", "Most connections the pools will open (size + overflow)", multiprocess_mode="livesum"
)

_PENDING_TRANSITIONS: Final = "sidan_pending_transitions"


def count_transition(connection: AsyncConnection | None, action: str) -> None:
    """Count one committed transition (``sidan_transitions_total``): now, if its write statement was
    its own transaction (``connection`` ``None`` or in none); else once the transaction open on
    ``connection`` commits (a rollback, even of just the savepoint it ran in, forgets it)."""
    sync = None if connection is None else connection.sync_connection
    if sync is None or not sync.in_transaction():
        _transitions(action).inc()
        return
    sync.info.setdefault(_PENDING_TRANSITIONS, []).append((sync.get_nested_transaction(), action))


def _transitions(action: str) -> Counter:
    child = _transitions_by_action.get(action)
    if child is None:
        child = _transitions_by_action[action] = TRANSITIONS.labels(action)
    return child


# The labelled children of the transitions counter by action (a bounded set), as for the request
# metrics below: a dictionary lookup instead of ``labels()``'s argument handling and lock.
_transitions_by_action: dict[str, Counter] = {}


@event.listens_for(Engine, "commit")
def _count_committed(connection: Connection) -> None:
    if connection.invalidated:
        return  # the DBAPI connection went away with whatever it had pending
    for _, action in connection.info.pop(_PENDING_TRANSITIONS, ()):
        _transitions(action).inc()


@event.listens_for(Engine, "rollback")
def _forget_rolled_back(connection: Connection) -> None:
    if not connection.invalidated:
        connection.info.pop(_PENDING_TRANSITIONS, None)


@event.listens_for(Engine, "rollback_savepoint")
def _forget_savepoint(connection: Connection, name: str, context: object) -> None:
    pending: list[tuple[object, str]] | None = (
        None if connection.invalidated else connection.info.get(_PENDING_TRANSITIONS)
    )
    if pending:
        rolled_back = connection.get_nested_transaction()
        pending[:] = [(nested, action) for nested, action in pending if nested is not rolled_back]


def observe_pool(engine: AsyncEngine, settings: Settings) -> None:
    """Copy the pool's counters into the gauges (cheap and lock-free, no I/O)."""
    pool = engine.sync_engine.pool
    if isinstance(pool, QueuePool):
        DB_POOL_CHECKED_OUT.set(pool.checkedout())
        DB_POOL_IDLE.set(pool.checkedin())
        DB_POOL_CAPACITY.set(settings.db_pool_size + settings.db_max_overflow)


async def watch_pool(engine: AsyncEngine, settings: Settings, every: float = 1.0) -> None:
    """Keep the pool gauges current: now, then once a ``every`` seconds until cancelled (and at each
    scrape). Not on every checkout and checkin: listeners there cost more than the checkout itself.
    Each worker process refreshes its own, so a scrape of any one sums every pool within a second."""
    while True:
        observe_pool(engine, settings)
        await asyncio.sleep(every)


def metrics_payload() -> bytes:
    """The text a scrape returns: this process's metrics, or every worker's under ``--workers N``."""
    if os.environ.get(MULTIPROCESS_DIR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def process_exiting() -> None:
    """A worker stops: its live gauges no longer count."""
    if os.environ.get(MULTIPROCESS_DIR):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


MULTIPROCESS_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"


async def measure_backlog(
    sessionmaker: async_sessionmaker[AsyncSession], due_statuses: Iterable[str], *, now: datetime | None = None
) -> None:
    """Set the outbox backlog and sweeper lag gauges: two small queries on partial indexes."""
    now = now or datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        pending, oldest = (
            await session.execute(
                select(func.count(), func.min(OutboxMessage.created_at)).where(OutboxMessage.status == "pending")
            )
        ).one()
        overdue = await session.scalar(
            select(func.min(Order.deadline_at)).where(Order.deadline_at <= now, Order.status.in_(list(due_statuses)))
        )
    OUTBOX_PENDING.set(pending)
    OUTBOX_OLDEST_AGE.set(max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0)
    SWEEPER_LAG.set(max((now - overdue).total_seconds(), 0.0) if overdue is not None else 0.0)
    BACKLOG_MEASURED.set(time.time())


# ---- request context ---------------------------------------------------------------------------

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_NAME = REQUEST_ID_HEADER.lower().encode()
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_request_scope: ContextVar[Scope | None] = ContextVar("sidan_request_scope", default=None)


def request_context() -> dict[str, Any]:
    """request_id, method, path, user_id (once authenticated) and order_id of the request being served."""
    scope = _request_scope.get()
    if scope is None:
        return {}
    state: dict[str, Any] = scope.get("state") or {}
    context: dict[str, Any] = {
        "request_id": state.get("request_id"),
        "method": scope.get("method"),
        "path": scope.get("path"),
        "user_id": state.get("user_id"),  # set by app.auth.current_actor
    }
    order_id = (scope.get("path_params") or {}).get("order_id")
    if order_id is not None:
        text = str(order_id)
        # ASCII digits only: ``int("²")`` raises (``str.isdigit`` says yes), and the id came from a client
        context["order_id"] = int(text) if text.isascii() and text.isdigit() else text
    return context


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _VALID_REQUEST_ID.fullmatch(candidate):
                return candidate
            break  # never copy arbitrary client bytes into the logs
    return new_request_id()


def new_request_id() -> str:
    """128 random bits as 32 hex digits (a uuid4's shape, without building the UUID); never one that
    log masking would alter (a digit run shaped like a phone, about one id in a hundred), so the id in
    the logs is always the one in the response header."""
    while True:
        candidate = os.urandom(16).hex()
        if _PHONE.search(candidate) is None:
            return candidate


# The labelled children of the request metrics, by label values (route templates are bounded, see
# ``_template``): a dictionary lookup instead of ``labels()``'s argument handling and lock per request.
_latency_by_route: dict[tuple[str, str], Histogram] = {}
_requests_by_route: dict[tuple[str, str, int], Counter] = {}


class ObservabilityMiddleware:
    """Request id, log context, metrics and the access line for every HTTP request (plain ASGI: it
    neither buffers the response nor runs the endpoint in another task).

    ``api_prefix``: the prefix the API routers are included under; FastAPI reports a route's path
    relative to its router, and the metrics name the full template (``/api/v1/orders/{order_id}``).
    """

    def __init__(self, app: ASGIApp, api_prefix: str = "") -> None:
        self.app = app
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        token = _request_scope.set(scope)
        status = 500  # unless a response starts, the server answers 500
        started = time.perf_counter()

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (_REQUEST_ID_NAME, request_id.encode())]
            await send(message)

        IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_with_request_id)
        except asyncio.CancelledError:
            status = 499  # the client went away (nginx's code); the transaction rolled back
            raise
        finally:
            IN_PROGRESS.dec()
            elapsed = time.perf_counter() - started
            route = self._template(scope)
            method = scope["method"]
            latency = _latency_by_route.get((method, route)) or _latency_by_route.setdefault(
                (method, route), LATENCY.labels(method, route)
            )
            latency.observe(elapsed)
            requests = _requests_by_route.get((method, route, status)) or _requests_by_route.setdefault(
                (method, route, status), REQUESTS.labels(method, route, str(status))
            )
            requests.inc()
            level = logging.WARNING if status >= 500 else logging.INFO
            try:
                if access_log.is_enabled_for(level):
                    access_log.log(
                        level,
                        # never the query string: it may carry search terms such as phones
                        f"{method} {scope['path']} {status} {elapsed * 1000:.1f}ms",
                        route=route,
                        status=status,
                        duration_ms=round(elapsed * 1000, 2),
                    )
            except (OSError, ValueError):
                pass  # stderr is gone (a closed pipe): as ``logging`` does, the request does not fail for it
            finally:
                _request_scope.reset(token)

    def _template(self, scope: Scope) -> str:
        """The matched route's path template (bounded label values: never the raw path)."""
        path = getattr(scope.get("route"), "path", None)
        if not isinstance(path, str):
            return "unmatched"
        prefix = self.api_prefix
        if prefix and scope["path"].startswith(prefix + "/") and not path.startswith(prefix + "/"):
            return prefix + path
        return path


# ---- logging -----------------------------------------------------------------------------------

# Mainland mobile numbers (1[3-9] + 9 digits, maybe +86 and spaced/dashed 3-4-4), not inside a
# longer run of digits: 138****5678.
_PHONE = re.compile(r"(?<!\d)((?:\+?86[- ]?)?1[3-9]\d)[- ]?\d{4}[- ]?(\d{4})(?!\d)")

# What every match of ``_PHONE`` contains (its eleven digits, maybe split 3-4-4): a text without it is
# returned as it is, after a scan five times cheaper than ``_PHONE.sub`` (every log line is scanned).
_ELEVEN_DIGITS = re.compile(r"\d{3}[- ]?\d{4}[- ]?\d{4}")

# Query parameters that carry credentials: WeChat's AppSecret (code2session, cgi-bin/token), its access
# token (subscribe/send) and the login code. httpx logs every request's URL at INFO, query included.
_SECRET_PARAMS = re.compile(r"(?i)([?&](?:secret|appsecret|access_token|refresh_token|js_code|code)=)[^&#\s\"'\\]+")
SECRET_PLACEHOLDER: Final = "***"


def mask_phones(text: str) -> str:
    if _ELEVEN_DIGITS.search(text) is None:
        return text
    return _PHONE.sub(r"\1****\2", text)


def redact(text: str) -> str:
    """``text`` fit for a log line: phone numbers masked, credentials in URL queries replaced."""
    text = mask_phones(text)
    if "=" in text:
        text = _SECRET_PARAMS.sub(rf"\1{SECRET_PLACEHOLDER}", text)
    return text


_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


def _redacted(value: Any) -> Any:
    """``value`` as plain JSON types (str, int, float, bool, None, dict with str keys, list), every
    string in it redacted: containers walked, other objects as their text."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Enum):
        return _redacted(value.value)
    if isinstance(value, int):
        return int(value) if _INT64_MIN <= value <= _UINT64_MAX else str(value)  # as JSON writers can
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {redact(str(key)): _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted(item) for item in value]
    if isinstance(value, datetime | date | dt_time):
        return value.isoformat()
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    return redact(str(value))


# Processors (structlog's): every line, whether written through ``logging`` (uvicorn, httpx, ours) or
# by the access logger directly, goes through the same ones.


def _request_fields(_: Any, __: str, event: EventDict) -> EventDict:
    """The context of the request being served (if any), never overriding a field of the same name."""
    for key, value in request_context().items():
        if value is not None:
            event.setdefault(key, value)
    return event


# What ``structlog.stdlib.ExtraAdder`` copies from a record that no line prints: uvicorn's copy of a
# message with terminal colours (``extra={"color_message": ...}``).
_NOT_LOGGED = "color_message"


def _shaped(_: Any, method_name: str, event: EventDict) -> EventDict:
    """ts, level, logger and message first, then the request context and any other fields, then
    ``exc`` (the traceback, if any). ``logger``: the record's logger (``add_logger_name``), or the one
    an event of structlog's own was bound to."""
    event.pop(_NOT_LOGGED, None)
    shaped: EventDict = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": method_name.upper(),
        "logger": event.pop("logger", "sidan"),
        "message": event.pop("event", ""),
    }
    exc, stack = event.pop("exception", None), event.pop("stack_info", None)
    for key, value in event.items():
        shaped.setdefault(key, value)  # a field named like a column does not replace it
    if exc is not None:
        shaped["exc"] = exc
    if stack is not None:
        shaped["stack"] = stack
    return shaped


def _json_line(_: Any, __: str, event: EventDict) -> str:
    """One JSON object, every string in it redacted."""
    return orjson.dumps(_redacted(event)).decode()


def _text_line(_: Any, __: str, event: EventDict) -> str:
    """``ts level logger message [request_id=…]`` (then the traceback), redacted."""
    line = f"{event['ts']} {event['level']} {event['logger']} {event['message']}"
    request_id = event.get("request_id")
    if request_id is not None:
        line += f" [request_id={request_id}]"
    for trace in (event.get("exc"), event.get("stack")):
        if trace:
            line += f"\n{trace}"
    return redact(line)


def _processors(settings: Settings) -> list[Processor]:
    """What turns an event into its line: context, shape, then JSON or text (``settings.log_format``)."""
    render = _json_line if settings.log_format == "json" else _text_line
    return [_request_fields, format_exc_info, _shaped, render]


HANDLER_NAME: Final = "sidan"
_STANDARD_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)


class LogHandler(logging.StreamHandler[TextIO]):
    """A stream handler whose report of a line it could not format or write is redacted as well:
    ``logging``'s own (``Handler.handleError``) prints the record's message and arguments as they are."""

    def handleError(self, record: logging.LogRecord) -> None:
        if logging.raiseExceptions and sys.stderr:
            failure = sys.exc_info()[1]
            with contextlib.suppress(OSError):  # stderr itself is gone, as ``logging``'s own report allows
                sys.stderr.write(redact(f"--- Logging error in {record.name}: {type(failure).__name__}: {failure}\n"))


def log_handler(settings: Settings, stream: TextIO | None = None) -> LogHandler:
    """The handler ``configure_logging`` installs for records of ``logging``: a stream handler (stderr
    unless ``stream``) whose formatter runs the processors of every line (structlog's
    ``ProcessorFormatter``)."""
    handler = LogHandler(stream if stream is not None else sys.stderr)
    handler.name = HANDLER_NAME
    handler.setFormatter(
        ProcessorFormatter(
            foreign_pre_chain=[ExtraAdder(), add_logger_name],  # a record's extra fields and its logger
            processors=[ProcessorFormatter.remove_processors_meta, *_processors(settings)],
        )
    )
    return handler


def access_logger(settings: Settings, stream: TextIO | None = None, level: int = logging.INFO) -> FilteringBoundLogger:
    """The access line's logger: structlog's own, writing its line straight to the stream (stderr
    unless ``stream``), with the processors of every other line. Not through ``logging``, whose record,
    handler and formatter cost a third more, on every request: 18 against 12 µs in a loop, about 20 µs
    of a request's CPU live (``bench/README.md``, stop 17). ``level``: the least level written (structlog
    filters by the standard levels only: a custom one counts as the next standard level above it)."""
    standard = next((known for known in _STANDARD_LEVELS if known >= level), logging.CRITICAL)
    return cast(
        FilteringBoundLogger,
        structlog.wrap_logger(
            structlog.WriteLogger(stream if stream is not None else sys.stderr),
            processors=_processors(settings),
            wrapper_class=structlog.make_filtering_bound_logger(standard),
        ).bind(logger="sidan.access"),
    )


# Until ``configure_logging`` runs (an app built by a test, say), access lines at WARNING and above
# (5xx answers) are written to stderr, as ``logging`` writes a warning nobody configured a handler for.
access_log = access_logger(Settings.model_construct(log_format="json"), level=logging.WARNING)


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Send every log line (uvicorn's and httpx's too) to stderr (or ``stream``) in
    ``settings.log_format``; idempotent: a second call replaces what the first installed."""
    global access_log
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.name == HANDLER_NAME]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(settings.log_level.upper())
    root.addHandler(log_handler(settings, stream))
    access_log = access_logger(settings, stream, root.level)
    # Alembic lists each of its autogenerate plugins at INFO when first imported: noise in a server's log.
    logging.getLogger("alembic.runtime.plugins").setLevel(max(logging.WARNING, root.level))
    # Fields no line prints, not collected for every record (the logging HOWTO's "Optimization"
    # table): thread, process and multiprocessing names.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
