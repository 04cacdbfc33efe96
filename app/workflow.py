"""THE order state machine (四单流程): one transition table, data not code.

Everything else derives from ``TRANSITIONS``: the service that applies actions, the per-action
endpoints, the 409 "allowed actions" answer, the tests that walk every (state, action) pair and the
Mermaid diagram in the README (``python -m app.workflow`` prints it; a test fails when it is stale).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from app.domain import Action, Role, Status


class Guard(StrEnum):
    """The relation the actor must have to the order, beyond holding an allowed role."""

    NONE = "none"  # system actions; place (scope checked by the ordering service)
    ADMIN_IN_SCOPE = "admin_in_scope"  # the order's unit lies in the admin's subtree
    TARGET = "target"  # the dispatched volunteer, or a member of the dispatched team
    POOL_ELIGIBLE = "pool_eligible"  # active volunteer whose home unit lies under the order's unit
    ASSIGNEE = "assignee"  # the volunteer holding the order
    ORDERER = "orderer"  # the resident served, or whoever placed it for them (代点单)
    ORDERER_OR_ADMIN = "orderer_or_admin"  # cancel: the orderer, or an admin in scope


class Notify(StrEnum):
    """Who hears of a transition (an outbox row each, written in the same transaction)."""

    UNIT_ADMINS = "unit_admins"  # admins of the owning unit (after the transition)
    TARGET = "target"  # the assigned volunteer or team
    RESIDENT = "resident"  # the resident and the proxy who placed the order


@dataclass(frozen=True, slots=True)
class Rule:
    to: Status | None  # None: the status stays (escalate/transfer move the owner instead)
    actors: frozenset[Role]
    guard: Guard
    reason_required: bool = False
    clears_assignment: bool = False  # the order goes back to staff: drop team, volunteer, deadline
    notify: tuple[Notify, ...] = ()


def _rule(
    to: Status | None,
    *actors: Role,
    guard: Guard = Guard.NONE,
    reason: bool = False,
    clears: bool = False,
    notify: tuple[Notify, ...] = (),
) -> Rule:
    return Rule(to, frozenset(actors), guard, reason, clears, notify)


S, A, R = Status, Action, Role
ANYONE = (R.RESIDENT, R.VOLUNTEER, R.ADMIN)

_escalate = _rule(None, R.ADMIN, R.SYSTEM, guard=Guard.ADMIN_IN_SCOPE, reason=True, notify=(Notify.UNIT_ADMINS,))
_transfer = _rule(None, R.ADMIN, guard=Guard.ADMIN_IN_SCOPE, notify=(Notify.UNIT_ADMINS,))
_withdraw = _rule(S.APPROVED, R.ADMIN, guard=Guard.ADMIN_IN_SCOPE, clears=True, notify=(Notify.TARGET,))
_expire = _rule(S.APPROVED, R.SYSTEM, clears=True, notify=(Notify.UNIT_ADMINS,))
_reopen = _rule(S.APPROVED, R.ADMIN, guard=Guard.ADMIN_IN_SCOPE, reason=True, notify=(Notify.RESIDENT,))
_cancel = _rule(
    S.CANCELLED,
    *ANYONE,
    guard=Guard.ORDERER_OR_ADMIN,
    reason=True,
    clears=True,
    notify=(Notify.TARGET, Notify.RESIDENT),
)

# (from, action) → rule. ``None`` as the from-state is "no order yet" (place).
TRANSITIONS: Final[dict[tuple[Status | None, Action], Rule]] = {
    (None, A.PLACE): _rule(S.SUBMITTED, *ANYONE, notify=(Notify.UNIT_ADMINS,)),
    # The system approves on its own for menu items marked auto-approve (免审).
    (S.SUBMITTED, A.APPROVE): _rule(S.APPROVED, R.ADMIN, R.SYSTEM, guard=Guard.ADMIN_IN_SCOPE),
    (S.SUBMITTED, A.REJECT): _rule(
        S.REJECTED, R.ADMIN, guard=Guard.ADMIN_IN_SCOPE, reason=True, notify=(Notify.RESIDENT,)
    ),
    (S.SUBMITTED, A.ESCALATE): _escalate,
    (S.APPROVED, A.ESCALATE): _escalate,
    (S.SUBMITTED, A.TRANSFER): _transfer,
    (S.APPROVED, A.TRANSFER): _transfer,
    (S.APPROVED, A.DISPATCH): _rule(S.DISPATCHED, R.ADMIN, guard=Guard.ADMIN_IN_SCOPE, notify=(Notify.TARGET,)),
    (S.APPROVED, A.PUBLISH): _rule(S.POOLED, R.ADMIN, guard=Guard.ADMIN_IN_SCOPE),
    (S.DISPATCHED, A.ACCEPT): _rule(S.ACCEPTED, R.VOLUNTEER, guard=Guard.TARGET, notify=(Notify.RESIDENT,)),
    (S.DISPATCHED, A.DECLINE): _rule(
        S.APPROVED, R.VOLUNTEER, guard=Guard.TARGET, reason=True, clears=True, notify=(Notify.UNIT_ADMINS,)
    ),
    (S.POOLED, A.GRAB): _rule(S.ACCEPTED, R.VOLUNTEER, guard=Guard.POOL_ELIGIBLE, notify=(Notify.RESIDENT,)),
    (S.DISPATCHED, A.WITHDRAW): _withdraw,
    (S.POOLED, A.WITHDRAW): _withdraw,
    (S.DISPATCHED, A.EXPIRE): _expire,
    (S.POOLED, A.EXPIRE): _expire,
    (S.ACCEPTED, A.RELEASE): _rule(
        S.APPROVED, R.VOLUNTEER, guard=Guard.ASSIGNEE, reason=True, clears=True, notify=(Notify.UNIT_ADMINS,)
    ),
    (S.ACCEPTED, A.CHECK_IN): _rule(S.IN_SERVICE, R.VOLUNTEER, guard=Guard.ASSIGNEE),
    (S.IN_SERVICE, A.COMPLETE): _rule(S.COMPLETED, R.VOLUNTEER, guard=Guard.ASSIGNEE, notify=(Notify.RESIDENT,)),
    (S.COMPLETED, A.RATE): _rule(S.RATED, *ANYONE, guard=Guard.ORDERER),
    (S.COMPLETED, A.AUTO_CLOSE): _rule(S.CLOSED, R.SYSTEM),
    (S.COMPLETED, A.REOPEN): _reopen,
    (S.RATED, A.REOPEN): _reopen,
    (S.CLOSED, A.REOPEN): _reopen,
    (S.SUBMITTED, A.CANCEL): _cancel,
    (S.APPROVED, A.CANCEL): _cancel,
    (S.DISPATCHED, A.CANCEL): _cancel,
    (S.POOLED, A.CANCEL): _cancel,
    (S.ACCEPTED, A.CANCEL): _cancel,
}

TERMINAL_STATES: Final[frozenset[Status]] = frozenset(s for s in Status if not any(frm is s for frm, _ in TRANSITIONS))


def rule_for(status: Status, action: Action) -> Rule | None:
    return TRANSITIONS.get((status, action))


def roles_for(action: Action) -> frozenset[Role]:
    """Every role that may perform ``action`` from some state: outside it, the answer is 403."""
    return frozenset(role for (_, act), rule in TRANSITIONS.items() if act is action for role in rule.actors)


def actions_from(status: Status, role: Role | None = None) -> list[Action]:
    """Actions leaving ``status`` (for ``role`` if given), in table order."""
    return [act for (frm, act), rule in TRANSITIONS.items() if frm is status and (role is None or role in rule.actors)]


def mermaid() -> str:
    """The state diagram, generated from the table (the README embeds this text)."""
    lines = ["stateDiagram-v2"]
    edges: dict[tuple[str, str], list[str]] = {}
    for (frm, act), rule in TRANSITIONS.items():
        src = "[*]" if frm is None else frm.value
        dst = (rule.to or frm or Status.SUBMITTED).value
        edges.setdefault((src, dst), []).append(act.value)
    for (src, dst), acts in edges.items():
        lines.append(f"    {src} --> {dst}: {', '.join(acts)}")
    for status in Status:
        if status in TERMINAL_STATES:
            lines.append(f"    {status.value} --> [*]")
    return "\n".join(lines)


# Actions a person triggers over HTTP, one endpoint each (system-only actions are fired by timers).
USER_ACTIONS: Final[tuple[Action, ...]] = tuple(a for a in Action if a is not A.PLACE and roles_for(a) - {R.SYSTEM})


if __name__ == "__main__":
    print(mermaid())
