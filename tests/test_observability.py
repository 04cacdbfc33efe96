"""Observability: the Prometheus series, JSON log lines with request context, ``X-Request-ID``,
and no phone number nor credential in any log line."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from app import observability
from app.config import Settings
from app.domain import Action, Status
from app.models import Order, OutboxMessage
from app.observability import (
    _PHONE,
    HANDLER_NAME,
    SECRET_PLACEHOLDER,
    LogHandler,
    ObservabilityMiddleware,
    configure_logging,
    log_handler,
    mask_phones,
    new_request_id,
)
from app.schemas.orders import EmptyBody
from app.services.applying import apply_as_system
from app.services.delivery import LogChannel, Recipient, WechatSubscribeChannel
from app.worker import run_worker
from app.workflow import DUE_ACTIONS
from tests.helpers import free_port
from tests.world import World

PHONE = re.compile(r"(?<!\d)1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)")  # not inside a longer run of digits
APPROVE_ROUTE = "/api/v1/orders/{order_id}/approve"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await client.get("http://test/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


@contextmanager
def _log_lines(log_format: Literal["json", "text"] = "json") -> Iterator[list[str]]:
    """Every line the service would write while the block runs (what ``configure_logging`` installs,
    writing to a string instead of stderr)."""
    stream = io.StringIO()
    lines: list[str] = []
    try:
        with _configured(Settings(log_format=log_format, log_level="INFO"), stream):
            yield lines
    finally:
        lines.extend(stream.getvalue().splitlines())


@contextmanager
def _configured(settings: Settings, stream: io.StringIO | None = None) -> Iterator[None]:
    """``configure_logging(settings, stream)`` for the block; the root logger's handlers and level, and
    the access logger, as before after."""
    root = logging.getLogger()
    saved_handlers, saved_level, saved_access = list(root.handlers), root.level, observability.access_log
    try:
        configure_logging(settings, stream)
        yield
    finally:
        for handler in root.handlers:
            if handler not in saved_handlers:
                handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        observability.access_log = saved_access


def _json_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


# ---- /metrics ------------------------------------------------------------------------------------


async def test_metrics_count_requests_by_route_and_transitions_by_action(
    world: World, client: httpx.AsyncClient, settings: Settings
) -> None:
    ok_before = _sample("sidan_http_requests_total", method="POST", route=APPROVE_ROUTE, status="200")
    conflict_before = _sample("sidan_http_requests_total", method="POST", route=APPROVE_ROUTE, status="409")
    latency_before = _sample("sidan_http_request_seconds_count", method="POST", route=APPROVE_ROUTE)
    approvals_before = _sample("sidan_transitions_total", action="approve")
    publishes_before = _sample("sidan_transitions_total", action="publish")

    orders = [await world.place() for _ in range(3)]
    for order in orders:
        await world.ok("zhan11_admin", order["id"], "approve")
    await world.ok("zhan11_admin", orders[0]["id"], "publish")
    assert (await world.act("zhan11_admin", orders[0]["id"], "approve")).status_code == 409  # changes nothing

    metrics = await _scrape(client)
    ok = metrics[_key("sidan_http_requests_total", method="POST", route=APPROVE_ROUTE, status="200")]
    assert ok == ok_before + 3
    conflict = metrics[_key("sidan_http_requests_total", method="POST", route=APPROVE_ROUTE, status="409")]
    assert conflict == conflict_before + 1
    latency = metrics[_key("sidan_http_request_seconds_count", method="POST", route=APPROVE_ROUTE)]
    assert latency == latency_before + 4
    assert metrics[_key("sidan_transitions_total", action="approve")] == approvals_before + 3
    assert metrics[_key("sidan_transitions_total", action="publish")] == publishes_before + 1
    # Unknown paths share one label value: a scanner cannot blow up the series count.
    await client.get("/no/such/path/12345")
    metrics = await _scrape(client)
    assert any(name == "sidan_http_requests_total" and ("route", "unmatched") in labels for name, labels in metrics)
    assert not any("12345" in value for _, labels in metrics for _, value in labels)
    assert metrics[_key("sidan_http_requests_in_progress")] >= 1  # the scrape itself


async def test_metrics_show_database_pool_use(client: httpx.AsyncClient, settings: Settings) -> None:
    metrics = await _scrape(client)
    capacity = metrics[_key("sidan_db_pool_capacity")]
    assert capacity == settings.db_pool_size + settings.db_max_overflow
    assert 0 <= metrics[_key("sidan_db_pool_checked_out")] <= capacity
    assert metrics[_key("sidan_db_pool_idle")] >= 0


async def test_transitions_count_only_once_committed(
    world: World, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    order_id = (await world.place())["id"]
    before = _sample("sidan_transitions_total", action="approve")

    async def approve(session: AsyncSession) -> None:
        assert await apply_as_system(await session.connection(), order_id, Action.APPROVE, EmptyBody()) is not None

    async with sessionmaker() as session:
        transaction = await session.begin()
        await approve(session)
        await transaction.rollback()
    async with sessionmaker() as session, session.begin():  # a savepoint rolled back, its parent committed
        nested = await session.begin_nested()
        await approve(session)
        await nested.rollback()
    assert _sample("sidan_transitions_total", action="approve") == before
    async with sessionmaker() as session, session.begin():
        await approve(session)
    assert _sample("sidan_transitions_total", action="approve") == before + 1


async def test_worker_measures_outbox_backlog_and_sweeper_lag(
    world: World, app: FastAPI, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    order = await world.order_in(Status.DISPATCHED)
    overdue = timedelta(minutes=10)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Order).where(Order.id == order["id"]).values(deadline_at=datetime.now(UTC) - overdue)
        )
        pending = await session.scalar(select(func.count()).where(OutboxMessage.status == "pending"))
    assert pending, "placing and dispatching an order notifies someone"

    from app.observability import measure_backlog

    await measure_backlog(sessionmaker, [s.value for s in DUE_ACTIONS])
    metrics = await _scrape(client)
    assert metrics[_key("sidan_outbox_pending_messages")] == pending
    assert metrics[_key("sidan_outbox_oldest_pending_age_seconds")] >= 0
    lag = metrics[_key("sidan_sweeper_lag_seconds")]
    assert overdue.total_seconds() <= lag < overdue.total_seconds() + 60

    # One round of the real worker: it fires the deadline, sends the outbox, measures again.
    stop = asyncio.Event()
    settings = app.state.settings.model_copy(update={"worker_interval_seconds": 60.0})
    with _log_lines() as lines:
        worker = asyncio.create_task(run_worker(sessionmaker, settings, app.state.http, stop, [LogChannel()]))
        for _ in range(100):
            if _sample("sidan_outbox_pending_messages") == 0 and _sample("sidan_sweeper_lag_seconds") == 0:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(worker, timeout=10)
    metrics = await _scrape(client)
    assert metrics[_key("sidan_outbox_pending_messages")] == 0
    assert metrics[_key("sidan_outbox_oldest_pending_age_seconds")] == 0
    assert metrics[_key("sidan_sweeper_lag_seconds")] == 0
    assert metrics[_key("sidan_backlog_measured_timestamp_seconds")] > 0
    notified = [line for line in _json_lines(lines) if line["logger"] == "app.services.delivery"]
    assert notified, lines
    assert not any(PHONE.search(line) for line in lines), lines


# ---- logs ----------------------------------------------------------------------------------------


async def test_access_line_is_json_with_request_user_and_order_ids(world: World) -> None:
    order_id = (await world.place())["id"]
    with _log_lines() as lines:
        response = await world.act("zhan11_admin", order_id, "approve", headers={"X-Request-ID": "req-4711"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "req-4711"
    access = [line for line in _json_lines(lines) if line["logger"] == "sidan.access"]
    assert len(access) == 1, lines
    entry = access[0]
    assert entry["request_id"] == "req-4711"
    assert entry["user_id"] == world.users["zhan11_admin"]
    assert entry["order_id"] == order_id
    assert entry["method"] == "POST"
    assert entry["path"] == f"/api/v1/orders/{order_id}/approve"
    assert entry["route"] == APPROVE_ROUTE
    assert entry["status"] == 200
    assert entry["duration_ms"] >= 0
    assert entry["level"] == "INFO"
    assert datetime.fromisoformat(entry["ts"])


async def test_request_id_is_generated_when_missing_or_unsafe(world: World, client: httpx.AsyncClient) -> None:
    generated = await client.get("/orders/mine", headers=world.h("r1"))
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-ID"])
    again = await client.get("/orders/mine", headers=world.h("r1"))
    assert again.headers["X-Request-ID"] != generated.headers["X-Request-ID"]
    unsafe = await client.get("/orders/mine", headers=world.h("r1") | {"X-Request-ID": "a b\tc" + "x" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["X-Request-ID"])
    errors = await client.get("/orders/mine", headers={"X-Request-ID": "no-token-1"})
    assert errors.status_code == 401
    assert errors.headers["X-Request-ID"] == "no-token-1"


def test_generated_request_ids_are_never_altered_by_log_masking(monkeypatch: pytest.MonkeyPatch) -> None:
    """A random id with a phone-shaped run of digits would be logged masked, unlike its header: such an
    id is drawn again."""
    phone_shaped = bytes.fromhex("a13812345678b" + "c" * 19)
    plain = bytes.fromhex("0123abcd" * 4)
    draws = iter([phone_shaped, plain])
    monkeypatch.setattr(os, "urandom", lambda n: next(draws))
    assert mask_phones(phone_shaped.hex()) != phone_shaped.hex()
    assert new_request_id() == plain.hex() == mask_phones(plain.hex())


async def test_lines_logged_inside_a_request_carry_its_context() -> None:
    """Any logger, anywhere below the middleware, gets request_id / user_id / order_id for free."""
    service_log = logging.getLogger("app.services.example")

    async def handler(request: Request) -> PlainTextResponse:
        request.state.user_id = 42  # what app.auth.current_actor does
        service_log.warning("order %s needs attention, call 13812345678", request.path_params["order_id"])
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/api/v1/orders/{order_id}/note", handler, methods=["POST"])])
    transport = httpx.ASGITransport(app=ObservabilityMiddleware(inner, api_prefix="/api/v1"))
    with _log_lines() as lines:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.post("/api/v1/orders/77/note", headers={"X-Request-ID": "ctx-1"})
    assert response.status_code == 200
    entries = _json_lines(lines)
    service = next(e for e in entries if e["logger"] == "app.services.example")
    assert service | {"ts": None} == {
        "ts": None,
        "level": "WARNING",
        "logger": "app.services.example",
        "message": "order 77 needs attention, call 138****5678",
        "request_id": "ctx-1",
        "user_id": 42,
        "order_id": 77,
        "method": "POST",
        "path": "/api/v1/orders/77/note",
    }
    access = next(e for e in entries if e["logger"] == "sidan.access")
    assert access["route"] == "/api/v1/orders/{order_id}/note"


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_no_phone_number_reaches_the_logs(
    world: World, client: httpx.AsyncClient, log_format: Literal["json", "text"]
) -> None:
    """Phones travel in bodies (orders), queries (searches) and, typed by a resident, free text that
    ends up in notification payloads: none of it may be logged in clear, in either format."""
    with _log_lines(log_format) as lines:
        custom = await world.place(item_id=None, title="请志愿者到了打13812345678")
        await client.get("/orders/mine", params={"q": "13812345678"}, headers=world.h("r1"))
        await world.ok("zhan11_admin", custom["id"], "approve")
        logging.getLogger("app.services.delivery").info("notify payload=%s", {"title": custom["title"]})
        try:
            raise ValueError("contact 13812345678 unreachable")
        except ValueError:
            logging.getLogger("app.test").exception("failed for 13900000000", extra={"contact": "13700000000"})
    assert lines
    assert not any(PHONE.search(line) for line in lines), [line for line in lines if PHONE.search(line)]
    assert any("138****5678" in line for line in lines)
    assert any("ValueError: contact 138****5678 unreachable" in line for line in lines)


def test_configure_logging_installs_one_stream_handler_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    log = logging.getLogger("app.test")
    with _configured(Settings(log_format="text")):
        configure_logging(Settings(log_format="text", log_level="warning"))
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1
        handler = ours[0]
        assert isinstance(handler, LogHandler) and handler.stream is sys.stderr
        assert handler.name == HANDLER_NAME
        assert root.level == logging.WARNING
        assert not observability.access_log.is_enabled_for(logging.INFO)
        assert observability.access_log.is_enabled_for(logging.WARNING)
        log.info("not at this level")
        log.warning("call %s", "13812345678")
        log.warning("as a request's", extra={"request_id": "r-1"})
        configure_logging(Settings(log_format="json"))
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1 and observability.access_log.is_enabled_for(logging.INFO)
        log.warning("call 13912345678", extra={"order_id": 5})
    text, with_id, line = capsys.readouterr().err.splitlines()
    assert text.endswith(" WARNING app.test call 138****5678"), text
    assert with_id.endswith(" WARNING app.test as a request's [request_id=r-1]"), with_id
    entry = json.loads(line)
    assert entry | {"ts": None} == {
        "ts": None,
        "level": "WARNING",
        "logger": "app.test",
        "message": "call 139****5678",
        "order_id": 5,
    }
    assert datetime.fromisoformat(entry["ts"]).tzinfo is not None


async def test_access_line_goes_where_the_other_lines_go_at_their_level() -> None:
    """The access line is written by structlog's own logger, not through ``logging``: it follows
    ``configure_logging`` (stream, format, level) all the same, and a 5xx answer is logged at WARNING."""

    async def fails(request: Request) -> PlainTextResponse:
        return PlainTextResponse("no", status_code=503)

    inner = Starlette(routes=[Route("/ok", lambda request: PlainTextResponse("ok")), Route("/down", fails)])
    transport = httpx.ASGITransport(app=ObservabilityMiddleware(inner))
    stream = io.StringIO()
    with _configured(Settings(log_format="text", log_level="WARNING"), stream):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/ok")).status_code == 200
            assert (await http.get("/down", headers={"X-Request-ID": "down-1"})).status_code == 503
    (line,) = stream.getvalue().splitlines()
    assert " WARNING sidan.access GET /down 503 " in line and line.endswith("ms [request_id=down-1]"), line


def test_odd_fields_are_written_masked_and_never_replace_a_column(capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever a line carries (keys that are not strings, float subclasses, exceptions, a field named
    like a column), it is written, masked; a line that cannot be formatted is reported masked too
    (``logging``'s own report prints the record's arguments as they are)."""

    class Ratio(float):
        pass

    log = logging.getLogger("app.test")
    with _log_lines() as lines:
        log.warning(
            "call %s",
            "13812345678",
            extra={
                "by_id": {7: "13912345678"},
                "ratio": Ratio(1.5),
                "error": ValueError("13712345678 unreachable"),
                "level": "forged",
                "when": datetime(2026, 12, 6, tzinfo=UTC),
            },
        )
    (entry,) = _json_lines(lines)
    assert entry | {"ts": None} == {
        "ts": None,
        "level": "WARNING",
        "logger": "app.test",
        "message": "call 138****5678",
        "by_id": {"7": "139****5678"},
        "ratio": 1.5,
        "error": "ValueError: 137****5678 unreachable",
        "when": "2026-12-06T00:00:00+00:00",
    }
    unformattable = logging.getLogger("app.test.unformattable")  # not through pytest's own capture,
    unformattable.propagate = False  # whose handler raises on a line it cannot format
    unformattable.addHandler(handler := log_handler(Settings(), io.StringIO()))
    try:
        unformattable.warning("%d orders for %s", "not a number", "13612345678")
    finally:
        unformattable.removeHandler(handler)
    reported = capsys.readouterr().err
    assert "Logging error in app.test.unformattable: TypeError" in reported, reported
    assert not PHONE.search(reported), reported


async def test_access_line_survives_a_lost_stream_and_odd_paths() -> None:
    """A path id with a digit that is not ASCII ("²": ``str.isdigit`` says yes, ``int`` refuses) is
    logged as text; and when stderr is gone (a closed pipe) the request is still answered and its
    context cleared, as ``logging`` would not fail it either."""
    inner = Starlette(routes=[Route("/orders/{order_id}", lambda request: PlainTextResponse("ok"))])
    transport = httpx.ASGITransport(app=ObservabilityMiddleware(inner))
    stream = io.StringIO()
    with _configured(Settings(log_format="json", log_level="INFO"), stream):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/orders/²")).status_code == 200
            lines = [line for line in _json_lines(stream.getvalue().splitlines()) if line["logger"] == "sidan.access"]
            assert [(line["order_id"], line["status"]) for line in lines] == [("²", 200)], lines
            stream.close()
            assert (await http.get("/orders/5")).status_code == 200
    assert observability.request_context() == {}


def test_a_custom_level_filters_the_access_line_as_the_next_standard_one() -> None:
    logging.addLevelName(25, "NOTICE")
    with _configured(Settings(log_level="NOTICE")):
        assert logging.getLogger().level == 25
        assert not observability.access_log.is_enabled_for(logging.INFO)
        assert observability.access_log.is_enabled_for(logging.WARNING)


# ---- credentials in URLs -------------------------------------------------------------------------

APP_SECRET = "S3CRET-appsecret-4711"
ACCESS_TOKEN = "T0KEN-access-4711"
LOGIN_CODE = "C0DE-login-4711"


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_credentials_in_url_queries_are_redacted(log_format: Literal["json", "text"]) -> None:
    """httpx logs every request's URL at INFO; WeChat's API takes the AppSecret, the access token and
    the login code in the query. Whatever logs such a URL (as an argument, in an exception, as an
    ``extra``), the values are replaced and the rest of the URL stays."""
    url = httpx.URL(
        "http://127.0.0.1:9/sns/jscode2session",
        params={"appid": "wx-app", "secret": APP_SECRET, "js_code": LOGIN_CODE, "grant_type": "authorization_code"},
    )
    with _log_lines(log_format) as lines:
        # exactly what httpx logs for each request
        logging.getLogger("httpx").info('HTTP Request: %s %s "%s %d %s"', "GET", url, "HTTP/1.1", 200, "OK")
        logging.getLogger("app.test").warning("sent to %s", f"http://h/cgi-bin/x?ACCESS_TOKEN={ACCESS_TOKEN}")
        try:
            raise RuntimeError(f"Server error for url '{url}'")
        except RuntimeError:
            logging.getLogger("app.test").exception("failed", extra={"url": url, "urls": [str(url)]})
    output = "\n".join(lines)
    for secret in (APP_SECRET, ACCESS_TOKEN, LOGIN_CODE):
        assert secret not in output, output
    assert "/sns/jscode2session?appid=wx-app&secret=***&js_code=***&grant_type=authorization_code" in lines[0]
    assert f"ACCESS_TOKEN={SECRET_PLACEHOLDER}" in lines[1]
    assert "RuntimeError: Server error for url" in output


class _WechatStandIn(BaseHTTPRequestHandler):
    """Stand-in for api.weixin.qq.com: code2session, the access token, subscribe messages."""

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        if path == "/sns/jscode2session":
            self._answer({"openid": "openid-logs", "session_key": "sk"})

    def do_POST(self) -> None:  # /cgi-bin/stable_token, /cgi-bin/message/subscribe/send
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if urlparse(self.path).path == "/cgi-bin/stable_token":
            self._answer({"access_token": ACCESS_TOKEN, "expires_in": 7200})
        else:
            self._answer({"errcode": 0})

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


async def test_wechat_credentials_never_reach_stderr(
    world: World, app: FastAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Logging set up as ``sidan serve`` does, a WeChat login and a subscribe message over real HTTP to a
    local stand-in: httpx logs each request, and stderr carries none of the credentials."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WechatStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(app.state.settings, "wechat_base_url", base)
    monkeypatch.setattr(app.state.settings, "wechat_secret", APP_SECRET)
    try:
        with _configured(Settings()):
            login = await world.client.post("/auth/wechat", json={"code": LOGIN_CODE})
            channel = WechatSubscribeChannel(app.state.http, base, "wx-app", APP_SECRET, "tpl")
            message = OutboxMessage(payload={"order_id": 1, "code": "SD1", "title": "t", "status": "approved"})
            delivered = await channel.send(Recipient(user_id=None, wechat_openid="openid-logs"), message)
    finally:
        server.shutdown()
        server.server_close()
    assert login.status_code == 200 and delivered
    err = capsys.readouterr().err
    requests = [e["message"] for e in _json_lines(err.splitlines()) if e["logger"] == "httpx"]
    assert any("/sns/jscode2session?" in m and "secret=***" in m and "js_code=***" in m for m in requests), err
    assert any("/cgi-bin/stable_token" in m for m in requests), err  # the AppSecret goes in its body
    assert any("/subscribe/send?access_token=***" in m for m in requests), err
    for secret in (APP_SECRET, ACCESS_TOKEN, LOGIN_CODE):
        assert secret not in err


def test_mask_phones_keeps_other_numbers() -> None:
    assert mask_phones("13812345678") == "138****5678"
    assert mask_phones("tel:+86 13812345678.") == "tel:+86 138****5678."
    assert mask_phones("SD2026112313812345678") == "SD2026112313812345678"  # part of a longer number
    assert mask_phones("order 12345678901") == "order 12345678901"  # not a mobile prefix
    assert mask_phones("+8613812345678, 138-1234-5678, 138 1234 5678") == ("+86138****5678, 138****5678, 138****5678")


def test_mask_phones_skips_only_texts_without_a_phone() -> None:
    """The cheap pre-scan never lets a phone through: on random texts of digits, separators and
    letters, the result is always the full pattern's."""
    rng = random.Random(20261128)
    alphabet = "0123456789" * 4 + "1" * 10 + "3456789" * 3 + "- +86x/"
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        assert mask_phones(text) == _PHONE.sub(r"\1****\2", text), text


# ---- several worker processes ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def _samples(text: str, name: str, **labels: str) -> list[float]:
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


async def test_metrics_of_every_worker_under_serve_workers(database_url: str, tmp_path: Path) -> None:
    """``sidan serve --workers 2``: a scrape of either worker reports both workers' requests and pools."""
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": database_url,
        "SIDAN_RUN_WORKER": "false",
        "SIDAN_DB_POOL_SIZE": "3",
        "SIDAN_DB_MAX_OVERFLOW": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "serve.log"
    process = await asyncio.to_thread(_spawn, ["serve", "--workers", "2", "--port", str(port)], env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{base}/readyz")).status_code == 200:
                        break
                assert process.poll() is None, log.read_text()
                await asyncio.sleep(0.2)
        requests = 40
        for _ in range(requests):  # a new connection each: the workers share them out
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"{base}/healthz")).status_code == 200
        for _ in range(6):
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"{base}/metrics")).text
            served = _samples(text, "sidan_http_requests_total", route="/healthz", status="200")
            assert served and sum(served) >= requests, text
            # Both workers' pools, whichever worker answers: 2 × (3 + 1).
            assert _samples(text, "sidan_db_pool_capacity") == [8.0], text
    finally:
        await asyncio.to_thread(_stop, process)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
