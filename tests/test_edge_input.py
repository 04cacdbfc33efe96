"""Nothing a client sends gives a 500 (#14): datetimes at the ends of the calendar with extreme offsets,
tampered keyset cursors and correctly signed tokens whose ``sub`` is no user id are a 422 or a 401 in
the one error shape, change nothing and log nothing at ERROR.

First the types themselves, with Hypothesis over extreme values (``tests/edges.py``): the request
``DateTime`` and ``PeriodBound``, the cursor codec and the token's claims each give a clean value or
their validation error, never another exception. Then every endpoint class that takes them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, TypeVar

import httpx
import jwt
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from app.auth import token_claims
from app.domain import Status
from app.errors import DomainError, InvalidInput, Unauthorized
from app.models import Order, OrderEvent
from app.routers.stats import requested_period
from app.schemas.common import EARLIEST, LATEST, MAX_BIGINT, DateTime, PeriodBound
from app.services.pagination import decode_cursor, encode_cursor
from tests import edges
from tests.helpers import count, snapshot
from tests.world import World

PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REQUEST_DATETIME: TypeAdapter[datetime] = TypeAdapter(DateTime)
PERIOD_BOUND: TypeAdapter[date | datetime | None] = TypeAdapter(PeriodBound | None)
SECRET = "edge-test-secret-" * 3
T = TypeVar("T")


def _utc(value: datetime) -> datetime | None:
    """``value`` in UTC, or ``None`` where that leaves Python's calendar."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return None


def _attempt(call: Callable[[], T]) -> T | DomainError:
    """What ``call`` returns, or the domain error it raises; any other exception fails the test."""
    try:
        return call()
    except DomainError as exc:
        return exc


def _in_calendar(value: datetime) -> bool:
    instant = _utc(value)
    return instant is not None and EARLIEST <= instant < LATEST


# --- the request datetime -------------------------------------------------------------------------


@PROPERTIES
@given(value=edges.aware_datetimes)
@example(value=datetime.min.replace(tzinfo=timezone(timedelta(hours=5))))
@example(value=datetime.max.replace(tzinfo=timezone(timedelta(hours=-14))))
def test_a_datetime_is_taken_exactly_when_it_lies_in_the_calendar(value: datetime) -> None:
    text = value.isoformat()
    for parse in (REQUEST_DATETIME.validate_python, _from_json):
        if _in_calendar(value):
            assert parse(text) == value
        else:
            with pytest.raises(ValidationError, match="1900-01-01"):
                parse(text)


def _from_json(text: str) -> datetime:
    """As a request body is read."""
    return REQUEST_DATETIME.validate_json(json.dumps(text))


@PROPERTIES
@given(
    value=st.one_of(
        edges.datetime_texts,
        edges.naive_datetimes.map(datetime.isoformat),
        edges.day_texts,
        edges.aware_datetimes,
        st.text(max_size=40),
        st.integers(),
        st.floats(),
        st.booleans(),
        st.none(),
    )
)
def test_anything_is_a_datetime_in_the_calendar_or_a_validation_error(value: Any) -> None:
    try:
        parsed = REQUEST_DATETIME.validate_python(value)
    except ValidationError:
        return
    assert parsed.tzinfo is not None and _in_calendar(parsed)


@PROPERTIES
@given(
    bounds=st.lists(
        st.one_of(
            edges.day_texts,
            edges.datetime_texts,
            edges.datetime_texts.map(lambda text: text.replace("+", " ")),  # "+" unencoded in a query
            edges.naive_datetimes.map(datetime.isoformat),
            st.text(max_size=40),
            st.none(),
        ),
        min_size=2,
        max_size=2,
    )
)
def test_a_period_is_resolved_or_refused_with_a_422(bounds: list[str | None]) -> None:
    """What the stats and export endpoints do with ``from`` / ``to``: the type, then the period."""
    try:
        start, end = (PERIOD_BOUND.validate_python(bound) for bound in bounds)
    except ValidationError:
        return
    for bound in start, end:
        if isinstance(bound, datetime):
            assert _in_calendar(bound)
        elif bound is not None:
            assert EARLIEST.date() <= bound < LATEST.date()
    period = _attempt(lambda: requested_period(start, end))
    if isinstance(period, DomainError):
        assert (period.status_code, type(period)) == (422, InvalidInput)
    else:
        assert period.start < period.end


# --- the cursor codec -----------------------------------------------------------------------------


@PROPERTIES
@given(cursor=edges.tampered_cursors)
@example(cursor=edges.cursor_of("2025-01-01T00:00:00+00:00", MAX_BIGINT + 1))
@example(cursor=edges.cursor_of("0001-01-01T00:00:00+05:00", 1))
@example(cursor=edges.cursor_of("9999-12-31T23:59:59-14:00", 1))
@example(cursor=edges.cursor_of("2025-01-01T00:00:00", 1))
def test_a_cursor_decodes_to_values_in_range_or_is_a_422(cursor: str) -> None:
    decoded = _attempt(lambda: decode_cursor(cursor))
    if isinstance(decoded, DomainError):
        assert (decoded.status_code, decoded.message) == (422, "cursor 无效")
    else:
        created_at, row_id = decoded
        assert created_at.tzinfo is not None and _in_calendar(created_at)
        assert 1 <= row_id <= MAX_BIGINT


@PROPERTIES
@given(created_at=edges.aware_datetimes, row_id=edges.ids)
def test_a_cursor_round_trips_exactly_when_its_parts_are_in_range(created_at: datetime, row_id: int) -> None:
    cursor = encode_cursor(created_at, row_id)
    if _in_calendar(created_at) and 1 <= row_id <= MAX_BIGINT:
        assert decode_cursor(cursor) == (created_at, row_id)
    else:
        with pytest.raises(InvalidInput, match="cursor 无效"):
            decode_cursor(cursor)


# --- the token's claims ---------------------------------------------------------------------------


def _signed(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


_LATER = int((datetime.now(UTC) + timedelta(days=1)).timestamp())


@PROPERTIES
@given(
    sub=st.one_of(edges.subjects, edges.ids.map(str)),
    tv=st.one_of(edges.ids, st.text(max_size=5), st.floats(), st.booleans(), st.none()),
    exp=st.one_of(st.just(_LATER), st.integers(min_value=_LATER, max_value=10**400)),
)
def test_a_signed_token_names_a_user_id_or_is_a_401(sub: str, tv: Any, exp: int) -> None:
    token = _signed({"sub": sub, "tv": tv, "exp": exp})
    claims = _attempt(lambda: token_claims(token, SECRET))
    if isinstance(claims, DomainError):
        assert (claims.status_code, type(claims)) == (401, Unauthorized)
    else:
        user_id, token_version, _ = claims
        assert 1 <= user_id <= MAX_BIGINT and sub == str(user_id)
        assert type(token_version) is int and 0 <= token_version <= MAX_BIGINT


@pytest.mark.parametrize("sub", edges.BAD_SUBJECTS)
def test_a_subject_that_is_no_user_id_is_a_401(sub: str) -> None:
    with pytest.raises(Unauthorized):
        token_claims(_signed({"sub": sub, "tv": 0, "exp": _LATER}), SECRET)
    assert token_claims(_signed({"sub": str(MAX_BIGINT), "tv": 0, "exp": _LATER}), SECRET)[0] == MAX_BIGINT


# --- the endpoints --------------------------------------------------------------------------------

EDGE_DATETIMES = [
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59.999999-23:59",
    "1899-12-31T23:59:59Z",
    "2200-01-01T00:00:00Z",
]
EDGE_DAYS = ["0001-01-01", "9999-12-31", "1899-12-31", "2200-01-01"]


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The API as a client sees it: a crash is a 500 response here, not an exception in the test."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as http:
        yield http


@pytest.fixture(autouse=True)
def _nothing_logged_at_error(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.WARNING):
        yield
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert not errors, [record.getMessage() for record in errors]


def _refused(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error of a refused request, in the one error shape."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == {401: "unauthorized", 422: "invalid_input"}[status] and error["message"]
    return error


@pytest.mark.parametrize("field", ["preferred_start", "preferred_end"])
@pytest.mark.parametrize("value", EDGE_DATETIMES)
async def test_an_order_at_the_calendar_edges_is_422_and_creates_nothing(
    world: World, app: FastAPI, api: httpx.AsyncClient, field: str, value: str
) -> None:
    body = world.order_body(**{field: value})
    error = _refused(await api.post("/orders", json=body, headers=world.h("r1")), 422)
    assert "1900-01-01" in json.dumps(error, ensure_ascii=False)
    assert await count(app, Order) == 0


@pytest.mark.parametrize("name", ["created_from", "created_to"])
@pytest.mark.parametrize("value", EDGE_DATETIMES)
async def test_admin_order_filters_at_the_calendar_edges_are_422(
    world: World, api: httpx.AsyncClient, name: str, value: str
) -> None:
    await world.place("r1")
    response = await api.get("/admin/orders", params={name: value}, headers=world.h("zhan11_admin"))
    _refused(response, 422)


PERIOD_PATHS = [
    "/admin/stats",
    "/admin/exports/orders.csv",
    "/admin/exports/service-records.csv",
    "/admin/exports/volunteer-hours.csv",
]


@pytest.mark.parametrize("path", PERIOD_PATHS)
@pytest.mark.parametrize("name", ["from", "to"])
@pytest.mark.parametrize("value", EDGE_DATETIMES + EDGE_DAYS)
async def test_periods_at_the_calendar_edges_are_422(
    world: World, api: httpx.AsyncClient, path: str, name: str, value: str
) -> None:
    error = _refused(await api.get(path, params={name: value}, headers=world.h("center_admin")), 422)
    assert "1900-01-01" in json.dumps(error, ensure_ascii=False)


async def test_periods_inside_the_calendar_are_served(world: World, api: httpx.AsyncClient) -> None:
    for params in (
        {"from": "1900-01-01", "to": "1904-12-31"},
        {"from": "2195-01-01T00:00:00+14:00", "to": "2199-12-31"},
        {"from": "2025-03-01T06:00:00 08:00", "to": "2025-04-01"},  # "+" unencoded
    ):
        for path in PERIOD_PATHS:
            response = await api.get(path, params=params, headers=world.h("center_admin"))
            assert response.status_code == 200, (path, params, response.text)


# Every list that takes a ``cursor``, with a caller who may read it; a test below holds this to the API.
PAGINATED = {
    "/orders/mine": ("r1", {}),
    "/admin/orders": ("center_admin", {}),
    "/admin/volunteers": ("center_admin", {}),
    "/admin/redemptions": ("center_admin", {}),
    "/volunteer/tasks": ("v11a", {"kind": "assigned"}),
    "/volunteer/me/records": ("v11a", {}),
    "/volunteer/me/points": ("v11a", {}),
    "/volunteer/me/hours": ("v11a", {}),
    "/volunteer/redemptions": ("v11a", {}),
    "/admin/activities": ("center_admin", {}),
    "/activities": ("v11a", {}),
}
TAMPERED_CURSORS = [
    edges.cursor_of("2025-01-01T00:00:00+00:00", MAX_BIGINT + 1),
    edges.cursor_of("2025-01-01T00:00:00+00:00", 2**64),
    edges.cursor_of("2025-01-01T00:00:00+00:00", 0),
    edges.cursor_of("2025-01-01T00:00:00+00:00", -1),
    edges.cursor_of("0001-01-01T00:00:00+05:00", 1),
    edges.cursor_of("9999-12-31T23:59:59-14:00", 1),
    edges.cursor_of("9999-12-31T23:59:59.999999-23:59", MAX_BIGINT),
    edges.cursor_of("2025-01-01T00:00:00", 1),  # no time zone
    edges.cursor_of("1700000000", 1),
    edges.cursor_of("", ""),
    "%%%",
    "bm9wZQ",
    "é",
]


def test_every_paginated_list_is_covered(app: FastAPI) -> None:
    prefix = "/api/v1"
    lists = {
        path.removeprefix(prefix)
        for path, operations in app.openapi()["paths"].items()
        for operation in operations.values()
        if any(parameter["name"] == "cursor" for parameter in operation.get("parameters", []))
    }
    assert lists == set(PAGINATED)


@pytest.mark.parametrize("path", list(PAGINATED))
async def test_tampered_cursors_are_422_on_every_list(world: World, api: httpx.AsyncClient, path: str) -> None:
    user, params = PAGINATED[path]
    assert (await api.get(path, params=params, headers=world.h(user))).status_code == 200
    for cursor in TAMPERED_CURSORS:
        response = await api.get(path, params=params | {"cursor": cursor}, headers=world.h(user))
        assert _refused(response, 422)["message"] == "cursor 无效", cursor


BAD_TOKENS: list[tuple[str, dict[str, Any]]] = [
    *((f"sub {sub!r}", {"sub": sub}) for sub in edges.BAD_SUBJECTS),
    ("sub the largest bigint, no such user", {"sub": str(MAX_BIGINT)}),
    ("tv beyond bigint", {"tv": MAX_BIGINT + 1}),
    ("tv a string", {"tv": "0"}),
    ("exp beyond a float", {"exp": 10**400}),
]


@pytest.mark.parametrize(("case", "claims"), BAD_TOKENS, ids=[case for case, _ in BAD_TOKENS])
async def test_signed_tokens_naming_no_user_are_401_and_change_nothing(
    world: World, app: FastAPI, api: httpx.AsyncClient, case: str, claims: dict[str, Any]
) -> None:
    order = await world.order_in(Status.SUBMITTED)
    before, events, orders = await snapshot(app, order["id"]), await count(app, OrderEvent), await count(app, Order)
    base = {"sub": str(world.users["zhan11_admin"]), "tv": 0, "role": "admin", "exp": _LATER}
    token = _signed(base | claims, world.settings.token_secret)
    headers = {"Authorization": f"Bearer {token}"}
    _refused(await api.get("/me", headers=headers), 401)
    _refused(await api.get("/admin/orders", headers=headers), 401)
    _refused(await api.post("/orders", json=world.order_body(), headers=headers), 401)
    _refused(await api.post(f"/orders/{order['id']}/approve", json={}, headers=headers), 401)
    assert await snapshot(app, order["id"]) == before
    assert (await count(app, OrderEvent), await count(app, Order)) == (events, orders)
    # The same claims with a good subject are accepted: the refusal above is the subject's doing.
    if "sub" in claims:
        good = _signed(base | {k: v for k, v in claims.items() if k != "sub"}, world.settings.token_secret)
        assert (await api.get("/me", headers={"Authorization": f"Bearer {good}"})).status_code == 200
