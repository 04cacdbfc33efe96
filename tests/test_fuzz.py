"""Fuzzing every operation of ``/openapi.json`` with Schemathesis, as each login role.

Schemathesis generates the requests (valid ones, and invalid ones: wrong types, out-of-range numbers,
missing fields, junk path segments) and judges each response: never a 5xx, a status code the
operation declares, a body that matches the declared schema, and invalid input rejected.

Schemathesis's own runner and pytest plugin reach an ASGI app through a private event loop in a
worker thread, but the app under test (engine, asyncpg pool) lives on pytest's session loop. So
here Schemathesis only generates cases and validates responses; the requests go through httpx's
``ASGITransport`` on the app's own loop, against the real test PostgreSQL.

Each role fuzzes a fresh world in which orders exist in most states. Path ids are drawn from the
small numbers the world's rows have (sequences restart at 1 for every test) most of the time, so
requests reach real objects, in and out of the caller's scope. Every route that exists at run time
is covered, including ones added after this file was written.

Bounded for CI: at most ``SIDAN_FUZZ_EXAMPLES`` cases per operation and mode (default 10), sent
round-robin over the operations; after ``MIN_ROUNDS`` rounds a run stops at ``SIDAN_FUZZ_SECONDS`` per
role (default 45), so a slow machine fuzzes every operation a little less rather than some not at all.

Edge values are drawn on purpose (``tests/edges.py``): dates and times at the ends of the calendar
with extreme offsets, and, for every list, otherwise valid requests with a tampered ``cursor``.

The draws are seeded, so the cases are the same every run; set ``SIDAN_FUZZ_SEED`` to explore others
(``SIDAN_FUZZ_EXAMPLES=50 SIDAN_FUZZ_SECONDS=1e9 SIDAN_FUZZ_SEED=7`` is a good long run).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.core.failures import AcceptedNegativeData, Failure
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from sqlalchemy import select

from app.auth import issue_token
from app.domain import Status
from app.models import User
from app.schemas.common import MAX_BIGINT
from tests import edges
from tests.world import World

EXAMPLES = int(os.environ.get("SIDAN_FUZZ_EXAMPLES", "10"))  # per operation and mode, at most
MIN_ROUNDS = min(EXAMPLES, 4)  # per operation and mode, whatever the time
BUDGET_SECONDS = float(os.environ.get("SIDAN_FUZZ_SECONDS", "45"))  # per role, past MIN_ROUNDS
SEED = int(os.environ.get("SIDAN_FUZZ_SEED", "0"))
BASE_URL = "http://test"

# The caller each role fuzzes as. The 中心 admin sees the whole county, so its requests go deepest.
ROLES = {"resident": "r1", "volunteer": "v11a", "admin": "center_admin"}

# Ids the world's rows have: units 1…6, users 1…15, volunteers 1…6, orders placed below 1…10, ….
REAL_IDS = range(1, 13)

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]

# Orders the world gets before fuzzing: (state, resident, unit). r3's 站21 orders are outside the
# resident's and the volunteer's scope.
ORDERS = [
    (Status.RATED, "r1", "zhan11"),
    (Status.COMPLETED, "r1", "zhan11"),
    (Status.IN_SERVICE, "r1", "zhan11"),
    (Status.ACCEPTED, "r1", "zhan11"),
    (Status.DISPATCHED, "r1", "zhan11"),  # v11a now holds its limit of concurrent orders
    (Status.POOLED, "r1", "zhan11"),
    (Status.APPROVED, "r1", "zhan11"),
    (Status.SUBMITTED, "r1", "zhan11"),
    (Status.SUBMITTED, "r3", "zhan21"),
    (Status.POOLED, "r3", "zhan21"),
]

# Every ``date`` / ``date-time`` a request carries (bodies and queries) is drawn a third of the time from
# the whole calendar, its ends included, with extreme offsets (``tests/edges.py``): such values used to
# overflow into 500s. The rest of the time it is an ordinary value, so requests still get through.
schemathesis.openapi.format("date-time", edges.datetime_texts)
schemathesis.openapi.format("date", edges.day_texts)

AnyCase = Case[Any]
Operation = schemathesis.APIOperation[Any, Any, Any, Any]

_ID_KEY = re.compile(r"(^|_)ids?$")


def _small_ids(value: Any, key: str = "") -> Any:
    """Fold valid ids in a request body (``*_id`` / ``*_ids``) onto the world's, so bodies name real
    objects too. Only ids that are already valid (``Id``: 1 … 2⁶³-1) change, and they stay valid, so a
    case generated as invalid input stays invalid."""
    if isinstance(value, dict):
        return {k: _small_ids(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_small_ids(v, key) for v in value]
    if _ID_KEY.search(key) and type(value) is int and 1 <= value <= MAX_BIGINT:
        return value % len(REAL_IDS) + 1
    return value


@pytest.fixture(scope="session")
async def api_schema(app: FastAPI) -> schemathesis.BaseSchema:
    """The schema the app serves at ``/openapi.json``."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http:
        response = await http.get("/openapi.json")
    assert response.status_code == 200
    schema = schemathesis.openapi.from_dict(response.json())

    @schema.hook
    def map_body(_: schemathesis.HookContext, body: Any) -> Any:
        return _small_ids(body)

    return schema


@dataclass
class Findings:
    """Distinct failures, one example each, so a report names every bug once."""

    seen: dict[tuple[str, str], str] = field(default_factory=dict)
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def add(self, label: str, title: str, report: str) -> None:
        self.seen.setdefault((label, title), report)

    def report(self) -> str:
        lines = [f"{len(self.seen)} distinct failure(s) in {self.sent} requests:"]
        lines += [f"\n=== {label}: {title}\n{text[:2000]}" for (label, title), text in self.seen.items()]
        return "\n".join(lines)


def _draw(strategy: st.SearchStrategy[AnyCase], count: int, key: str) -> list[AnyCase]:
    """``count`` cases from ``strategy`` (fewer if it has fewer), seeded by ``key``."""
    cases: list[AnyCase] = []

    @seed(zlib.crc32(key.encode()) + SEED)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @given(strategy)
    def collect(case: AnyCase) -> None:
        cases.append(case)

    with contextlib.suppress(Unsatisfiable):  # nothing to negate (no parameters, no body)
        collect()
    return cases


def _strategies(operation: Operation, token: str) -> Iterator[tuple[str, st.SearchStrategy[AnyCase]]]:
    """Valid and invalid cases, always with the role's token; valid ones mostly with a real path id."""
    auth = {"Authorization": f"Bearer {token}"}
    names = [parameter.name for parameter in operation.path_parameters]
    positive = [operation.as_strategy(GenerationMode.POSITIVE, headers=auth)]
    positive += [
        operation.as_strategy(GenerationMode.POSITIVE, headers=auth, path_parameters=dict.fromkeys(names, i))
        for i in (REAL_IDS if names else ())
    ]
    yield "positive", st.one_of(positive)
    yield "negative", operation.as_strategy(GenerationMode.NEGATIVE, headers=auth)
    if any(parameter.name == "cursor" for parameter in operation.query):
        # Otherwise valid list requests with a cursor no page ever returned (``edges.tampered_cursors``).
        yield "tampered cursor", st.tuples(positive[0], edges.tampered_cursors).map(_with_cursor)


def _with_cursor(drawn: tuple[AnyCase, str]) -> AnyCase:
    case, cursor = drawn
    case.query = {**(case.query or {}), "cursor": cursor}
    return case


async def _send(http: httpx.AsyncClient, case: AnyCase, tokens: dict[str, str]) -> httpx.Response | None:
    """Send ``case`` exactly as Schemathesis would (``requests`` prepares it), but on the app's loop.
    ``tokens`` maps a token baked into the cases to the one to send now."""
    kwargs = case.as_transport_kwargs(base_url=BASE_URL)
    kwargs.pop("auth", None)
    try:
        prepared = requests.Request(**kwargs).prepare()
    except (requests.exceptions.RequestException, ValueError, UnicodeError):
        return None  # not expressible as an HTTP request (e.g. NaN in JSON)
    assert prepared.method is not None and prepared.url is not None
    body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    assert body is None or isinstance(body, bytes), type(body)
    headers = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in prepared.headers.items()}
    bearer = headers.get("Authorization", "").removeprefix("Bearer ")
    if bearer in tokens:
        headers["Authorization"] = f"Bearer {tokens[bearer]}"
    return await http.request(prepared.method, prepared.url, headers=headers, content=body)


def _wechat(request: httpx.Request, appid: str) -> httpx.Response:
    """Stand-in for WeChat's login calls: code2session and getuserphonenumber take codes of even length
    (a phone nobody registered) and refuse the others (40029); stable_token always gives a token."""
    if request.url.path == "/cgi-bin/stable_token":
        return httpx.Response(200, json={"access_token": "fuzz-token", "expires_in": 7200})
    if request.url.path == "/wxa/business/getuserphonenumber":
        code = str(json.loads(request.content).get("code", ""))
        if len(code) % 2 == 0:
            watermark = {"timestamp": 1764979200, "appid": appid}
            info = {"purePhoneNumber": "13588880000", "countryCode": "86", "watermark": watermark}
            return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "phone_info": info})
        return httpx.Response(200, json={"errcode": 40029, "errmsg": "invalid code"})
    code = request.url.params.get("js_code", "")
    if len(code) % 2 == 0:
        return httpx.Response(200, json={"openid": f"fuzz-{zlib.crc32(code.encode())}", "session_key": "sk"})
    return httpx.Response(200, json={"errcode": 40029, "errmsg": "invalid code"})


_BOOL_FOR_NUMBER = re.compile(r"violates `type` at \S+ \(was (integer|number), became boolean\)")


def _is_lax_parsing(case: AnyCase, failure: Failure) -> bool:
    """Invalid input that Pydantic's lax mode accepts on purpose, so not reported: ``true`` where a
    number is declared (read as 1), and a number for a date-time query parameter (read as a Unix
    timestamp, e.g. ``created_to=-600``). Rejecting them takes strict models, a decision of its own."""
    if not isinstance(failure, AcceptedNegativeData):
        return False
    if _BOOL_FOR_NUMBER.search(failure.message):
        return True
    for parameter in case.operation.query:
        schema = parameter.definition.get("schema", {})
        formats = {s.get("format") for s in [schema, *schema.get("anyOf", [])]}
        value = (case.query or {}).get(parameter.name)
        if formats & {"date", "date-time"} and isinstance(value, int | float) and not isinstance(value, bool):
            return True
    return False


@pytest.fixture
async def wechat(app: FastAPI) -> AsyncIterator[None]:
    """The app's outbound HTTP client answers WeChat's login calls itself (``State`` defeats monkeypatch)."""
    real = app.state.http
    appid = app.state.settings.wechat_appid
    app.state.http = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: _wechat(request, appid)))
    try:
        yield
    finally:
        await app.state.http.aclose()
        app.state.http = real


async def _refresh_token(app: FastAPI, username: str) -> str:
    """A fuzzed password reset or 停用 voids the caller's token; carry on with a fresh one."""
    async with app.state.sessionmaker() as session:
        user = (await session.execute(select(User).where(User.username == username))).scalar_one()
        if not user.is_active:
            user.is_active = True
            await session.commit()
        return issue_token(app.state.settings, user)


async def _place_orders(world: World) -> None:
    """Best effort: a state the world's helpers can no longer reach is other tests' business, and
    the fuzz run is still worth having without it."""
    for status, resident, unit in ORDERS:
        try:
            await world.order_in(status, resident=resident, unit=unit)
        except AssertionError:
            continue


@pytest.mark.parametrize("role", list(ROLES))
async def test_fuzz_every_operation(
    app: FastAPI, world: World, api_schema: schemathesis.BaseSchema, role: str, wechat: None
) -> None:
    await _place_orders(world)
    username = ROLES[role]
    token = world.tokens[username]
    findings = Findings()
    plan: list[tuple[str, list[AnyCase]]] = []
    for result in api_schema.get_all_operations():
        if not isinstance(result, Ok):
            findings.add("schema", "operation Schemathesis cannot load", str(result.err()))
            continue
        operation = result.ok()
        for mode, strategy in _strategies(operation, token):
            plan.append((operation.label, _draw(strategy, EXAMPLES, f"{role} {operation.label} {mode}")))
    # Round-robin over the operations, so a slow machine cuts every operation short alike.
    deadline = time.monotonic() + BUDGET_SECONDS
    tokens = {token: token}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a crash must show as a 500
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        for round_ in range(EXAMPLES):
            if round_ >= MIN_ROUNDS and time.monotonic() > deadline:
                break
            for label, cases in plan:
                if round_ >= len(cases):
                    continue
                case = cases[round_]
                response = await _send(http, case, tokens)
                if response is None:
                    continue
                findings.sent += 1
                findings.statuses[response.status_code] = findings.statuses.get(response.status_code, 0) + 1
                try:
                    case.validate_response(response, checks=CHECKS)
                except FailureGroup as group:
                    for failure in group.exceptions:
                        if not _is_lax_parsing(case, failure):
                            findings.add(label, failure.title, str(group))
                if response.status_code == 401:
                    tokens[token] = await _refresh_token(app, username)
    assert not findings.seen, findings.report()
    # Guard against a run that silently tested nothing (every request answered 401, say).
    assert findings.sent >= MIN_ROUNDS * len(plan) // 2, findings.statuses
    assert sum(n for code, n in findings.statuses.items() if code < 300) >= 20, findings.statuses
