"""What a guard of the transition table means for a given caller and order."""

from __future__ import annotations

from app.auth import Actor
from app.domain import Action, Role, Status
from app.models import OrderView
from app.services.scope import in_region
from app.workflow import TRANSITIONS, Guard, Rule

# The states in which the volunteer holding an order needs the resident's phone (接单后可见).
HOLDING_STATES = frozenset({Status.ACCEPTED, Status.IN_SERVICE})


def is_orderer(actor: Actor, order: OrderView) -> bool:
    return actor.user_id in (order.resident_id, order.placed_by_id)


def guard_holds(guard: Guard, actor: Actor, order: OrderView) -> bool:
    if actor.role is Role.SYSTEM:
        return True  # timers act for the whole deployment; the table already limits what they may do
    match guard:
        case Guard.NONE:
            return True
        case Guard.ADMIN_IN_SCOPE:
            return actor.administers(order.unit_path)
        case Guard.TARGET:
            if actor.volunteer_id is None or not actor.volunteer_active:
                return False
            if order.assignee_volunteer_id is not None:
                return order.assignee_volunteer_id == actor.volunteer_id
            return order.assignee_team_id is not None and order.assignee_team_id in actor.team_ids
        case Guard.POOL_ELIGIBLE:
            return in_region(actor, order)
        case Guard.ASSIGNEE:
            return actor.volunteer_id is not None and order.assignee_volunteer_id == actor.volunteer_id
        case Guard.RATER:
            # No one rates their own service: not the volunteer who held it (nor, checked by the rate
            # effect with the service record, anyone credited for it).
            held = actor.volunteer_id is not None and actor.volunteer_id == order.assignee_volunteer_id
            return is_orderer(actor, order) and not held
        case Guard.ORDERER_OR_ADMIN:
            return is_orderer(actor, order) or actor.administers(order.unit_path)


# The table's rules by the state they leave, in table order (every response lists the caller's).
_RULES_FROM: dict[Status, list[tuple[Action, Rule]]] = {
    status: [(action, rule) for (frm, action), rule in TRANSITIONS.items() if frm is status] for status in Status
}


# The actions that also need the volunteer to hold the qualifications the order's menu item requires
# (``Read.QUALIFIED`` in ``app.workflow``; what is offered: ``app.services.offers.lacking``).
QUALIFIED_ACTIONS: frozenset[Action] = frozenset({Action.GRAB, Action.ACCEPT})


def allowed_actions(actor: Actor, order: OrderView) -> list[Action]:
    """The actions ``actor`` may take on ``order`` right now, straight from the table."""
    return [
        action
        for action, rule in _RULES_FROM[Status(order.status)]
        if actor.role in rule.actors and guard_holds(rule.guard, actor, order)
    ]


def may_see_phone(actor: Actor, order: OrderView) -> bool:
    """The resident's phone: to the orderer, admins in scope, and the volunteer holding the order."""
    if actor.role is Role.SYSTEM or is_orderer(actor, order) or actor.administers(order.unit_path):
        return True
    return (
        actor.volunteer_id is not None
        and order.assignee_volunteer_id == actor.volunteer_id
        and order.status in HOLDING_STATES
    )
