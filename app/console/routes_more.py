"""志愿者 / 队伍, 爱心超市 and 设置: the API's directory, ledger, supermarket and dispatch services."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from app.console import queries
from app.console.session import check_csrf, console_user, read_form
from app.console.web import page, render, validation_message
from app.db import Session
from app.errors import InvalidInput
from app.routers.deps import ObjectId
from app.schemas.directory import ItemCreate, ItemUpdate
from app.schemas.dispatching import PolicyIn
from app.services import catalog, directory_people, directory_units, dispatching, ledger_admin, supermarket

router = APIRouter()
PEOPLE_ROWS = 20


@router.get("/people")
@page
async def people(request: Request, session: Session) -> Response:
    """志愿者 directory (with hours 信用/荣誉, stars, points, ratings) and 队伍 summaries."""
    user = await console_user(request, session)
    volunteers = await directory_people.list_volunteers(
        session,
        user.actor,
        unit_id=None,
        status=None,
        cursor=request.query_params.get("cursor") or None,
        limit=PEOPLE_ROWS,
    )
    summaries = {v.id: await ledger_admin.volunteer_summary(session, user.actor, v.id) for v in volunteers.items}
    teams = await directory_people.list_teams(session, user.actor, None)
    team_summaries = {t.id: await ledger_admin.team_summary(session, user.actor, t.id) for t in teams}
    names = await queries.names(session, units=[v.home_unit_id for v in volunteers.items] + [t.unit_id for t in teams])
    return render(
        request,
        "people.html",
        user,
        volunteers=volunteers.items,
        next_cursor=volunteers.next_cursor,
        summaries=summaries,
        teams=teams,
        team_summaries=team_summaries,
        names=names,
    )


@router.get("/market")
@page
async def market(request: Request, session: Session) -> Response:
    """爱心超市: goods and stock, and the redemptions waiting to be collected."""
    user = await console_user(request, session)
    goods = await supermarket.list_goods(session, user.actor, None)
    pending = await supermarket.list_redemptions(session, user.actor, "pending", None, None, 100)
    names = await queries.names(session, units=[g.unit_id for g in goods])
    return render(
        request,
        "market.html",
        user,
        goods=goods,
        pending=pending.items,
        names=names,
        done=request.query_params.get("done", ""),
    )


@router.post("/market/redemptions/{redemption_id}/collect")
@page
async def collect(request: Request, session: Session, redemption_id: ObjectId) -> Response:
    """领取 through ``supermarket.collect``."""
    user = await console_user(request, session)
    check_csrf(request, user, await read_form(request))
    await supermarket.collect(session, user.actor, redemption_id)
    return RedirectResponse("/console/market?done=collect", status_code=303)


@router.get("/settings")
@page
async def settings_page(request: Request, session: Session) -> Response:
    """设置: the dispatch policy in force at the caller's unit, and its menu (inherited and own items)."""
    user = await console_user(request, session)
    unit_id = user.actor.unit_id or 0
    policy = await dispatching.get_policy(session, user.actor, unit_id)
    menu = await catalog.menu_for_unit(session, unit_id)  # what the unit's residents order from
    own_items = await directory_units.list_items(session, user.actor, None)  # what the caller may edit
    categories = await directory_units.list_categories(session)
    names = await queries.names(
        session, units=[unit_id, *(i.unit_id for s in menu.sections for i in s.items), *(i.unit_id for i in own_items)]
    )
    return render(
        request,
        "settings.html",
        user,
        policy=policy,
        menu=menu,
        own_items=own_items,
        categories=categories,
        units=await queries.units_in_scope(session, user.actor),
        names=names,
        done=request.query_params.get("done", ""),
    )


@router.post("/settings/policy")
@page
async def save_policy(request: Request, session: Session) -> Response:
    """Set the unit's 派单策略 through ``dispatching.set_policy`` (the API's validation)."""
    user = await console_user(request, session)
    form = await read_form(request)
    check_csrf(request, user, form)
    fields = ("review_hours", "accept_minutes", "pool_hours", "auto_close_days", "dispatch_mode", "points_per_hour")
    unit_id = user.actor.unit_id or 0
    # The form edits the dispatch fields; every other field of the policy (the check-in proofs …) keeps
    # the value in force, as the API's PUT would if sent the whole policy back.
    current = await dispatching.get_policy(session, user.actor, unit_id)
    kept = current.model_dump(mode="json", include=set(PolicyIn.model_fields))
    try:
        body = PolicyIn.model_validate(kept | {k: form[k] for k in fields if form.get(k, "").strip()})
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc)) from exc
    await dispatching.set_policy(session, user.actor, unit_id, body)
    return RedirectResponse("/console/settings?done=policy", status_code=303)


@router.post("/settings/items")
@page
async def add_item(request: Request, session: Session) -> Response:
    """新增菜单项 through ``directory_units.create_item`` (a unit of the caller's subtree)."""
    user = await console_user(request, session)
    form = await read_form(request)
    check_csrf(request, user, form)
    fields = {k: form.get(k, "").strip() for k in ("unit_id", "category_id", "name", "description")}
    try:
        body = ItemCreate.model_validate({**fields, "auto_approve": form.get("auto_approve") == "1"})
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc)) from exc
    await directory_units.create_item(session, user.actor, body)
    return RedirectResponse("/console/settings?done=item", status_code=303)


@router.post("/settings/items/{item_id}")
@page
async def change_item(request: Request, session: Session, item_id: ObjectId) -> Response:
    """上架/下架 and 免审 of a menu item through ``directory_units.update_item`` (404 outside the subtree)."""
    user = await console_user(request, session)
    form = await read_form(request)
    check_csrf(request, user, form)
    changes = {k: form[k] == "1" for k in ("is_active", "auto_approve") if k in form}
    if not changes:
        raise InvalidInput("没有要修改的内容")
    await directory_units.update_item(session, user.actor, item_id, ItemUpdate.model_validate(changes))
    return RedirectResponse("/console/settings?done=item", status_code=303)
