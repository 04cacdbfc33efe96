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

``visible`` is the Python twin, for one order read in the same query as its caller (the action lane);
a test holds the two to the same answer for every order and person of a county.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ColumnElement, String, and_, any_, bindparam, false, or_, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import ExternallyTraversible, replacement_traverse

from app.auth import Actor
from app.domain import Role, Status
from app.models import Order
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

# The volunteer may grab here: the order's unit is their home unit or an ancestor of it, and the
# order's menu category (if any) is one they serve (``scope_pool_paths`` is empty unless they may grab).
POOL_REGION: ColumnElement[bool] = and_(
    Order.unit_path == any_(_POOL_PATHS),
    or_(Order.category_id.is_(None), Order.category_id == any_(_CATEGORIES)),
)

VISIBLE: dict[Role, ColumnElement[bool]] = {
    Role.SYSTEM: true(),
    Role.ADMIN: Order.unit_path.like(_SUBTREE),
    Role.RESIDENT: or_(Order.resident_id == _USER, Order.placed_by_id == _USER),
    Role.VOLUNTEER: or_(
        Order.placed_by_id == _USER,
        Order.assignee_volunteer_id == _VOLUNTEER,
        and_(Order.status == Status.POOLED.value, POOL_REGION),
        Order.assignee_team_id == any_(_TEAMS),
    ),
}


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


def in_region(actor: Actor, order: Order) -> bool:
    """The Python twin of ``POOL_REGION`` (with ``scope_params(actor)``)."""
    return (
        actor.role is Role.VOLUNTEER
        and actor.volunteer_active
        and actor.unit_path is not None
        and order.unit_path in ancestor_paths(actor.unit_path)
        and (order.category_id is None or order.category_id in actor.category_ids)
    )


def visible(actor: Actor, order: Order, *, grabbing: bool = False, was_published: bool = False) -> bool:
    """The Python twin of ``VISIBLE[actor.role]``; with ``grabbing``, of the grab query's predicate
    (the order's region if it was ever published to the pool, see ``app.services.transitions``)."""
    match actor.role:
        case Role.SYSTEM:
            return True
        case Role.ADMIN:
            return order.unit_path.startswith(actor.unit_path or "(none)")
        case Role.RESIDENT:
            return actor.user_id in (order.resident_id, order.placed_by_id)
        case Role.VOLUNTEER:
            return (
                order.placed_by_id == actor.user_id
                or (order.assignee_volunteer_id is not None and order.assignee_volunteer_id == actor.volunteer_id)
                or (order.status == Status.POOLED.value and in_region(actor, order))
                or order.assignee_team_id in actor.team_ids
                or (grabbing and was_published and in_region(actor, order))
            )
    return False


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
