"""The OpenAPI contract as SDK generators and client teams meet it.

The document is read as a generator reads it: short ASCII operationIds, ASCII title and tags, error
codes the service really sends with details typed per code, 413 / 409 ``busy`` / ``Retry-After``
declared, response fields required, one representation of hours, integers written as integers, enums
for enum-like strings. Then a Python client is generated from the live spec with openapi-python-client
(``--fail-on-warning``) and the whole 四单 loop runs through it against uvicorn on 127.0.0.1, every
answer parsed into the generated models.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

import app
from app.config import Settings
from app.domain import ActionPath
from app.errors import DomainError, error_codes, error_response
from app.main import create_app
from app.schemas.common import MAX_BIGINT
from app.schemas.errors import TYPED_CODES
from app.workflow import USER_ACTIONS
from tests.live import live_server
from tests.world import World

ROOT = Path(__file__).resolve().parent.parent
OPERATION_ID = r"^[a-z][a-z0-9_]*$"
WRITES = {"post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    for module in pkgutil.walk_packages(app.__path__, "app."):
        importlib.import_module(module.name)  # every DomainError class, wherever it is defined
    document: dict[str, Any] = json.loads(json.dumps(create_app(Settings(environment="test")).openapi()))
    return document  # as a client reads it


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def _nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def _schema(spec: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = spec["components"]["schemas"][name]
    return schema


def test_names_are_short_stable_and_ascii(spec: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in _operations(spec)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for operation_id in ids:
        assert operation_id.isascii() and len(operation_id) <= 40, operation_id
        assert re.fullmatch(OPERATION_ID, operation_id), operation_id
    assert sum(map(len, ids)) / len(ids) < 25
    by_route = {(method, path): op["operationId"] for path, method, op in _operations(spec)}
    assert by_route["post", "/api/v1/orders/{order_id}/accept"] == "orders_accept"
    assert by_route["post", "/api/v1/orders/{order_id}/check-in"] == "orders_check_in"
    assert by_route["get", "/api/v1/admin/stats"].startswith("admin_stats_")

    assert spec["info"]["title"].isascii() and "四单" in spec["info"]["summary"]
    described = {tag["name"]: tag["description"] for tag in spec["tags"]}
    used = {tag for _, _, operation in _operations(spec) for tag in operation["tags"]}
    for tag in used:
        assert tag.isascii() and re.fullmatch(OPERATION_ID, tag), tag
        assert not described.get(tag, "").isascii(), f"add {tag} and its Chinese name to app.openapi.TAG_DESCRIPTIONS"
    assert "爱心超市" in described["supermarket"]


def test_error_codes_are_the_codes_the_service_sends(spec: dict[str, Any]) -> None:
    variants = [_schema(spec, ref["$ref"].rsplit("/", 1)[1]) for ref in _error_variants(spec)]
    declared: set[str] = set()
    for variant in variants:
        code = variant["properties"]["code"]
        declared |= set(code.get("enum") or [code["const"]])
        assert variant["required"] == ["code", "message", "details"]
    assert declared == set(error_codes())
    assert declared >= TYPED_CODES

    # Every DomainError class's code (the module fixture imported all of app) …
    classes: list[type[DomainError]] = [DomainError]
    while classes:
        cls = classes.pop()
        assert cls.code in declared, cls
        classes.extend(cls.__subclasses__())
    # … and every code written out where an answer is built by hand.
    for path in (ROOT / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "error_response":
                code = node.args[1] if len(node.args) > 1 else None
                if isinstance(code, ast.Constant):
                    assert code.value in declared, f"{path}: {code.value!r}"


def _error_variants(spec: dict[str, Any]) -> list[dict[str, str]]:
    variants: list[dict[str, str]] = _schema(spec, "ErrorResponse")["properties"]["error"]["anyOf"]
    return variants


def test_error_details_are_typed_per_code(spec: dict[str, Any]) -> None:
    details = {
        name: _schema(spec, _schema(spec, name)["properties"]["details"]["$ref"].rsplit("/", 1)[1])
        for name in ("IllegalTransitionError", "VersionMismatchError", "InvalidInputError", "RetryLaterError")
    }
    assert set(details["IllegalTransitionError"]["required"]) == {"order_id", "status", "allowed_actions"}
    assert details["IllegalTransitionError"]["properties"]["allowed_actions"]["items"]["$ref"].endswith("/ActionPath")
    assert "current_version" in details["VersionMismatchError"]["required"]
    assert "errors" in details["InvalidInputError"]["properties"]
    assert details["RetryLaterError"]["required"] == ["retry_after_seconds"]

    for status, code in ((429, "rate_limited"), (503, "unavailable"), (409, "busy")):
        answer = error_response(status, code, "…")
        body = json.loads(bytes(answer.body))
        assert body["error"]["details"]["retry_after_seconds"] >= 1
        assert answer.headers["Retry-After"] == str(body["error"]["details"]["retry_after_seconds"])
    limited = error_response(429, "rate_limited", "…", {"retry_after_seconds": 42})
    assert limited.headers["Retry-After"] == "42"


def test_413_busy_and_retry_after_are_declared(spec: dict[str, Any]) -> None:
    for path, method, operation in _operations(spec):
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        if "requestBody" in operation:
            assert "413" in responses, where
        if method in WRITES:
            assert "busy" in responses["409"]["description"], where
        for status in ("409", "429", "503"):
            if status in responses:
                assert responses[status]["headers"]["Retry-After"]["schema"]["type"] == "integer", where
    assert "429" in spec["paths"]["/api/v1/orders"]["post"]["responses"]


def test_response_fields_are_required(spec: dict[str, Any]) -> None:
    # Every schema a successful answer reaches: its fields are always there (nullable ones as null).
    todo = [
        node["$ref"].rsplit("/", 1)[1]
        for _, _, operation in _operations(spec)
        for status, response in operation["responses"].items()
        if status.startswith("2")
        for node in _nodes(response)
        if "$ref" in node
    ]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        schema = _schema(spec, name)
        assert set(schema.get("required", [])) == set(schema.get("properties", {})), name
        todo += [node["$ref"].rsplit("/", 1)[1] for node in _nodes(schema) if "$ref" in node]
    assert {"OrderOut", "PolicyOut", "StarLevel", "StatsOut", "StatsGroup", "TokenOut", "VolunteerMe"} <= seen
    page = next(n for n in spec["components"]["schemas"] if n.startswith("Page_OrderOut"))
    assert "next_cursor" in _schema(spec, page)["required"]
    assert "rating" in _schema(spec, "OrderOut")["required"]


def test_types_clients_can_rely_on(spec: dict[str, Any]) -> None:
    # Hours: a number everywhere, in requests and responses.
    for node in _nodes(spec["components"]["schemas"]):
        for name, prop in (node.get("properties") or {}).items():
            if "hours" in name and "$ref" not in prop:
                kinds = {alt.get("type") for alt in prop.get("anyOf", [prop])} - {"null", None}
                assert kinds <= {"number", "integer"} and kinds, (name, prop)
    assert _schema(spec, "HoursTotals")["properties"]["credit"]["type"] == "number"
    assert _schema(spec, "Participant")["properties"]["hours"]["type"] == "number"

    # Integers written as integers, bigint bounds exact.
    bigints = 0
    for node in _nodes(spec):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                if key in node:
                    assert isinstance(node[key], int), node
                    bigints += node[key] == MAX_BIGINT
    assert bigints > 10

    accept = spec["paths"]["/api/v1/orders/{order_id}/accept"]["post"]
    if_match = next(p for p in accept["parameters"] if p["name"] == "If-Match")
    assert if_match["schema"]["type"] == "integer"
    for path in ("orders.csv", "service-records.csv", "volunteer-hours.csv"):
        content = spec["paths"][f"/api/v1/admin/exports/{path}"]["get"]["responses"]["200"]["content"]
        assert content == {"text/csv": {"schema": {"type": "string", "format": "binary"}}}

    # Enum-like strings are enums; actions in the URL's spelling.
    event = _schema(spec, "EventOut")["properties"]
    assert {alt["$ref"].rsplit("/", 1)[1] for alt in event["action"]["anyOf"]} == {"Action", "TimelineNote"}
    assert event["actor_role"]["$ref"].endswith("/Role")
    assert _schema(spec, "VolunteerMe")["properties"]["status"]["enum"] == ["active", "suspended"]
    assert _schema(spec, "OrderOut")["properties"]["allowed_actions"]["items"]["$ref"].endswith("/ActionPath")
    assert "check-in" in _schema(spec, "ActionPath")["enum"]
    assert {path.value for path in ActionPath} == {action.path for action in USER_ACTIONS}
    assert set(spec["paths"]) >= {f"/api/v1/orders/{{order_id}}/{path.value}" for path in ActionPath}


# ---- a generated client, the whole loop --------------------------------------------------------------


def _generate(spec: dict[str, Any], where: Path) -> ModuleType:
    (where / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    shipped = (ROOT / "clients" / "openapi-python-client.yaml").read_text(encoding="utf-8")
    (where / "config.yaml").write_text(shipped + "post_hooks: []\n", encoding="utf-8")  # no formatting pass
    generator = Path(sys.executable).parent / "openapi-python-client"
    options = ["--path", "spec.json", "--config", "config.yaml", "--fail-on-warning", "--output-path", "client"]
    result = subprocess.run(
        [str(generator), "generate", *options],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "warning" not in output.lower(), output
    sys.path.insert(0, str(where / "client"))
    try:
        return importlib.import_module("sidan_api_client")
    finally:
        sys.path.remove(str(where / "client"))


# Models with declared fields that also carry others by contract (a service rule names its own ids).
FREE_FORM = {"InvalidInputDetails"}


def _fully_typed(value: Any, unset: Any, where: str = "answer") -> None:
    """Every field the server sent landed in a declared attribute (none only in ``additional_properties``)
    and, in a successful answer, none of the parsed attributes is UNSET (an error's optional details may be)."""
    assert value is not unset or ".error." in where, where
    if isinstance(value, list):
        for i, item in enumerate(value):
            _fully_typed(item, unset, f"{where}[{i}]")
    elif attrs.has(type(value)):
        declared = [field.name for field in attrs.fields(type(value)) if field.name != "additional_properties"]
        # A model with no declared field is a map (orders by status, an event's payload): keys are its data.
        if declared and type(value).__name__ not in FREE_FORM:
            extra = getattr(value, "additional_properties", {})
            assert not extra, f"{where} ({type(value).__name__}): undeclared {sorted(extra)}"
        for name in declared:
            _fully_typed(getattr(value, name), unset, f"{where}.{name}")


class Sdk:
    """The generated client's modules, by operationId, and a parse check on every answer."""

    def __init__(self, package: ModuleType, base_url: str, world: World) -> None:
        self.package, self.base_url, self.world = package, base_url, world
        self.models = importlib.import_module("sidan_api_client.models")
        self.types = importlib.import_module("sidan_api_client.types")

    def client(self, username: str) -> Any:
        return self.package.AuthenticatedClient(
            base_url=f"{self.base_url}", token=self.world.tokens[username], raise_on_unexpected_status=True
        )

    async def call(self, username: str, tag: str, operation_id: str, status: int = 200, **kwargs: Any) -> Any:
        module = importlib.import_module(f"sidan_api_client.api.{tag}.{operation_id}")
        async with self.client(username) as client:
            response = await module.asyncio_detailed(client=client, **kwargs)
        assert response.status_code == status, (operation_id, response.status_code, response.content)
        parsed = response.parsed
        assert parsed is not None, operation_id
        if not isinstance(parsed, self.types.File):
            _fully_typed(parsed, self.types.UNSET, operation_id)
        return parsed


async def test_generated_client_runs_the_whole_loop(
    spec: dict[str, Any], world: World, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    package = _generate(spec, tmp_path)
    with live_server(settings, database_url) as base_url:
        sdk = Sdk(package, base_url, world)
        m = sdk.models
        placed = await sdk.call(
            "r1",
            "orders",
            "orders_place",
            201,
            body=m.OrderCreate(
                item_id=world.items["center_lecture"],
                description="社区老人想听一场防诈骗讲座",
                unit_id=world.units["zhan11"],
                address="城关镇幸福村文化礼堂",
                contact_name="王大爷",
                contact_phone="13812345678",
            ),
            idempotency_key="contract-1",
        )
        oid = placed.id
        assert placed.status == m.Status.SUBMITTED
        assert m.ActionPath.CANCEL in placed.allowed_actions

        # A refused action parses into the typed error, its allowed actions ready for the URL.
        refused = await sdk.call("r1", "orders", "orders_rate", 409, order_id=oid, body=m.RateBody(stars=5))
        assert isinstance(refused.error, m.IllegalTransitionError)
        assert refused.error.details.status == m.Status.SUBMITTED
        invalid = await sdk.call(
            "zhan11_admin", "orders", "orders_reject", 422, order_id=oid, body=m.ReasonBody(reason="")
        )
        assert isinstance(invalid.error, m.InvalidInputError) and invalid.error.details.errors

        admin, volunteer = "zhan11_admin", "v11a"
        order = await sdk.call(admin, "orders", "orders_approve", order_id=oid)
        assert m.ActionPath.DISPATCH in order.allowed_actions
        target = m.DispatchBody(volunteer_id=world.volunteers[volunteer])
        order = await sdk.call(admin, "orders", "orders_dispatch", order_id=oid, body=target, if_match=order.version)
        order = await sdk.call(volunteer, "orders", "orders_accept", order_id=oid)
        assert m.ActionPath.CHECK_IN in order.allowed_actions
        order = await sdk.call(volunteer, "orders", "orders_check_in", order_id=oid)  # no body, as accept
        assert order.status == m.Status.IN_SERVICE
        record = m.CompleteBody(
            summary="讲座顺利完成",
            served_count=40,
            participants=[m.Participant(volunteer_id=world.volunteers[volunteer], hours=0.5)],
        )
        order = await sdk.call(volunteer, "orders", "orders_complete", order_id=oid, body=record)
        order = await sdk.call("r1", "orders", "orders_rate", order_id=oid, body=m.RateBody(stars=5))
        assert order.status == m.Status.RATED and order.rating.stars == 5

        events = await sdk.call("r1", "orders", "orders_events", order_id=oid)
        assert [e.action.value for e in events] == [
            "place", "approve", "dispatch", "accept", "check_in", "complete", "rate",
        ]  # fmt: skip
        assert events[-1].actor_role == m.Role.RESIDENT

        hours = await sdk.call(volunteer, "volunteer", "volunteer_my_hours")
        assert hours.totals.service == 0.5 and hours.items[0].hours == 0.5
        me = await sdk.call(volunteer, "volunteer", "volunteer_me")
        assert me.service_hours == 0.5 and me.status.value == "active"
        records = await sdk.call(volunteer, "volunteer", "volunteer_my_records")
        assert records.items[0].hours == 0.5
        stats = await sdk.call("center_admin", "admin_stats", "admin_stats_center", group_by=m.GroupBy.UNIT)
        assert stats.overall.placed == 1 and stats.overall.credit_hours == 0.5
        export = await sdk.call("center_admin", "admin_stats", "admin_stats_export_orders")
        assert placed.code in export.payload.read().decode("utf-8-sig")


def test_answers_stored_before_url_spellings_replay_in_them() -> None:
    """An ``Idempotency-Key`` replay loads the answer stored at the time: ``check_in`` then, ``check-in`` now."""
    from app.schemas.orders import OrderOut

    fields: dict[str, Any] = dict.fromkeys(OrderOut.model_fields)
    stored = fields | {"allowed_actions": ["check_in", "release", "cancel"]}
    stored |= {"id": 1, "code": "X", "status": "accepted", "status_label": "已接单", "version": 3, "round": 1}
    stored |= {"unit_id": 1, "title": "t", "description": "d", "address": "a", "contact_name": "n"}
    stored |= {"contact_phone": "138****5678", "beneficiaries": 1, "channel": "app", "placed_by_id": 1}
    stored |= {"by_proxy": False, "created_at": "2026-12-03T08:00:00Z", "updated_at": "2026-12-03T08:00:00Z"}
    stored |= {"needs_followup": False}
    replayed = OrderOut.model_validate(stored)
    assert [a.value for a in replayed.allowed_actions] == ["check-in", "release", "cancel"]
