"""The action lane: the hottest requests, ``POST /api/v1/orders/{id}/{action}``, served in one pass.

On 学雷锋日 nearly every request is one of these, and FastAPI's routing (a walk over every route) and
dependency injection cost more CPU than the transition itself. This ASGI middleware recognises a
well-formed transition request (path, bearer token, JSON body valid for the action, no
``Idempotency-Key``), reads the caller with the order and writes the transition without a transaction
(``transitions.apply_unlocked``: two round trips, compare-and-set), and answers exactly what the
FastAPI endpoint would.

Everything else goes on to FastAPI unchanged, the body replayed: malformed or unauthenticated
requests (so every 401 and 422 keeps its one source), idempotent retries, and actions that need the
transactional path (``apply_unlocked`` returns ``None`` before writing anything). The FastAPI routes
stay the documentation and the reference; the test suite drives both.
"""

from __future__ import annotations

import re
from email.message import Message as MimeMessage
from typing import Any

import orjson
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import token_claims
from app.config import Settings
from app.domain import Action
from app.errors import DomainError, database_error_response, domain_error_response, error_response
from app.limits import BodyTooLarge
from app.prepared import KeptConnections
from app.routers.deps import expected_version
from app.schemas.common import MAX_BIGINT
from app.schemas.orders import EmptyBody, body_for
from app.services.transitions import LOCKLESS, apply_unlocked
from app.workflow import USER_ACTIONS

_JSON = [(b"content-type", b"application/json")]


class _Lane:
    """One action's lane: the body it takes and the FastAPI route it stands in for."""

    def __init__(self, action: Action, route: APIRoute) -> None:
        self.action, self.route = action, route
        self.body: type[BaseModel] = body_for(action)
        self.body_optional = self.body is EmptyBody


class ActionLane:
    """See the module docstring. ``routes``: the FastAPI routes of the action endpoints (named
    ``order_<action>``), whose answers this middleware reproduces."""

    def __init__(self, app: ASGIApp, api_prefix: str, routes: list[Any]) -> None:
        self.app = app
        by_name = {route.name: route for route in routes if isinstance(route, APIRoute)}
        self.lanes = {
            action.path: _Lane(action, by_name[f"order_{action.value}"])
            for action in USER_ACTIONS
            if action in LOCKLESS
        }
        self.path = re.compile(rf"{re.escape(api_prefix)}/orders/([0-9]{{1,19}})/([a-z_-]+)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = self.path.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        lane = None if match is None else self.lanes.get(match[2])
        order_id = 0 if match is None else int(match[1])
        if lane is None or not 1 <= order_id <= MAX_BIGINT:
            await self.app(scope, receive, send)
            return
        try:
            raw = await _read_body(receive)
        except BodyTooLarge as exc:  # raised by ``app.limits.BodySizeLimit``, outside this middleware
            await error_response(exc.status_code, "payload_too_large", str(exc.detail))(scope, receive, send)
            return
        if raw is None:
            return  # the client went away
        scope["route"] = lane.route  # for the metrics' route label
        scope["path_params"] = {"order_id": order_id}  # for the log context
        if not await self._serve(scope, send, lane, order_id, raw):
            await self.app(scope, _replay(raw, receive), send)

    async def _serve(self, scope: Scope, send: Send, lane: _Lane, order_id: int, raw: bytes) -> bool:
        """Answer the request if it is a well-formed one this lane takes; ``False`` if FastAPI should."""
        app = scope["app"]
        settings: Settings = app.state.settings
        request = _parse(scope, lane, raw, settings)
        if request is None:
            return False
        user_id, token_version, role, body, version = request
        scope.setdefault("state", {})["user_id"] = user_id
        connections: KeptConnections = app.state.lane_connections
        try:
            async with connections.connection() as db:
                result = await apply_unlocked(
                    db,
                    settings,
                    order_id=order_id,
                    action=lane.action,
                    user_id=user_id,
                    token_version=token_version,
                    body=body,
                    expected_version=version,
                    role_hint=role,
                )
        except DomainError as exc:
            await domain_error_response(exc)(scope, _no_receive, send)
            return True
        except Exception as exc:
            response = database_error_response(exc, scope["method"], scope["path"])
            if response is None:
                raise
            await response(scope, _no_receive, send)
            return True
        if result is None:
            return False
        payload = result.model_dump_json().encode()
        headers = [*_JSON, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        return True


def _parse(
    scope: Scope, lane: _Lane, raw: bytes, settings: Settings
) -> tuple[int, int, str, BaseModel, int | None] | None:
    """(user id, token version, role the token names, body, expected version) of a request the lane
    takes, else ``None``."""
    authorization = content_type = if_match = None
    for name, value in scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value
        elif name == b"content-type" and content_type is None:
            content_type = value
        elif name == b"if-match" and if_match is None:
            if_match = value
        elif name == b"idempotency-key":
            return None  # stored and replayed in a transaction: FastAPI's path
    if authorization is None or authorization[:7].lower() != b"bearer ":
        return None
    try:
        user_id, token_version, role = token_claims(authorization[7:].decode("latin-1").strip(), settings.token_secret)
        version = expected_version(None if if_match is None else if_match.decode("latin-1"))
        if not raw:
            if not lane.body_optional:
                return None
            return user_id, token_version, role, EmptyBody(), version
        if content_type is None or not _is_json(content_type):
            return None
        return user_id, token_version, role, lane.body.model_validate(orjson.loads(raw)), version
    except (DomainError, ValidationError, orjson.JSONDecodeError, UnicodeDecodeError):
        return None  # FastAPI gives the canonical answer (401 / 422)


def _is_json(content_type: bytes) -> bool:
    """What FastAPI decodes as JSON: ``application/json`` or ``application/*+json``, any parameters."""
    if content_type == b"application/json":
        return True
    message = MimeMessage()
    message["content-type"] = content_type.decode("latin-1")
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body; ``None`` if the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(raw: bytes, receive: Receive) -> Receive:
    """``receive`` for the app the body was read for: the body once, then the client's own messages."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return replayed


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
