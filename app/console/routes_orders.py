"""工作台, 订单 board, order detail and its actions.

Each action goes through the API's own service: state changes through ``app.services.applying.apply``
(the body parsed by the action's own body model from ``app.workflow.ACTIONS``), 回访 and 时长更正 through
``app.services.ledger_admin``. The console only offers what the order's ``allowed_actions`` (from the
transition table) lists; the service decides anyway.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from app.auth import Actor
from app.console import queries
from app.console.session import check_csrf, console_user, read_form
from app.console.web import LOCAL, page, render, validation_message
from app.db import Session, transaction
from app.domain import STATUS_LABELS, Action, Status
from app.errors import InvalidInput, NotFound
from app.models import Order, ServiceParticipant, ServiceRecord, Volunteer
from app.prepared import pooled
from app.routers.deps import ObjectId
from app.schemas.ledger import HoursAdjustIn
from app.services import admin_orders, dispatching, ledger_admin, ordering
from app.services.applying import apply
from app.services.scope import subtree
from app.workflow import ACTIONS

router = APIRouter()

# The actions staff take from the order page (the others are the resident's or the volunteer's).
STAFF_ACTIONS = (
    Action.APPROVE,
    Action.REJECT,
    Action.DISPATCH,
    Action.PUBLISH,
    Action.WITHDRAW,
    Action.ESCALATE,
    Action.TRANSFER,
    Action.CANCEL,
    Action.REOPEN,
    Action.CONFIRM_PRESENCE,
)
ADJUSTABLE = (Status.COMPLETED, Status.RATED, Status.CLOSED)
PAGE_ROWS = 20


@router.get("/")
@page
async def desk(request: Request, session: Session) -> Response:
    user = await console_user(request, session)
    now = datetime.now(UTC)
    day_start = datetime.combine(now.astimezone(LOCAL).date(), time(), LOCAL)
    data = await queries.desk(session, user.actor, now, day_start)
    return render(request, "desk.html", user, desk=data)


def _day(raw: str, name: str) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise InvalidInput(f"{name} 须为日期, 如 2026-12-01") from exc


def id_param(raw: str, name: str) -> int | None:
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput(f"{name} 无效")
    return int(raw)


@router.get("/orders")
@page
async def board(request: Request, session: Session) -> Response:
    """订单 board: the states as tabs with their counts, the chosen state's orders newest first, paged
    by the API's keyset cursor."""
    user = await console_user(request, session)
    q = request.query_params
    status_raw = q.get("status", Status.SUBMITTED.value)
    status = Status(status_raw) if status_raw in {s.value for s in Status} else None
    if status is None and status_raw != "all":
        raise InvalidInput("状态无效")
    unit_id, category_id = id_param(q.get("unit_id", ""), "单位"), id_param(q.get("category_id", ""), "类别")
    day_from, day_to = _day(q.get("from", ""), "开始日期"), _day(q.get("to", ""), "结束日期")
    created_from = datetime.combine(day_from, time(), LOCAL) if day_from else None
    created_to = datetime.combine(day_to + timedelta(days=1), time(), LOCAL) if day_to else None
    followup = q.get("followup") == "1"
    result = await admin_orders.list_orders(
        session,
        user.actor,
        statuses=[status] if status else [],
        unit_id=unit_id,
        category_id=category_id,
        created_from=created_from,
        created_to=created_to,
        needs_followup=True if followup else None,
        cursor=q.get("cursor") or None,
        limit=PAGE_ROWS,
    )
    filters: list[Any] = []
    units = await queries.units_in_scope(session, user.actor)
    if unit_id is not None:
        unit = next(u for u in units if u.id == unit_id)  # list_orders checked it is in scope
        filters.append(subtree(Order.unit_path, unit.path))
    if category_id is not None:
        filters.append(Order.category_id == category_id)
    if created_from is not None:
        filters.append(Order.created_at >= created_from)
    if created_to is not None:
        filters.append(Order.created_at < created_to)
    if followup:
        filters.append(Order.needs_followup.is_(True))
    counts = await queries.status_counts(session, user.actor, *filters)
    names = await queries.names(
        session,
        units=[o.unit_id for o in result.items],
        volunteers=[o.assignee_volunteer_id for o in result.items],
        teams=[o.assignee_team_id for o in result.items],
    )
    params = {k: v for k, v in q.items() if k not in ("cursor", "status") and v}
    context: dict[str, Any] = dict(
        orders=result.items,
        next_cursor=result.next_cursor,
        status=status_raw,
        counts=counts,
        total=sum(counts.values()),
        labels=STATUS_LABELS,
        units=units,
        categories=await queries.categories(session),
        names=names,
        filters=params,
        query=q,
    )
    template = "board_rows.html" if request.headers.get("HX-Target") == "more-row" else "board.html"
    return render(request, template, user, **context)


async def _participants(session: Session, order_id: int) -> list[tuple[int, str, Any]]:
    async with transaction(session):
        rows = await session.execute(
            select(ServiceParticipant.volunteer_id, Volunteer.real_name, ServiceParticipant.hours)
            .join(ServiceRecord, ServiceRecord.id == ServiceParticipant.record_id)
            .join(Volunteer, Volunteer.id == ServiceParticipant.volunteer_id)
            .where(ServiceRecord.order_id == order_id)
            .order_by(ServiceRecord.round, Volunteer.id)
        )
        return [(r[0], r[1], r[2]) for r in rows.all()]


async def _transfer_targets(session: Session, actor: Actor, unit_id: int) -> list[Any]:
    return [u for u in await queries.units_in_scope(session, actor) if u.id != unit_id]


@router.get("/orders/{order_id}")
@page
async def order_detail(request: Request, session: Session, order_id: ObjectId) -> Response:
    """订单详情: the order, its timeline, and a form for each action the caller may take now."""
    user = await console_user(request, session)
    order = await ordering.get_order(session, user.actor, order_id)  # 404 outside the caller's scope
    events = await ordering.order_events(session, user.actor, order_id)
    offered = {path.value for path in order.allowed_actions}  # URL segments (ActionPath)
    allowed = [a for a in STAFF_ACTIONS if a.path in offered]
    candidates = (
        await dispatching.order_candidates(session, user.actor, order_id) if Action.DISPATCH in allowed else None
    )
    participants = await _participants(session, order_id) if order.status in ADJUSTABLE else []
    transfer_units = await _transfer_targets(session, user.actor, order.unit_id) if Action.TRANSFER in allowed else []
    names = await queries.names(
        session,
        units=[order.unit_id],
        volunteers=[order.assignee_volunteer_id, *(e.payload.get("volunteer_id") for e in events)],
        teams=[order.assignee_team_id, *(e.payload.get("team_id") for e in events)],
        users=[order.resident_id, order.placed_by_id, *(e.actor_id for e in events)],
    )
    return render(
        request,
        "order.html",
        user,
        order=order,
        events=events,
        allowed=[a.value for a in allowed],
        candidates=candidates,
        participants=participants,
        transfer_units=transfer_units,
        names=names,
        adjustable=order.status in ADJUSTABLE,
        done=request.query_params.get("done", ""),
    )


def _action_body(action: Action, form: dict[str, str]) -> BaseModel:
    """The action's body from the form, parsed by the action's own body model (as the API does)."""
    data: dict[str, Any] = {}
    for field in ("reason", "accept_within_minutes", "unit_id"):
        if form.get(field, "").strip():
            data[field] = form[field].strip()
    if action is Action.DISPATCH:
        kind, _, target = form.get("target", "").partition(":")
        if kind not in ("volunteer", "team") or not target.isdigit():
            raise InvalidInput("请选择派单对象")
        data[f"{kind}_id"] = target
    try:
        return ACTIONS[action].body.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc)) from exc


@router.post("/orders/{order_id}/actions/{action_name}")
@page
async def order_action(request: Request, session: Session, order_id: ObjectId, action_name: str) -> Response:
    """Apply one staff action through ``apply``, then show the order again."""
    user = await console_user(request, session)
    form = await read_form(request)
    check_csrf(request, user, form)
    action = next((a for a in STAFF_ACTIONS if a.value == action_name), None)
    if action is None:
        raise NotFound("没有这个操作")
    body = _action_body(action, form)
    version = form.get("version", "")
    async with pooled(request.app.state.engine) as connection:
        await apply(
            connection,
            order_id=order_id,
            action=action,
            caller=user.caller,
            body=body,
            expected_version=int(version) if version.isdigit() and len(version) < 10 else None,
        )
    return RedirectResponse(f"/console/orders/{order_id}?done={action.value}", status_code=303)


@router.post("/orders/{order_id}/followup")
@page
async def followup(request: Request, session: Session, order_id: ObjectId) -> Response:
    """差评回访 through ``ledger_admin.follow_up``."""
    user = await console_user(request, session)
    form = await read_form(request)
    check_csrf(request, user, form)
    note = form.get("note", "").strip()
    if not note or len(note) > 500:
        raise InvalidInput("请填写回访记录 (1–500 字)")
    await ledger_admin.follow_up(session, user.actor, order_id, note)
    return RedirectResponse(f"/console/orders/{order_id}?done=followup", status_code=303)


@router.post("/orders/{order_id}/hours")
@page
async def adjust_hours(request: Request, session: Session, order_id: ObjectId) -> Response:
    """时长更正 through ``ledger_admin.adjust_order_hours`` (audited, in the timeline)."""
    user = await console_user(request, session)
    form = await read_form(request)
    check_csrf(request, user, form)
    try:
        body = HoursAdjustIn.model_validate({k: form.get(k, "").strip() for k in ("volunteer_id", "hours", "reason")})
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc)) from exc
    await ledger_admin.adjust_order_hours(session, user.actor, order_id, body)
    return RedirectResponse(f"/console/orders/{order_id}?done=adjust_hours", status_code=303)
