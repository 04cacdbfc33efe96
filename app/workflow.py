"""THE order state machine (四单流程): one spec per action, data not code.

Every fact about an action sits in its ``ActionSpec`` in ``ACTIONS``: the states it leaves and where
each goes (``Rule``: who may, under which guard, whether a reason is required, who hears of it), the
body it takes, its effect beyond the status change, the reliability counter it feeds, the deadline
that fires it, whether an automatic dispatch follows it, and what its read needs beside the order.

Everything else derives from it: ``app.services.applying.apply`` (the one way any action is applied,
by a person, the sweeper or an automatic dispatch), the per-action endpoints and their OpenAPI text,
the sweeper's due actions, the 409 "allowed actions" answer, the tests that walk every (state, action)
pair and the Mermaid diagram in the README (``python -m app.workflow`` prints it; a test fails when it
is stale).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from pydantic import BaseModel

from app.domain import Action, Guard, Notify, Role, Status
from app.schemas.orders import (
    CheckInBody,
    CompleteBody,
    DispatchBody,
    EmptyBody,
    PublishBody,
    RateBody,
    ReasonBody,
    TransferBody,
)
from app.services import effects
from app.services.effects import Effect
from app.services.statements import Read

__all__ = ["ACTIONS", "TRANSITIONS", "USER_ACTIONS", "ActionSpec", "Guard", "Notify", "Read", "Rule"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One edge of the state machine: (from state, action) → ``to``."""

    to: Status | None  # None: the status stays (escalate/transfer move the owner instead)
    actors: frozenset[Role]
    guard: Guard
    reason_required: bool = False
    clears_assignment: bool = False  # the order goes back to staff: drop team, volunteer, deadline
    notify: tuple[Notify, ...] = ()


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """Everything about one action of the state machine (see the module docstring)."""

    action: Action
    rules: Mapping[Status | None, Rule]  # by the state it leaves (``None``: no order yet, place)
    body: type[BaseModel] = EmptyBody
    effect: Effect | None = None  # what it does beyond the status change (``app.services.effects``)
    reliability: str | None = None  # the ``Volunteer`` counter it adds one to (accepts vs declines …)
    timer: frozenset[Status] = frozenset()  # the sweeper fires it once an order waits here past its deadline
    dispatches_onward: bool = False  # back at 待派单 under an automatic dispatch mode, the next dispatch follows
    reads: frozenset[Read] = field(default_factory=frozenset)
    # Derived from ``rules`` once (every action request asks for both):
    roles: frozenset[Role] = field(init=False)  # who may perform it from some state (else 403)
    leaves: frozenset[Status] = field(init=False)  # the states it may be performed from

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", frozenset(role for rule in self.rules.values() for role in rule.actors))
        object.__setattr__(self, "leaves", frozenset(state for state in self.rules if state is not None))


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


def _from(states: tuple[Status, ...], rule: Rule) -> dict[Status | None, Rule]:
    return dict.fromkeys(states, rule)


_SPECS = (
    ActionSpec(A.PLACE, {None: _rule(S.SUBMITTED, *ANYONE, notify=(Notify.UNIT_ADMINS,))}),
    # The system approves on its own for menu items marked auto-approve (免审).
    ActionSpec(
        A.APPROVE,
        {S.SUBMITTED: _rule(S.APPROVED, R.ADMIN, R.SYSTEM, guard=Guard.ADMIN_IN_SCOPE)},
        body=EmptyBody,
        dispatches_onward=True,
    ),
    ActionSpec(
        A.REJECT,
        {S.SUBMITTED: _rule(S.REJECTED, R.ADMIN, guard=Guard.ADMIN_IN_SCOPE, reason=True, notify=(Notify.RESIDENT,))},
        body=ReasonBody,
    ),
    ActionSpec(
        A.ESCALATE,
        _from(
            (S.SUBMITTED, S.APPROVED),
            _rule(None, R.ADMIN, R.SYSTEM, guard=Guard.ADMIN_IN_SCOPE, reason=True, notify=(Notify.UNIT_ADMINS,)),
        ),
        body=ReasonBody,
        effect=effects.escalate,
        timer=frozenset({S.SUBMITTED, S.APPROVED}),
        dispatches_onward=True,
    ),
    ActionSpec(
        A.TRANSFER,
        _from(
            (S.SUBMITTED, S.APPROVED), _rule(None, R.ADMIN, guard=Guard.ADMIN_IN_SCOPE, notify=(Notify.UNIT_ADMINS,))
        ),
        body=TransferBody,
        effect=effects.transfer,
        dispatches_onward=True,
    ),
    ActionSpec(
        A.DISPATCH,
        {S.APPROVED: _rule(S.DISPATCHED, R.ADMIN, R.SYSTEM, guard=Guard.ADMIN_IN_SCOPE, notify=(Notify.TARGET,))},
        body=DispatchBody,
        effect=effects.dispatch,
        reads=frozenset({Read.DISPATCH_TARGET}),
    ),
    ActionSpec(
        A.PUBLISH,
        {S.APPROVED: _rule(S.POOLED, R.ADMIN, R.SYSTEM, guard=Guard.ADMIN_IN_SCOPE)},
        body=PublishBody,
        effect=effects.publish,
    ),
    ActionSpec(
        A.ACCEPT,
        {S.DISPATCHED: _rule(S.ACCEPTED, R.VOLUNTEER, guard=Guard.TARGET, notify=(Notify.RESIDENT,))},
        effect=effects.take,
        reliability="accepted_count",
        reads=frozenset({Read.QUALIFIED}),  # the item's required qualifications, held by the caller
    ),
    ActionSpec(
        A.DECLINE,
        {
            S.DISPATCHED: _rule(
                S.APPROVED, R.VOLUNTEER, guard=Guard.TARGET, reason=True, clears=True, notify=(Notify.UNIT_ADMINS,)
            )
        },
        body=ReasonBody,
        reliability="declined_count",
        dispatches_onward=True,
    ),
    ActionSpec(
        A.GRAB,
        {S.POOLED: _rule(S.ACCEPTED, R.VOLUNTEER, guard=Guard.POOL_ELIGIBLE, notify=(Notify.RESIDENT,))},
        effect=effects.take,
        reliability="accepted_count",
        reads=frozenset({Read.PUBLISHED_REGION, Read.IN_HAND, Read.QUALIFIED}),
    ),
    ActionSpec(
        A.WITHDRAW,
        _from(
            (S.DISPATCHED, S.POOLED),
            _rule(S.APPROVED, R.ADMIN, guard=Guard.ADMIN_IN_SCOPE, clears=True, notify=(Notify.TARGET,)),
        ),
    ),
    ActionSpec(
        A.EXPIRE,
        _from((S.DISPATCHED, S.POOLED), _rule(S.APPROVED, R.SYSTEM, clears=True, notify=(Notify.UNIT_ADMINS,))),
        reliability="expired_count",  # of the volunteer it had been dispatched to
        timer=frozenset({S.DISPATCHED, S.POOLED}),
        dispatches_onward=True,
    ),
    ActionSpec(
        A.RELEASE,
        {
            S.ACCEPTED: _rule(
                S.APPROVED, R.VOLUNTEER, guard=Guard.ASSIGNEE, reason=True, clears=True, notify=(Notify.UNIT_ADMINS,)
            )
        },
        body=ReasonBody,
        reliability="released_count",
        dispatches_onward=True,
    ),
    ActionSpec(
        A.CHECK_IN,
        {S.ACCEPTED: _rule(S.IN_SERVICE, R.VOLUNTEER, guard=Guard.ASSIGNEE)},
        body=CheckInBody,
        effect=effects.check_in,
    ),
    # 管理员确认到场: checks in for the volunteer, or proves an unproven check-in (the status stays).
    ActionSpec(
        A.CONFIRM_PRESENCE,
        {
            S.ACCEPTED: _rule(S.IN_SERVICE, R.ADMIN, guard=Guard.ADMIN_IN_SCOPE, reason=True),
            S.IN_SERVICE: _rule(None, R.ADMIN, guard=Guard.ADMIN_IN_SCOPE, reason=True),
        },
        body=ReasonBody,
        effect=effects.confirm_presence,
    ),
    ActionSpec(
        A.COMPLETE,
        {S.IN_SERVICE: _rule(S.COMPLETED, R.VOLUNTEER, guard=Guard.ASSIGNEE, notify=(Notify.RESIDENT,))},
        body=CompleteBody,
        effect=effects.complete,
        reads=frozenset({Read.NEW_RECORD_ID}),
    ),
    ActionSpec(
        A.RATE,
        {S.COMPLETED: _rule(S.RATED, *ANYONE, guard=Guard.RATER)},
        body=RateBody,
        effect=effects.rate,
    ),
    ActionSpec(
        A.AUTO_CLOSE,
        {S.COMPLETED: _rule(S.CLOSED, R.SYSTEM)},
        timer=frozenset({S.COMPLETED}),
    ),
    ActionSpec(
        A.REOPEN,
        _from(
            (S.COMPLETED, S.RATED, S.CLOSED),
            _rule(S.APPROVED, R.ADMIN, guard=Guard.ADMIN_IN_SCOPE, reason=True, notify=(Notify.RESIDENT,)),
        ),
        body=ReasonBody,
        effect=effects.reopen,
        dispatches_onward=True,
    ),
    ActionSpec(
        A.CANCEL,
        _from(
            (S.SUBMITTED, S.APPROVED, S.DISPATCHED, S.POOLED, S.ACCEPTED),
            _rule(
                S.CANCELLED,
                *ANYONE,
                guard=Guard.ORDERER_OR_ADMIN,
                reason=True,
                clears=True,
                notify=(Notify.TARGET, Notify.RESIDENT),
            ),
        ),
        body=ReasonBody,
    ),
)

ACTIONS: Final[dict[Action, ActionSpec]] = {spec.action: spec for spec in _SPECS}

# (from, action) → rule, derived from the specs. ``None`` as the from-state is "no order yet" (place).
TRANSITIONS: Final[dict[tuple[Status | None, Action], Rule]] = {
    (frm, spec.action): rule for spec in _SPECS for frm, rule in spec.rules.items()
}

TERMINAL_STATES: Final[frozenset[Status]] = frozenset(s for s in Status if not any(frm is s for frm, _ in TRANSITIONS))

# What the sweeper fires when an order waits in a state past its deadline.
DUE_ACTIONS: Final[dict[Status, Action]] = {state: spec.action for spec in _SPECS for state in spec.timer}


def rule_for(status: Status, action: Action) -> Rule | None:
    return TRANSITIONS.get((status, action))


def roles_for(action: Action) -> frozenset[Role]:
    """Every role that may perform ``action`` from some state: outside it, the answer is 403."""
    return ACTIONS[action].roles


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
