"""The action lane: transport only, for the hottest requests, ``POST /api/v1/orders/{id}/{action}``.

FastAPI's side of such a request (its middleware stack, routing over every route, dependency solving,
``Request``) costs about as much CPU as applying the action. This ASGI middleware recognises a
well-formed action request and serves it with the very functions FastAPI's endpoint calls, in the same
order: ``auth.caller_from_token``, ``deps.expected_version``, the action's body model from its spec,
``orders.action_idempotency_key`` and ``orders.perform_action`` (which calls ``apply``). There is no
second implementation of anything: the lane only skips the routing.

Whatever it does not recognise as well formed goes on to FastAPI unchanged (the body replayed), so
every 401, 413 and 422 keeps its one source: a missing or malformed token, a body that does not
validate, a bad ``If-Match`` or ``Idempotency-Key``. ``SIDAN_ACTION_LANE=false`` switches it off; the
state-machine and race tests run both ways in CI.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import Caller, caller_from_token
from app.config import Settings
from app.domain import Action
from app.errors import DomainError, database_error_response, domain_error_response, error_response
from app.limits import BodyTooLarge
from app.routers.deps import expected_version
from app.routers.orders import action_idempotency_key, body_when_empty, perform_action
from app.schemas.common import MAX_BIGINT
from app.workflow import ACTIONS, USER_ACTIONS


class ActionLane:
    """See the module docstring. ``routes``: the FastAPI routes of the action endpoints (named
    ``order_<action>``): the metrics and logs name the route a request was served for."""

    def __init__(self, app: ASGIApp, api_prefix: str, routes: list[Any]) -> None:
        self.app = app
        by_name = {route.name: route for route in routes if isinstance(route, APIRoute)}
        self.routes = {action.path: (action, by_name[f"order_{action.value}"]) for action in USER_ACTIONS}
        self.path = re.compile(rf"{re.escape(api_prefix)}/orders/([0-9]{{1,19}})/([a-z_-]+)")
        self.served = 0  # requests this lane answered (the tests check it is really used)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = self.path.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        found = None if match is None else self.routes.get(match[2])
        order_id = 0 if match is None else int(match[1])
        if found is None or not 1 <= order_id <= MAX_BIGINT:
            await self.app(scope, receive, send)
            return
        action, route = found
        try:
            raw = await _read_body(receive)
        except BodyTooLarge as exc:  # raised by ``app.limits.BodySizeLimit``, outside this middleware
            await error_response(exc.status_code, "payload_too_large", str(exc.detail))(scope, receive, send)
            return
        if raw is None:
            return  # the client went away
        scope["route"] = route  # for the metrics' route label, as FastAPI sets it
        scope["path_params"] = {"order_id": order_id}  # for the log context
        if not await self._serve(scope, send, action, order_id, raw):
            await self.app(scope, _replay(raw, receive), send)

    async def _serve(self, scope: Scope, send: Send, action: Action, order_id: int, raw: bytes) -> bool:
        """Answer a well-formed request; ``False`` (nothing done) for FastAPI to answer instead."""
        state = scope["app"].state
        parsed = _parse(scope, action, raw, state.settings)
        if parsed is None:
            return False
        caller, body, version, key = parsed
        scope.setdefault("state", {})["user_id"] = caller.user_id
        engine: AsyncEngine = state.engine
        try:
            idem = action_idempotency_key(key, scope["path"], body)
            response = await perform_action(engine, order_id, action, caller, body, idem, version)
        except DomainError as exc:
            response = domain_error_response(exc)
        except Exception as exc:
            database = database_error_response(exc, scope["method"], scope["path"])
            if database is None:
                raise
            response = database
        self.served += 1
        await response(scope, _no_receive, send)
        return True


def _parse(
    scope: Scope, action: Action, raw: bytes, settings: Settings
) -> tuple[Caller, BaseModel, int | None, str | None] | None:
    """(caller, body, expected version, idempotency key) of a request FastAPI would accept, else ``None``."""
    authorization = content_type = if_match = key = None
    for name, value in scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value
        elif name == b"content-type" and content_type is None:
            content_type = value
        elif name == b"if-match" and if_match is None:
            if_match = value
        elif name == b"idempotency-key" and key is None:
            key = value
    if authorization is None or authorization[:7].lower() != b"bearer ":
        return None
    model = ACTIONS[action].body
    try:
        caller = caller_from_token(authorization[7:].decode("latin-1").strip(), settings)
        version = expected_version(None if if_match is None else if_match.decode("latin-1"))
        if not raw:
            empty = body_when_empty(action)
            if empty is None:
                return None
            body: BaseModel = empty
        elif content_type != b"application/json":
            return None  # other JSON media types, forms …: FastAPI decides
        else:
            body = model.model_validate(orjson.loads(raw))  # as FastAPI does: parse, then validate
        return caller, body, version, None if key is None else key.decode("latin-1")
    except (DomainError, ValidationError, orjson.JSONDecodeError, UnicodeDecodeError):
        return None  # FastAPI gives the canonical answer (401 / 422)


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
