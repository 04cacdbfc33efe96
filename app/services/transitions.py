"""Apply one action of the state machine to one order: the only code that changes an order's status.

Every call is one transaction: lock the order row (the scope check folded into the same query),
look the rule up in ``app.workflow.TRANSITIONS``, check role and guard, run the action's effect,
bump the version, append the ``OrderEvent``, write outbox rows, store the idempotent response, commit.

This is the hottest code in the service, so its statements are Core built once and sent with asyncpg
(``app.prepared``), never the ORM's unit of work: one query locks the order with the policy in force
at its unit, the locked row becomes a detached ``Order`` that the effects change in memory, and one
statement writes everything back (order, event, outbox rows, reliability counter).
Effects of the rarer actions (complete, rate, transfer …) still use the session, in the same
transaction.

The common actions need no transaction at all (``apply_unlocked``): their whole effect is that one
statement, so the order is read without a lock and written on condition that its version has not
moved since (compare-and-set); a writer that lost the race reads again and finds the new state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from operator import attrgetter, itemgetter
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Label,
    any_,
    bindparam,
    exists,
    func,
    insert,
    inspect,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.auth import SYSTEM_ACTOR, Actor, actor_from_row, caller_columns
from app.config import Settings
from app.db import transaction
from app.domain import Action, Role, Status
from app.errors import Busy, Conflict, Forbidden, IllegalTransition, InvalidInput, NotFound, VersionMismatch
from app.models import (
    OrderEvent,
    OrgUnit,
    Rating,
    ServiceParticipant,
    ServiceRecord,
    Team,
    Volunteer,
)
from app.models.base import table_of
from app.models.orders import Order
from app.observability import count_transition, transition_committed
from app.prepared import Prepared, RawConnection, raw_connection
from app.schemas.orders import CompleteBody, DispatchBody, OrderOut, PublishBody, RateBody, TransferBody
from app.services import candidates, idempotency, ledger, outbox
from app.services.guards import allowed_actions, guard_holds
from app.services.policies import DispatchMode, Policy, effective_policy, in_force_at, policy_from, step_deadline
from app.services.presenters import present_order
from app.services.scope import POOL_REGION, VISIBLE, scope_params, visible
from app.workflow import TRANSITIONS, Rule, roles_for


class Change:
    """What one transition is doing, handed to the action's effect."""

    def __init__(
        self,
        session: AsyncSession | None,
        db: RawConnection,
        order: Order,
        actor: Actor,
        body: BaseModel,
        now: datetime,
        settings: Settings,
        read: Mapping[str, Any] | None = None,
    ) -> None:
        self.session, self.db, self.order, self.actor, self.body, self.now = session, db, order, actor, body, now
        self.settings = settings
        self.read = read or {}  # the row the order was read in, with whatever else that query read
        self.event_payload: dict[str, Any] = {}
        self.deadline_minutes: int | None = None  # set by dispatch/publish when the request names one

    @property
    def orm(self) -> AsyncSession:
        """The session, for effects beyond the one write statement (never on the lockless path)."""
        assert self.session is not None, "this action's effect needs the transactional path"
        return self.session


Effect = Callable[[Change], Awaitable[None]]

FOLLOWUP_STARS = 2  # ratings at or below this flag the order for 回访


async def apply_action(
    session: AsyncSession,
    settings: Settings,
    *,
    order_id: int,
    action: Action,
    actor: Actor,
    body: BaseModel,
    idem: idempotency.IdempotencyKey | None = None,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> OrderOut:
    """Perform ``action`` on order ``order_id`` as ``actor`` (see the module docstring)."""
    if actor.role not in roles_for(action):
        raise Forbidden(f"角色 {actor.role.value} 不能执行 {action.value}")
    now = now or datetime.now(UTC)
    async with transaction(session):
        if idem is not None:
            replay = await idempotency.claim(session, actor.user_id, idem)
            if replay is not None:
                return OrderOut.model_validate(replay)
        db = await raw_connection(session)
        order, policy = await _lock_order(db, order_id, action, actor)
        rule = _checked_rule(order, action, actor, expected_version)
        await transition_locked(
            session,
            settings,
            order,
            rule,
            action,
            actor,
            body,
            now,
            db=db,
            policy=policy,
        )
        result = present_order(order, actor, answering_action=True)
        if idem is not None:
            await idempotency.store(session, actor.user_id, idem, 200, result.model_dump(mode="json"))
    return result


# Actions whose every effect is the transition's one write statement: ``apply_unlocked`` does them.
LOCKLESS = frozenset(
    {
        Action.APPROVE,
        Action.REJECT,
        Action.DISPATCH,
        Action.PUBLISH,
        Action.ACCEPT,
        Action.DECLINE,
        Action.GRAB,
        Action.WITHDRAW,
        Action.RELEASE,
        Action.CHECK_IN,
        Action.CANCEL,
    }
)
# Reads before a compare-and-set write gives up on an order other requests keep changing (409 busy).
CAS_ATTEMPTS = 3


async def apply_unlocked(
    db: RawConnection,
    settings: Settings,
    *,
    order_id: int,
    action: Action,
    user_id: int,
    token_version: int,
    body: BaseModel,
    expected_version: int | None = None,
    role_hint: str = Role.VOLUNTEER.value,
) -> OrderOut | None:
    """``apply_action`` in two round trips and no transaction, for the actions in ``LOCKLESS``: read the
    caller, the order and its unit's policy in one query without a lock, check scope (``scope.visible``),
    rule and guard, then write everything in one statement on condition that the order's version is
    still the one read; a request that lost that race reads again. ``db``: a connection outside any
    transaction (``app.prepared.checkout``); each statement commits on its own.

    ``role_hint``: the role the caller's token was issued for; the caller is read without a volunteer's
    details unless it names a volunteer (and again with them if the account has become one since).

    ``None``: this request needs ``apply_action`` (its action has effects beyond the one statement, or
    an automatic dispatch is to follow); nothing was written.
    """
    if action not in LOCKLESS:
        return None
    key = action if action in (Action.GRAB, Action.DISPATCH) else None
    params: dict[str, int | None] = {"user_id": user_id, "order_id": order_id}
    if isinstance(body, DispatchBody):
        params |= {"target_team_id": body.team_id, "target_volunteer_id": body.volunteer_id}
    for _ in range(CAS_ATTEMPTS):
        now = datetime.now(UTC)
        row = await _read_caller(db, key, params, may_be_volunteer=role_hint == Role.VOLUNTEER.value)
        actor = actor_from_row(row, token_version, prefix=_CALLER)
        if actor.role not in roles_for(action):
            raise Forbidden(f"角色 {actor.role.value} 不能执行 {action.value}")
        assert row is not None  # else not an actor
        order = None if row["id"] is None else order_from_row(row)
        grabbing = action is Action.GRAB
        if order is None or not visible(actor, order, grabbing=grabbing, was_published=row.get("was_published", False)):
            raise NotFound("订单不存在")
        policy = policy_from(row)
        rule = _checked_rule(order, action, actor, expected_version)
        automatic = policy.dispatch_mode is not DispatchMode.MANUAL
        if automatic and rule.to is Status.APPROVED and action in AUTO_DISPATCH_AFTER:
            return None  # the automatic dispatch that follows needs the transactional path
        change = Change(None, db, order, actor, body, now, settings, row)
        written = await _write_transition(change, rule, action, policy)
        if written is not None:
            transition_committed(action.value)
            return present_order(order, actor, answering_action=True)
    raise Busy()


async def _read_caller(
    db: RawConnection, key: Action | None, params: Mapping[str, Any], *, may_be_volunteer: bool
) -> dict[str, Any] | None:
    """``_READ_AS_CALLER``'s row: read as for a volunteer unless ``may_be_volunteer`` is false, and then
    again as for one if the account turns out to be a volunteer's after all."""
    row = await _READ_AS_CALLER[key, may_be_volunteer].fetchrow(db, params)
    if not may_be_volunteer and row is not None and row[_CALLER + "role"] == Role.VOLUNTEER.value:
        row = await _READ_AS_CALLER[key, True].fetchrow(db, params)
    return row


def _checked_rule(order: Order, action: Action, actor: Actor, expected_version: int | None) -> Rule:
    """The rule for ``action`` from the order's status, if ``actor`` may apply it to this version."""
    status = Status(order.status)
    if expected_version is not None and expected_version != order.version:
        raise VersionMismatch(order_id=order.id, current_version=order.version, status=status.value)
    rule = TRANSITIONS.get((status, action))
    if rule is None:
        raise IllegalTransition(
            f"订单处于「{status.value}」, 不能执行 {action.value}",
            order_id=order.id,
            status=status.value,
            allowed_actions=[a.value for a in allowed_actions(actor, order)],
        )
    if actor.role not in rule.actors or not guard_holds(rule.guard, actor, order):
        raise Forbidden(f"无权对此订单执行 {action.value}", status=status.value)
    return rule


_ORDERS = table_of(Order)
_WAS_PUBLISHED = exists().where(OrderEvent.order_id == Order.id, OrderEvent.action == Action.PUBLISH.value)
_POLICY = in_force_at(Order.unit_path).lateral("policy")


def _locking(predicate: ColumnElement[bool]) -> Prepared:
    """Lock the order (if the caller may see it) and read the policy in force at its unit, in one go."""
    return Prepared(
        select(*_ORDERS.c, *_POLICY.c)
        .select_from(_ORDERS.outerjoin(_POLICY, true()))
        .where(Order.id == bindparam("order_id"), predicate)
        .with_for_update(of=_ORDERS)
    )


# One locking query per role, the caller's scope folded in, and one for grabs (key ``None``): a
# volunteer of the region an order was published to learns "already taken" (409) when another
# volunteer was faster, not "no such order"; unpublished orders stay invisible.
_LOCK: dict[Role | None, Prepared] = {role: _locking(predicate) for role, predicate in VISIBLE.items()}
_LOCK[None] = _locking(VISIBLE[Role.VOLUNTEER] | (POOL_REGION & _WAS_PUBLISHED))


def _read_as_caller(action: Action | None, volunteer: bool) -> Prepared:
    """The lockless read: the caller (``caller_*`` columns, one row if the account exists; without the
    volunteer's columns unless ``volunteer``), the order (its columns ``NULL`` if there is none; the
    caller's scope is checked in Python, ``scope.visible``) and the policy in force at its unit; for a
    grab, whether the order was ever published; for a dispatch, the target's unit path (``target_*``
    parameters and columns, see ``_dispatch``)."""
    caller, caller_columns_ = caller_columns(_CALLER, volunteer=volunteer)
    extra: tuple[Label[Any], ...] = ()
    if action is Action.GRAB:
        extra = (_WAS_PUBLISHED.label("was_published"),)
    elif action is Action.DISPATCH:
        extra = _DISPATCH_TARGETS
    return Prepared(
        select(*caller_columns_, *_ORDERS.c, *_POLICY.c, *extra).select_from(
            caller.outerjoin(_ORDERS, Order.id == bindparam("order_id")).outerjoin(_POLICY, true())
        )
    )


_CALLER = "caller_"
_ORDER_KEYS = tuple(column.key for column in _ORDERS.c)


def order_from_row(row: Mapping[Any, Any]) -> Order:
    """A detached ``Order`` holding a row read with Core: effects change it, the transition's one
    statement saves it. Built as the ORM builds loaded objects (values straight into the instance's
    dict, no change events), a fifth of the cost of ``Order(**values)``."""
    order: Order = _NEW_ORDER()
    order.__dict__.update(zip(_ORDER_KEYS, _ORDER_VALUES(row), strict=True))
    return order


_NEW_ORDER = inspect(Order).class_manager.new_instance
_ORDER_VALUES = itemgetter(*_ORDER_KEYS)


async def _lock_order(db: RawConnection, order_id: int, action: Action, actor: Actor) -> tuple[Order, Policy]:
    query = _LOCK[None] if action is Action.GRAB else _LOCK.get(actor.role)
    row = None if query is None else await query.fetchrow(db, {"order_id": order_id, **scope_params(actor)})
    if row is None:
        raise NotFound("订单不存在")
    return order_from_row(row), policy_from(row)


# What a transition may change on the order row (everything else is fixed when the order is placed).
_MUTABLE = (
    "status",
    "assignee_team_id",
    "assignee_volunteer_id",
    "unit_id",
    "unit_path",
    "deadline_at",
    "accepted_at",
    "checked_in_at",
    "completed_at",
    "round",
    "needs_followup",
    "version",
    "updated_at",
)
_MUTABLE_VALUES = attrgetter(*_MUTABLE)
_NEW_KEYS = tuple(f"new_{name}" for name in _MUTABLE)  # the write statement's parameters


# Each of these actions counts toward (or against) the acting / previous volunteer's reliability.
_RELIABILITY: dict[Action, str] = {
    Action.ACCEPT: "accepted_count",
    Action.GRAB: "accepted_count",
    Action.DECLINE: "declined_count",
    Action.RELEASE: "released_count",
    Action.EXPIRE: "expired_count",
}


async def transition_locked(
    session: AsyncSession,
    settings: Settings,
    order: Order,
    rule: Rule,
    action: Action,
    actor: Actor,
    body: BaseModel,
    now: datetime,
    *,
    db: RawConnection | None = None,
    policy: Policy | None = None,
) -> None:
    """The body of every transition, on an order already locked (detached, see ``order_from_row``)
    and checked against ``rule``. ``policy``: the one in force at the order's unit, if already read.
    """
    change = Change(session, db or await raw_connection(session), order, actor, body, now, settings)
    policy = await _write_transition(change, rule, action, policy)
    assert policy is not None, "the order is locked: its version cannot have moved"
    count_transition(session, action.value)  # sidan_transitions_total, once the transaction commits
    if order.status == Status.APPROVED.value and action in AUTO_DISPATCH_AFTER:
        await auto_dispatch(session, settings, order, policy, now)


async def _write_transition(change: Change, rule: Rule, action: Action, policy: Policy | None) -> Policy | None:
    """Run the action's effect on ``change.order`` (in memory), then write the order, its event, outbox
    rows and reliability counter in one statement, if the order is still at the
    version read. Returns the policy in force at the order's unit now, or ``None`` (nothing written)
    if the order had moved on. ``change.session``: ``None`` on the lockless path."""
    order, actor, body, now = change.order, change.actor, change.body, change.now
    from_status = Status(order.status)
    from_version = order.version
    unit_path = order.unit_path
    previous_target = (order.assignee_team_id, order.assignee_volunteer_id)
    if rule.clears_assignment:
        change.event_payload |= {
            "previous_team_id": previous_target[0],
            "previous_volunteer_id": previous_target[1],
        }
        order.assignee_team_id = order.assignee_volunteer_id = None
    effect = EFFECTS.get(action)
    if effect is not None:
        await effect(change)
    if rule.to is not None:
        order.status = rule.to.value
    if policy is None or order.unit_path != unit_path:
        policy = await effective_policy(change.orm, order.unit_path)
    order.deadline_at = step_deadline(
        Status(order.status), policy, now, change.deadline_minutes, service_start=order.preferred_start
    )
    order.version = from_version + 1
    order.updated_at = now
    reason = getattr(body, "reason", None)
    payload = body.model_dump(mode="json", exclude={"reason"}) | change.event_payload
    event = event_row(order, action, from_status, actor, reason, payload, now)
    counter = _RELIABILITY.get(action)
    notify = outbox.enqueue_params(order, action, rule.notify, previous_target)
    statement = _write_statement(outbox.sources_in(notify), counter)
    row = await statement.fetchrow(
        change.db,
        {
            "transition_order_id": order.id,
            "transition_from_version": from_version,
            **dict(zip(_NEW_KEYS, _MUTABLE_VALUES(order), strict=True)),
            **{_EVENT_KEYS[name]: value for name, value in event.items()},
            **notify,
            "reliability_volunteer_id": previous_target[1] if action is Action.EXPIRE else actor.volunteer_id,
        },
    )
    return policy if row is not None and row["written"] == 1 else None


@cache
def _write_statement(outbox_sources: tuple[str, ...], counter: str | None) -> Prepared:
    """Everything a transition writes, in one statement, all of it only if the order is still at
    ``transition_from_version``: the order's new state, its timeline event, one outbox row per
    recipient of ``outbox_sources``, and one more on the reliability ``counter`` of
    ``reliability_volunteer_id``. Its one row: ``written``, 1 or 0.

    One statement per combination, holding only the parts it writes: PostgreSQL then plans it once
    per connection (a generic plan), where a statement with parts switched off by parameters was
    planned again on every execution (its custom plans pruned them), which took longer than running it.
    """
    order_id = bindparam("transition_order_id", type_=BigInteger)
    changed = (
        update(_ORDERS)
        .where(_ORDERS.c.id == order_id, _ORDERS.c.version == bindparam("transition_from_version", type_=BigInteger))
        .values({name: bindparam(f"new_{name}", type_=_ORDERS.c[name].type) for name in _MUTABLE})
        .returning(_ORDERS.c.id)
        .cte("changed")
    )
    written = exists(select(changed.c.id))
    event = insert(table_of(OrderEvent)).from_select(
        list(_EVENT_COLUMNS),
        select(*(bindparam(f"event_{name}", type_=table_of(OrderEvent).c[name].type) for name in _EVENT_COLUMNS)).where(
            written
        ),
    )
    parts = [event.cte("event")]
    if outbox_sources:
        parts.append(outbox.enqueue_when(written, outbox_sources).cte("outbox"))
    if counter is not None:
        reliability = (
            update(Volunteer)
            .where(Volunteer.id == bindparam("reliability_volunteer_id", type_=BigInteger), written)
            .values({counter: getattr(Volunteer, counter) + 1})
        )
        parts.append(reliability.cte("reliability"))
    return Prepared(select(func.count().label("written")).select_from(changed).add_cte(*parts))


# Every column of an event but its id: what ``event_row`` fills in; the write statement's parameters.
_EVENT_COLUMNS = tuple(column.key for column in table_of(OrderEvent).c if not column.primary_key)
_EVENT_KEYS = {name: f"event_{name}" for name in _EVENT_COLUMNS}


# After these, an order back at 待派单 is re-offered at once when its unit's policy says so.
AUTO_DISPATCH_AFTER = frozenset(
    {
        Action.APPROVE,
        Action.DECLINE,
        Action.RELEASE,
        Action.EXPIRE,
        Action.REOPEN,
        Action.ESCALATE,
        Action.TRANSFER,
    }
)


async def auto_dispatch(session: AsyncSession, settings: Settings, order: Order, policy: Policy, now: datetime) -> None:
    """自动派单: ``auto_assign`` dispatches to the best candidate not yet tried this round;
    ``auto_pool`` publishes to the pool. With nobody left, the order waits for staff (and escalates
    when its review deadline passes)."""
    if policy.dispatch_mode is DispatchMode.MANUAL:
        return
    if policy.dispatch_mode is DispatchMode.AUTO_POOL:
        await transition_locked(
            session,
            settings,
            order,
            TRANSITIONS[(Status.APPROVED, Action.PUBLISH)],
            Action.PUBLISH,
            SYSTEM_ACTOR,
            PublishBody(),
            now,
        )
        return
    best = await candidates.best_volunteer(session, order)
    if best is None:
        return
    await transition_locked(
        session,
        settings,
        order,
        TRANSITIONS[(Status.APPROVED, Action.DISPATCH)],
        Action.DISPATCH,
        SYSTEM_ACTOR,
        DispatchBody(volunteer_id=best),
        now,
    )


def event_row(
    order: Order,
    action: Action,
    from_status: Status | None,
    actor: Actor,
    reason: str | None,
    payload: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """One entry of the order's timeline, as the row to insert."""
    return {
        "order_id": order.id,
        "action": action.value,
        "from_status": from_status.value if from_status else None,
        "to_status": order.status,
        "actor_id": actor.user_id if actor.role is not Role.SYSTEM else None,
        "actor_role": actor.role.value,
        "reason": reason,
        "payload": payload,
        "created_at": now,
    }


async def record_event(session: AsyncSession, event: dict[str, Any]) -> None:
    """Append ``event`` (an ``event_row``) to the order's timeline (the table refuses updates and
    deletes) outside a transition: a transition writes its event in its one statement."""
    await session.execute(_INSERT_EVENT, event)


_INSERT_EVENT = insert(table_of(OrderEvent))


# ---- effects: what each action does beyond the status change ------------------------------------


async def _escalate(change: Change) -> None:
    """上报: the owner becomes the parent unit."""
    order = change.order
    child = aliased(OrgUnit)
    parent = (
        await change.orm.execute(
            select(OrgUnit).join(child, child.parent_id == OrgUnit.id).where(child.id == order.unit_id)
        )
    ).scalar_one_or_none()
    if parent is None:
        raise Conflict("已是最高一级单位, 无法上报", status=order.status)
    change.event_payload |= {"from_unit_id": order.unit_id, "to_unit_id": parent.id}
    order.unit_id, order.unit_path = parent.id, parent.path


async def _transfer(change: Change) -> None:
    """层层派单: hand the order to another unit in the actor's subtree."""
    assert isinstance(change.body, TransferBody)
    order, target_id = change.order, change.body.unit_id
    target = await change.orm.get(OrgUnit, target_id)
    if target is None or not target.is_active or not change.actor.administers(target.path):
        raise InvalidInput("目标单位不存在或不在本单位管辖范围内", unit_id=target_id)
    if target.id == order.unit_id:
        raise InvalidInput("订单已属于该单位", unit_id=target_id)
    change.event_payload |= {"from_unit_id": order.unit_id, "to_unit_id": target.id}
    order.unit_id, order.unit_path = target.id, target.path


_TEAM_PATH = (
    select(OrgUnit.path.label("target_team_path"))
    .join(Team, Team.unit_id == OrgUnit.id)
    .where(Team.id == bindparam("target_team_id"), Team.is_active)
)
_VOLUNTEER_PATH = (
    select(OrgUnit.path.label("target_volunteer_path"))
    .join(Volunteer, Volunteer.home_unit_id == OrgUnit.id)
    .where(Volunteer.id == bindparam("target_volunteer_id"), Volunteer.status == "active")
)
_TEAM_JURISDICTION, _VOLUNTEER_JURISDICTION = Prepared(_TEAM_PATH), Prepared(_VOLUNTEER_PATH)
# The lockless read of a dispatch reads the target's unit path with the order (``_read_as_caller``).
_DISPATCH_TARGETS = (
    _TEAM_PATH.scalar_subquery().label("target_team_path"),
    _VOLUNTEER_PATH.scalar_subquery().label("target_volunteer_path"),
)


async def _target_path(change: Change, query: Prepared, key: str, target_id: int) -> str | None:
    """The home unit path of the active team / volunteer ``target_id``: as read with the order, else now."""
    if key in change.read:
        path: str | None = change.read[key]
        return path
    row = await query.fetchrow(change.db, {key.replace("path", "id"): target_id})
    return None if row is None else row[key]


async def _dispatch(change: Change) -> None:
    """指令性派单 to one team or one volunteer in the actor's jurisdiction, with an accept deadline."""
    assert isinstance(change.body, DispatchBody)
    body, actor = change.body, change.actor
    # Staff direct their own people; the system (auto-assign) stays within the order's unit.
    jurisdiction = change.order.unit_path if actor.role is Role.SYSTEM else (actor.unit_path or "\0")
    if body.team_id is not None:
        path = await _target_path(change, _TEAM_JURISDICTION, "target_team_path", body.team_id)
        if path is None or not path.startswith(jurisdiction):
            raise InvalidInput("服务队不存在、已停用或不在管辖范围内", team_id=body.team_id)
        change.order.assignee_team_id = body.team_id
    else:
        assert body.volunteer_id is not None
        path = await _target_path(change, _VOLUNTEER_JURISDICTION, "target_volunteer_path", body.volunteer_id)
        if path is None or not path.startswith(jurisdiction):
            raise InvalidInput("志愿者不存在、未激活或不在管辖范围内", volunteer_id=body.volunteer_id)
        change.order.assignee_volunteer_id = body.volunteer_id
    change.deadline_minutes = body.accept_within_minutes


async def _publish(change: Change) -> None:
    assert isinstance(change.body, PublishBody)
    change.deadline_minutes = change.body.accept_within_minutes


_IN_HAND = Prepared(
    select(
        Volunteer.max_open_orders,
        select(func.count())
        .where(
            Order.assignee_volunteer_id == bindparam("volunteer_id"),
            Order.status == any_(array(sorted(candidates.OPEN_STATES))),  # Prepared: no expanding IN
        )
        .scalar_subquery()
        .label("in_hand"),
    ).where(Volunteer.id == bindparam("volunteer_id"))
)


async def _take(change: Change) -> None:
    """接单 / 抢单: the calling volunteer now holds the order. A grab must respect the volunteer's limit
    of orders in hand (staff may knowingly dispatch beyond it)."""
    volunteer_id = change.actor.volunteer_id
    if change.order.status == Status.POOLED.value:
        row = await _IN_HAND.fetchrow(change.db, {"volunteer_id": volunteer_id})
        assert row is not None  # the actor is this volunteer
        if row["in_hand"] >= row["max_open_orders"]:
            limit = row["max_open_orders"]
            raise Conflict(f"同时服务的订单已达上限 ({limit})", status=change.order.status, limit=limit)
    change.order.assignee_volunteer_id = volunteer_id
    change.order.accepted_at = change.order.accepted_at or change.now


async def _check_in(change: Change) -> None:
    change.order.checked_in_at = change.now


async def _complete(change: Change) -> None:
    """完成: the service record of this round, with each participant's hours, credited to the ledger
    (信用时长 and 积分) in the same transaction; hours beyond the check-in span are refused."""
    assert isinstance(change.body, CompleteBody)
    body, order, session = change.body, change.order, change.orm
    ids = [p.volunteer_id for p in body.participants]
    if order.assignee_volunteer_id not in ids:
        raise InvalidInput("参与者须包含接单志愿者本人", volunteer_id=order.assignee_volunteer_id)
    found = set(
        (await session.execute(select(Volunteer.id).where(Volunteer.id.in_(ids), Volunteer.status == "active")))
        .scalars()
        .all()
    )
    if missing := sorted(set(ids) - found):
        raise InvalidInput("参与者中有不存在或未激活的志愿者", volunteer_ids=missing)
    ledger.check_service_hours(order, body.participants, change.now)
    record = ServiceRecord(
        order_id=order.id,
        round=order.round,
        summary=body.summary,
        served_count=body.served_count,
        photos=body.photos,
        submitted_by_id=change.actor.user_id,
    )
    session.add(record)
    await session.flush()
    session.add_all(
        ServiceParticipant(record_id=record.id, volunteer_id=p.volunteer_id, hours=p.hours) for p in body.participants
    )
    await ledger.credit_service(session, order, record.id, body.participants, change.actor, change.now)
    order.completed_at = change.now
    change.event_payload = {
        "record_id": record.id,
        "served_count": body.served_count,
        "participants": len(ids),
    }


async def _rate(change: Change) -> None:
    """评单, marked 代评 when the proxy who placed the order rates it."""
    assert isinstance(change.body, RateBody)
    order, body = change.order, change.body
    by_proxy = change.actor.user_id != order.resident_id
    change.orm.add(
        Rating(
            order_id=order.id,
            round=order.round,
            stars=body.stars,
            tags=body.tags,
            comment=body.comment,
            rated_by_id=change.actor.user_id,
            by_proxy=by_proxy,
        )
    )
    if body.stars <= FOLLOWUP_STARS:
        order.needs_followup = True  # 差评回访
    change.event_payload = {"stars": body.stars, "by_proxy": by_proxy}


async def _reopen(change: Change) -> None:
    """返工: a new service round; the old record and rating stay on file."""
    order = change.order
    order.round += 1
    order.assignee_team_id = order.assignee_volunteer_id = None
    order.accepted_at = order.checked_in_at = order.completed_at = None
    change.event_payload = {"round": order.round}


EFFECTS: dict[Action, Effect] = {
    Action.ESCALATE: _escalate,
    Action.TRANSFER: _transfer,
    Action.DISPATCH: _dispatch,
    Action.PUBLISH: _publish,
    Action.ACCEPT: _take,
    Action.GRAB: _take,
    Action.CHECK_IN: _check_in,
    Action.COMPLETE: _complete,
    Action.RATE: _rate,
    Action.REOPEN: _reopen,
}


# The lockless reads (``apply_unlocked``), after ``_DISPATCH_TARGETS``: ``None`` for every other action.
# By action and whether the caller may be a volunteer (``_read_caller``).
_READ_AS_CALLER = {
    (action, volunteer): _read_as_caller(action, volunteer)
    for action in (Action.GRAB, Action.DISPATCH, None)
    for volunteer in (True, False)
}
