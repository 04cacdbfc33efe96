"""Who may see which order: one SQL predicate per role, used by every read and by the locking query.

- resident: orders they are served by, or placed themselves;
- volunteer: orders they placed (代点单), hold, were dispatched (personally or via a team), or that
  sit in a grab pool they are eligible for (their home unit lies under the order's unit);
- admin: orders owned by a unit in their subtree.
Anything else is answered 404, so existence never leaks.

Each predicate is built once, with bound parameters named ``scope_*`` (``scope_params(actor)``), so a
statement using it has one shape per role and SQLAlchemy compiles it once: the transition endpoints
execute prebuilt statements with the caller's parameters; other reads bind them in place
(``order_visible_to``).

The same rule applies to an order read in one query with its caller (``visible_to_caller``, for
transitions): the predicates are built by one function from either source.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    FromClause,
    String,
    and_,
    any_,
    bindparam,
    false,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import ExternallyTraversible, replacement_traverse

from app.auth import Actor
from app.domain import Action, Role, Status
from app.models import Order, OrderEvent, OrderView
from app.models.org import ancestor_paths


def subtree(column: InstrumentedAttribute[str], path: str) -> ColumnElement[bool]:
    """``column`` is ``path`` or lies under it (index-friendly prefix match)."""
    return column.like(f"{path}%")


_USER = bindparam("scope_user_id", type_=BigInteger)
_VOLUNTEER = bindparam("scope_volunteer_id", type_=BigInteger)
_SUBTREE = bindparam("scope_subtree", type_=String)  # an admin's unit path + '%'
_POOL_PATHS = bindparam("scope_pool_paths", type_=ARRAY(String))  # where the volunteer may grab
_CATEGORIES = bindparam("scope_categories", type_=ARRAY(BigInteger))
_TEAMS = bindparam("scope_team_ids", type_=ARRAY(BigInteger))


def _branches(
    user_id: ColumnElement[Any],
    volunteer_id: ColumnElement[Any],
    admin_subtree: ColumnElement[Any],
    team_ids: ColumnElement[Any],
    region: ColumnElement[bool],
) -> dict[Role, ColumnElement[bool]]:
    """THE scope rule, one predicate per role, over whichever expressions say who is asking: bound
    parameters (``VISIBLE``) or the columns of the caller read in the same query (``visible_to_caller``)."""
    return {
        Role.SYSTEM: true(),
        Role.ADMIN: Order.unit_path.like(admin_subtree),
        Role.RESIDENT: or_(Order.resident_id == user_id, Order.placed_by_id == user_id),
        Role.VOLUNTEER: or_(
            Order.placed_by_id == user_id,
            Order.assignee_volunteer_id == volunteer_id,
            and_(Order.status == Status.POOLED.value, region),
            Order.assignee_team_id == any_(team_ids),
        ),
    }


# The volunteer may grab here: the order's unit is their home unit or an ancestor of it, and the
# order's menu category (if any) is one they serve (``scope_pool_paths`` is empty unless they may grab).
POOL_REGION: ColumnElement[bool] = and_(
    Order.unit_path == any_(_POOL_PATHS),
    or_(Order.category_id.is_(None), Order.category_id == any_(_CATEGORIES)),
)

VISIBLE: dict[Role, ColumnElement[bool]] = _branches(_USER, _VOLUNTEER, _SUBTREE, _TEAMS, POOL_REGION)


def caller_region(caller: FromClause) -> ColumnElement[bool]:
    """``POOL_REGION`` for the caller read in the same query (columns of ``app.auth.caller_columns``)."""
    c = caller.c
    return and_(
        c.role == Role.VOLUNTEER.value,
        c.volunteer_status == "active",
        c.home_path.startswith(Order.unit_path),
        or_(
            Order.category_id.is_(None), Order.category_id == any_(func.array_cat(c.own_categories, c.team_categories))
        ),
    )


def visible_to_caller(caller: FromClause, *, published_region: bool = False) -> ColumnElement[bool]:
    """``VISIBLE`` for the caller read in the same query: one statement reads who is asking and the
    order, and finds no order unless they may see it. ``published_region``: also an order ever
    published to the caller's pool region (a grab: "already taken", 409, not "no such order")."""
    c = caller.c
    region = caller_region(caller)
    branches = _branches(c.user_id, c.volunteer_id, c.unit_path.concat("%"), c.team_ids, region)
    visible = or_(*(and_(c.role == role.value, branches[role]) for role in (Role.ADMIN, Role.RESIDENT, Role.VOLUNTEER)))
    if published_region:
        visible = or_(visible, and_(region, WAS_PUBLISHED))
    return visible


# The order was published to the grab pool at some time (an event says so): one probe of the events'
# order index. Not ``EXISTS``: PostgreSQL may run that as a hashed subplan, which reads every publish
# event of every order on each grab that finds the order taken (a grab storm's 900 refusals).
WAS_PUBLISHED: ColumnElement[bool] = (
    select(literal(True))
    .where(OrderEvent.order_id == Order.id, OrderEvent.action == Action.PUBLISH.value)
    .limit(1)
    .scalar_subquery()
    .is_not(None)
)


def scope_params(actor: Actor) -> dict[str, Any]:
    """The values of the ``scope_*`` parameters for ``actor``."""
    may_grab = actor.role is Role.VOLUNTEER and actor.volunteer_active and actor.unit_path is not None
    return {
        "scope_user_id": actor.user_id,
        "scope_volunteer_id": actor.volunteer_id,
        # An admin without a unit sees nothing (unit paths are digits and dots).
        "scope_subtree": f"{actor.unit_path or '(none)'}%",
        "scope_pool_paths": ancestor_paths(actor.unit_path) if may_grab and actor.unit_path else [],
        "scope_categories": sorted(actor.category_ids),
        "scope_team_ids": sorted(actor.team_ids),
    }


def in_region(actor: Actor, order: OrderView) -> bool:
    """The Python twin of ``POOL_REGION`` (with ``scope_params(actor)``)."""
    return (
        actor.role is Role.VOLUNTEER
        and actor.volunteer_active
        and actor.unit_path is not None
        and order.unit_path in ancestor_paths(actor.unit_path)
        and (order.category_id is None or order.category_id in actor.category_ids)
    )


def _bound(predicate: ColumnElement[bool], actor: Actor) -> ColumnElement[bool]:
    values = scope_params(actor)

    def bind(element: ExternallyTraversible, **_: Any) -> ExternallyTraversible | None:
        if isinstance(element, BindParameter) and element.key in values:
            return bindparam(element.key, values[element.key], type_=element.type)
        return None

    return replacement_traverse(predicate, {}, bind)


def in_pool_region(actor: Actor) -> ColumnElement[bool]:
    """``POOL_REGION`` for ``actor`` (false for anyone who may not grab)."""
    if actor.role is not Role.VOLUNTEER:
        return false()
    return _bound(POOL_REGION, actor)


def order_visible_to(actor: Actor) -> ColumnElement[bool]:
    """``VISIBLE`` for ``actor``, its parameters bound."""
    predicate = VISIBLE.get(actor.role)
    return false() if predicate is None else _bound(predicate, actor)
