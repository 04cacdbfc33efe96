"""``apply``: the one way any action of the state machine is applied to an order, by anyone.

People over HTTP (with or without ``Idempotency-Key``), the sweeper's timers and the automatic
dispatch that follows some actions all come here, and all get the same concurrency model:

1. **Read** in one statement who is asking, the order (found only if they may see it: the scope
   check is in that SQL), the policy in force at its unit and whatever the action's spec asks for
   (``app.services.statements``; those two only if the order is in a state the action leaves). No
   lock is taken.
2. **Decide**: the rule for (state, action) from ``app.workflow.ACTIONS``, the caller's role and guard,
   ``If-Match``, then the action's effect (``app.services.effects``), which may refuse or read more.
3. **Write** in one statement the order's new state, its event, its outbox rows, the reliability
   counter, the idempotency record and the effect's rows, all only if the order is still at the
   version read (compare-and-set). A request that lost the race wrote nothing; it reads again and
   decides anew against the new state (``CAS_ATTEMPTS`` times, then 409 ``busy``).

So exactly one of any number of concurrent actions on one version wins, no update is lost, and a
retried ``Idempotency-Key`` replays the first answer (the record is written by the winning statement).
On a connection with a transaction open (the sweeper's batch, placing an order) the two statements
run inside it; otherwise the write statement is its own transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.auth import SYSTEM_ACTOR, Actor, Caller, actor_from_row
from app.domain import Action, Status, action_paths
from app.errors import Busy, Forbidden, IllegalTransition, InvalidInput, NotFound, VersionMismatch
from app.models.orders import OrderRow
from app.observability import count_transition
from app.prepared import RawConnection, raw_of
from app.schemas.orders import DispatchBody, OrderOut, PublishBody
from app.services import candidates, effects, outbox, presence, statements
from app.services.effects import Change, dispatch_target_params
from app.services.guards import allowed_actions, guard_holds
from app.services.idempotency import IdempotencyKey
from app.services.policies import DispatchMode, Policy, policy_at, policy_from, step_deadline
from app.services.presenters import present_order
from app.workflow import ACTIONS, TRANSITIONS, ActionSpec, Read, Rule

# Reads before a compare-and-set write gives up on an order other requests keep changing (409 busy).
CAS_ATTEMPTS = 3


# Where a transition runs: a connection of SQLAlchemy's (in the transaction it has open, if any: the
# sweeper's batch, placing an order) or one taken from the pool for this request alone (``pooled``).
Connection = AsyncConnection | RawConnection


async def apply(
    connection: Connection,
    *,
    order_id: int,
    action: Action,
    caller: Caller,
    body: BaseModel,
    idem: IdempotencyKey | None = None,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> OrderOut:
    """Perform ``action`` on order ``order_id`` as ``caller``; the order as the caller may now see it.

    ``DomainError`` (401, 403, 404, 409, 422) when it may not be done; nothing is then written."""
    done = await _apply(connection, order_id, ACTIONS[action], caller, body, idem, expected_version, now)
    assert done is not None  # only the system's timers find nothing to do
    order, actor, answer = done
    return answer if answer is not None else present_order(order, actor, answering_action=True)


async def apply_as_system(
    connection: Connection,
    order_id: int,
    action: Action,
    body: BaseModel,
    now: datetime | None = None,
    *,
    dispatch_onward: bool = True,
) -> OrderRow | None:
    """The system performs ``action`` (a timer, an automatic dispatch, 免审). A timer's action is only
    done once the order's deadline has passed, so several sweepers fire it once: ``None`` if it was
    not (any longer) due. ``dispatch_onward=False``: no automatic dispatch follows (a standing order's
    occurrence that goes to its previous volunteer, ``app.services.standing_spawn``)."""
    done = await _apply(connection, order_id, ACTIONS[action], None, body, None, None, now, dispatch_onward)
    return None if done is None else done[0]


async def dispatch_by_policy(connection: AsyncConnection, order: OrderRow, now: datetime) -> OrderRow | None:
    """The automatic dispatch an order at 待派单 gets under its unit's policy (``None``: manual, or
    nobody left to offer it to), as if it had just arrived there."""
    policy = await policy_at(await raw_of(connection), order.unit_path)
    return await _dispatch_onward(connection, connection, order, policy, now)


async def _apply(
    connection: Connection,
    order_id: int,
    spec: ActionSpec,
    caller: Caller | None,
    body: BaseModel,
    idem: IdempotencyKey | None,
    expected_version: int | None,
    now: datetime | None,
    dispatch_onward: bool = True,
) -> tuple[OrderRow, Actor, OrderOut | None] | None:
    db, outer = (connection, None) if isinstance(connection, RawConnection) else (await raw_of(connection), connection)
    read = statements.read_statement(caller is None, spec.reads, idem is not None, spec.leaves)
    params: dict[str, Any] = {"order_id": order_id}
    if caller is not None:
        params["user_id"] = caller.user_id
    if Read.DISPATCH_TARGET in spec.reads:
        params |= dispatch_target_params(body)
    if idem is not None and caller is not None:
        params |= {"idem_user_id": caller.user_id, "idem_key": idem.key}
    for _ in range(CAS_ATTEMPTS):
        at = now or datetime.now(UTC)
        row = await read.fetchrow(db, params)
        actor = _actor(row, caller, spec)
        if row is None or row["id"] is None:
            raise NotFound("订单不存在")
        order = statements.order_from_row(row)
        if idem is not None and row["idem_fingerprint"] is not None:
            return order, actor, _replay(row, idem, order, actor)
        if caller is None and spec.timer and not _due(order, at):
            return None
        rule = _checked_rule(order, spec.action, actor, expected_version)
        change = Change(db, order, actor, body, at, policy_from(row), row)
        try:
            written, answer = await _write(change, spec, rule, idem)
        except asyncpg.UniqueViolationError:
            if idem is None:
                raise
            continue  # the same key won a race a moment ago: read again and replay its answer
        if not written:
            continue  # lost the race: read the new state and decide again
        count_transition(outer, spec.action.value)
        if dispatch_onward and spec.dispatches_onward and order.status == Status.APPROVED.value:
            onward = await _dispatch_onward(connection, outer or db.engine, order, change.policy, at)
            if onward is not None:
                order, answer = onward, None  # answered as it is now, dispatched on
        return order, actor, answer
    raise Busy()


def _actor(row: Mapping[str, Any] | None, caller: Caller | None, spec: ActionSpec) -> Actor:
    if caller is None:
        return SYSTEM_ACTOR
    actor = actor_from_row(row, caller.token_version, prefix=statements.CALLER)  # 401 if no such account
    if actor.role not in spec.roles:
        raise Forbidden(f"角色 {actor.role.value} 不能执行 {spec.action.value}")
    return actor


def _due(order: OrderRow, now: datetime) -> bool:
    return order.deadline_at is not None and order.deadline_at <= now


def _checked_rule(order: OrderRow, action: Action, actor: Actor, expected_version: int | None) -> Rule:
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
            allowed_actions=[path.value for path in action_paths(allowed_actions(actor, order))],
        )
    if actor.role not in rule.actors or not guard_holds(rule.guard, actor, order):
        raise Forbidden(f"无权对此订单执行 {action.value}", status=status.value)
    return rule


async def _write(
    change: Change, spec: ActionSpec, rule: Rule, idem: IdempotencyKey | None
) -> tuple[bool, OrderOut | None]:
    """Run the effect and the write statement: whether the order was written (else its version moved
    since the read, and nothing was), and the answer for a caller who is a person."""
    order, actor, now = change.order, change.actor, change.now
    from_status, from_version = Status(order.status), order.version
    previous_target = (order.assignee_team_id, order.assignee_volunteer_id)
    if rule.clears_assignment:
        change.event_payload |= {"previous_team_id": previous_target[0], "previous_volunteer_id": previous_target[1]}
        order.assignee_team_id = order.assignee_volunteer_id = None
    if spec.effect is not None:
        await spec.effect(change)
    if rule.to is not None:
        order.status = rule.to.value
    order.deadline_at = step_deadline(
        Status(order.status), change.policy, now, change.deadline_minutes, service_start=order.preferred_start
    )
    order.version = from_version + 1
    order.updated_at = now
    reason = getattr(change.body, "reason", None)
    payload = change.body.model_dump(mode="json", exclude={"reason"}) | change.event_payload
    event = statements.event_row(order, spec.action, from_status, actor, reason, payload, now)
    notify = outbox.enqueue_params(order, spec.action, rule.notify, previous_target)
    params = statements.write_params(order, from_version, event) | notify
    if spec.reliability is not None:
        # Reliability is the acting volunteer's; an expiry counts against the one who let it pass.
        params["reliability_volunteer_id"] = previous_target[1] if spec.action is Action.EXPIRE else actor.volunteer_id
    answer = None if actor is SYSTEM_ACTOR else present_order(order, actor, answering_action=True, rating=change.rating)
    if idem is not None:
        assert answer is not None
        params |= {
            "idem_user_id": actor.user_id,
            "idem_key": idem.key,
            "idem_fingerprint": idem.fingerprint,
            "idem_status": 200,
            "idem_answer": answer.model_dump(mode="json"),
        }
    for part_params in change.writes.values():
        params |= part_params
    statement = statements.write_statement(
        outbox.sources_in(notify), spec.reliability, idem is not None, tuple(change.writes)
    )
    try:
        row = await statement.fetchrow(change.db, params)
    except asyncpg.PostgresError as exc:
        if exc.sqlstate == effects.OVER_THE_LIMIT:  # the database's check of a grab's limit
            raise effects.over_the_limit(from_status.value) from exc
        if presence.is_code_reuse(exc):  # the used-codes key: this 签到码 was used a moment ago
            raise presence.code_used() from exc
        raise
    return row is not None and row["written"] == 1, answer


def _replay(row: Mapping[str, Any], idem: IdempotencyKey, order: OrderRow, actor: Actor) -> OrderOut:
    """The stored answer to a retried ``Idempotency-Key``, the contact phone shown as the caller may see
    it now (a volunteer who has since released the order sees it masked)."""
    if row["idem_fingerprint"] != idem.fingerprint:
        raise InvalidInput("Idempotency-Key 已用于另一个请求", key=idem.key)
    answer = OrderOut.model_validate(row["idem_response"])
    current = present_order(order, actor, answering_action=True)
    return answer.model_copy(update={"contact_phone": current.contact_phone})


async def _dispatch_onward(
    connection: Connection, reads: AsyncConnection | AsyncEngine | None, order: OrderRow, policy: Policy, now: datetime
) -> OrderRow | None:
    """自动派单 after an action left the order at 待派单: ``auto_assign`` dispatches to the best
    candidate not yet tried this round, ``auto_pool`` publishes it; each is an action of the system's,
    applied like any other (so it loses to anyone who changed the order meanwhile)."""
    if policy.dispatch_mode is DispatchMode.MANUAL:
        return None
    if policy.dispatch_mode is DispatchMode.AUTO_POOL:
        return await apply_as_system(connection, order.id, Action.PUBLISH, PublishBody(), now)
    assert reads is not None, "a pooled connection carries its engine"
    async with AsyncSession(bind=reads) as session:  # the ranking reads, in the transaction if there is one
        best = await candidates.best_volunteer(session, order)
    if best is None:
        return None  # nobody left: the order waits for staff (and escalates when its review deadline passes)
    return await apply_as_system(connection, order.id, Action.DISPATCH, DispatchBody(volunteer_id=best), now)
