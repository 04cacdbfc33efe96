"""Who may see which order: one SQL predicate per role, used by every read and by the locking query.

- resident: orders they are served by, or placed themselves;
- volunteer: orders they placed (代点单), hold, were dispatched (personally or via a team), or that
  sit in a grab pool they are eligible for (their home unit lies under the order's unit);
- admin: orders owned by a unit in their subtree.
Anything else is answered 404, so existence never leaks.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, false, or_
from sqlalchemy.orm import InstrumentedAttribute

from app.auth import Actor
from app.domain import Role, Status
from app.models import Order
from app.models.org import ancestor_paths


def subtree(column: InstrumentedAttribute[str], path: str) -> ColumnElement[bool]:
    """``column`` is ``path`` or lies under it (index-friendly prefix match)."""
    return column.like(f"{path}%")


def in_pool_region(actor: Actor) -> ColumnElement[bool]:
    """The volunteer may grab here: the order's unit is their home unit or an ancestor of it, and the
    order's menu category (if any) is one they serve."""
    if actor.role is not Role.VOLUNTEER or not actor.volunteer_active or actor.unit_path is None:
        return false()
    serves = or_(Order.category_id.is_(None), Order.category_id.in_(actor.category_ids))
    return and_(Order.unit_path.in_(ancestor_paths(actor.unit_path)), serves)


def order_visible_to(actor: Actor) -> ColumnElement[bool]:
    if actor.role is Role.SYSTEM:
        return Order.id.is_not(None)
    if actor.role is Role.ADMIN:
        return subtree(Order.unit_path, actor.unit_path) if actor.unit_path else false()
    if actor.role is Role.RESIDENT:
        return or_(Order.resident_id == actor.user_id, Order.placed_by_id == actor.user_id)
    if actor.role is Role.VOLUNTEER:
        clauses: list[ColumnElement[bool]] = [Order.placed_by_id == actor.user_id]
        if actor.volunteer_id is not None:
            clauses.append(Order.assignee_volunteer_id == actor.volunteer_id)
            clauses.append(and_(Order.status == Status.POOLED, in_pool_region(actor)))
        if actor.team_ids:
            clauses.append(Order.assignee_team_id.in_(actor.team_ids))
        return or_(*clauses)
    return false()
