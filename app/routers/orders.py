# No ``from __future__ import annotations`` here: the action endpoints are built in a loop and FastAPI
# must see each one's body class as a real object, not a string.
"""Orders: 点单, reads, and one ``POST /orders/{id}/{action}`` per user action of the state machine."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.auth import Caller, CurrentCaller, CurrentUser
from app.db import Session, read_only
from app.domain import Action, Role, Status
from app.prepared import pooled
from app.routers.deps import ExpectedVersion, IdempotencyKeyHeader, ObjectId, SettingsDep, errors
from app.schemas.common import Page
from app.schemas.orders import CheckInBody, EmptyBody, EventOut, OrderCreate, OrderOut
from app.services import ordering, presence
from app.services.applying import apply
from app.services.idempotency import IdempotencyKey
from app.workflow import ACTIONS, USER_ACTIONS

router = APIRouter(tags=["orders"])
# Under ``Annotated``, FastAPI takes a default of ``...`` as the value Ellipsis (the body became optional
# and arrived as ``...``); "no default" is spelled ``PydanticUndefined``.
_REQUIRED: Any = PydanticUndefined


@router.post("/orders", status_code=201, response_model=OrderOut, responses=errors(401, 403, 422, 429))
async def place_order(
    body: OrderCreate,
    request: Request,
    session: Session,
    settings: SettingsDep,
    actor: CurrentUser,
    idempotency_key: IdempotencyKeyHeader = None,
) -> OrderOut:
    """点单 (或代点单). Send ``Idempotency-Key`` so a retried request never creates a second order."""
    idem = IdempotencyKey.from_request(idempotency_key, "POST", request.url.path, body.model_dump(mode="json"))
    return await ordering.place_order(session, settings, actor, body, idem)


@router.get("/orders/mine", response_model=Page[OrderOut], responses=errors(401, 422))
@read_only
async def my_orders(
    session: Session,
    actor: CurrentUser,
    status: Status | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Page[OrderOut]:
    """我的订单: orders the caller is served by or placed for someone, newest first."""
    return await ordering.my_orders(session, actor, status, cursor, limit)


@router.get("/orders/{order_id}", response_model=OrderOut, responses=errors(401, 404, 422))
@read_only
async def get_order(order_id: ObjectId, session: Session, actor: CurrentUser) -> OrderOut:
    return await ordering.get_order(session, actor, order_id)


@router.get("/orders/{order_id}/events", response_model=list[EventOut], responses=errors(401, 404, 422))
@read_only
async def order_events(order_id: ObjectId, session: Session, actor: CurrentUser) -> list[EventOut]:
    """订单时间线, oldest first."""
    return await ordering.order_events(session, actor, order_id)


def _people(roles: frozenset[Role]) -> str:
    return ", ".join(sorted(r.value for r in roles - {Role.SYSTEM}))


def _describe(action: Action) -> str:
    rows = [
        f"- `{frm.value}` → `{(rule.to or frm).value}` by {_people(rule.actors)} (guard: {rule.guard.value})"
        for frm, rule in ACTIONS[action].rules.items()
        if frm is not None and rule.actors - {Role.SYSTEM}
    ]
    return f"Transition `{action.value}` (from the state machine table):\n\n" + "\n".join(rows)


async def perform_action(
    engine: AsyncEngine,
    order_id: int,
    action: Action,
    caller: Caller,
    body: BaseModel,
    idem: IdempotencyKey | None,
    expected_version: int | None,
) -> Response:
    """Apply ``action`` on a connection of ``engine`` and answer with the order as JSON: what every
    action request does once parsed (by FastAPI's endpoint below, or by ``app.lane``'s transport).

    Once sent, the write statement runs to its end on the server whatever the client does: a client
    that goes away does not cut the request short either (``asyncio.shield``), so the connection goes
    back to the pool in order and the outcome is counted."""

    if isinstance(body, CheckInBody) and (body.code is not None or body.qr is not None):
        async with AsyncSession(engine) as session:  # a guess at the 签到码 counts, whatever comes of it
            await presence.count_code_attempt(session, presence.order_subject(order_id), caller.user_id)

    async def applied() -> OrderOut:
        async with pooled(engine) as connection:
            return await apply(
                connection,
                order_id=order_id,
                action=action,
                caller=caller,
                body=body,
                idem=idem,
                expected_version=expected_version,
            )

    applying = asyncio.ensure_future(applied())
    applying.add_done_callback(_outcome_seen)
    try:
        result = await asyncio.shield(applying)
    finally:
        # A refusal's traceback holds this frame, which holds the task, which holds the refusal: a
        # reference cycle of ~60 objects per refused action for the garbage collector (a grab storm's
        # 900 refusals triggered its older generations), where plain reference counting frees them.
        del applying
    # Built by the service, so serialized straight to JSON (pydantic-core) without FastAPI validating
    # it again; ``response_model`` still documents it.
    return Response(result.model_dump_json(), media_type="application/json")


def action_idempotency_key(key: str | None, path: str, body: BaseModel) -> IdempotencyKey | None:
    if key is None:
        return None  # most requests: the body is not dumped for a fingerprint nobody needs
    return IdempotencyKey.from_request(key, "POST", path, body.model_dump(mode="json"))


def _outcome_seen(task: asyncio.Future[OrderOut]) -> None:
    """An action whose client went away ends without anyone awaiting it: its error is not news."""
    if not task.cancelled():
        task.exception()


def body_when_empty(action: Action) -> BaseModel | None:
    """The body an action request with none stands for: its model with no field given, when the model
    requires nothing (approve, accept, check-in, publish …); ``None`` when a body is required."""
    try:
        return ACTIONS[action].body()
    except ValidationError:  # a field, or one of several, is required (dispatch's target)
        return None


def _action_endpoint(action: Action) -> Callable[..., Awaitable[Response]]:
    body_model: Any = ACTIONS[action].body
    empty = body_when_empty(action)

    async def endpoint(
        order_id: ObjectId,
        request: Request,
        caller: CurrentCaller,
        expected_version: ExpectedVersion,
        body: Annotated[body_model, Body()] = _REQUIRED if empty is None else empty,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response:
        payload: BaseModel = body if body is not None else (empty or EmptyBody())
        idem = action_idempotency_key(idempotency_key, request.url.path, payload)
        engine = request.app.state.engine
        return await perform_action(engine, order_id, action, caller, payload, idem, expected_version)

    endpoint.__name__ = f"order_{action.value}"
    return endpoint


for _action in USER_ACTIONS:
    router.add_api_route(
        f"/orders/{{order_id}}/{_action.path}",
        _action_endpoint(_action),
        methods=["POST"],
        response_model=OrderOut,
        responses=errors(401, 403, 404, 409, 422),
        summary=f"{_action.value} ({_people(ACTIONS[_action].roles)})",
        description=_describe(_action),
        name=f"order_{_action.value}",
    )
