"""The two statements of a transition (``app.services.applying``), built once per shape.

- **The read**: the caller (``app.auth``'s caller query), the order *only if the caller may see it*
  (``scope.visible_to_caller``: the scope check in SQL, in the same read), the policy in force at the
  order's unit, a stored ``Idempotency-Key`` answer, and what the action's spec asks for
  (``app.workflow.Read``). For the system (timers, automatic dispatch) the order and policy alone.
- **The write**: everything a transition writes, in one statement, all of it only if the order is still
  at the version read (compare-and-set): the order's new state, its timeline event, one outbox row per
  recipient, the reliability counter, the idempotency record, and the effect's rows (``effect_rows``: a
  service record, a rating).

Statements are Core against the models, compiled once per shape and sent on asyncpg (``Prepared``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Label,
    String,
    and_,
    any_,
    bindparam,
    case,
    exists,
    false,
    func,
    insert,
    null,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, array
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from app.auth import Actor, caller_columns
from app.domain import Action, Role, Status
from app.models import (
    IdempotencyRecord,
    MenuItem,
    OrderEvent,
    OrgUnit,
    Team,
    Volunteer,
)
from app.models.base import table_of
from app.models.orders import Order, OrderRow, OrderView
from app.prepared import Prepared
from app.services import outbox
from app.services.candidates import OPEN_STATES
from app.services.policies import in_force_at
from app.services.qualifications import holds, required_kinds, service_day_of
from app.services.scope import visible_to_caller


class Read(StrEnum):
    """What an action's read needs beside the caller, the order and its unit's policy (one query);
    each action's spec (``app.workflow.ACTIONS``) names its own."""

    PUBLISHED_REGION = "published_region"  # grab: a volunteer of the region an order was ever published
    # to sees it (and learns "already taken", 409) even once it left the pool
    DISPATCH_TARGET = "dispatch_target"  # dispatch: the unit path of the named team or volunteer
    NEW_RECORD_ID = "new_record_id"  # complete: the id the service record will have
    IN_HAND = (
        "in_hand"  # grab: the caller's open orders and their limit (``caller_in_hand``, ``caller_max_open_orders``)
    )
    # accept, grab: the qualification kinds the order's menu item requires that the caller lacks on the
    # service day (``caller_missing_qualifications``, ``NULL`` when none: ``app.services.qualifications``)
    QUALIFIED = "qualified"


# A part of the write statement an effect adds: built from the condition "the order was written",
# it inserts rows (``effects.Change.add_write``).
WritePart = Callable[[ColumnElement[bool]], Insert]

CALLER = "caller_"  # the prefix of the caller's columns in the read
_ORDERS = table_of(Order)
_ORDER_KEYS = tuple(column.key for column in _ORDERS.c)
_IDEMPOTENCY = table_of(IdempotencyRecord)

TEAM_PATH = (
    select(OrgUnit.path.label("target_team_path"))
    .join(Team, Team.unit_id == OrgUnit.id)
    .where(Team.id == bindparam("target_team_id", type_=BigInteger), Team.is_active)
)
VOLUNTEER_PATH = (
    select(OrgUnit.path.label("target_volunteer_path"))
    .join(Volunteer, Volunteer.home_unit_id == OrgUnit.id)
    .where(Volunteer.id == bindparam("target_volunteer_id", type_=BigInteger), Volunteer.status == "active")
)


def _missing_qualifications(volunteer_id: Any, label: str) -> Label[Any]:
    """The qualification kinds the order's menu item requires that ``volunteer_id`` holds none of, valid
    on the service day or today if later (``app.services.qualifications``); ``NULL`` when none."""
    required = required_kinds()
    day = service_day_of(_ORDERS.c.preferred_start)
    return (
        select(func.array_agg(required.c.kind))
        .select_from(MenuItem)
        .join(required, true())
        .where(MenuItem.id == _ORDERS.c.item_id, ~holds(volunteer_id, required.c.kind, day))
        .scalar_subquery()
        .label(label)
    )


_EXTRA: dict[Read, tuple[Label[Any], ...]] = {
    Read.DISPATCH_TARGET: (
        TEAM_PATH.scalar_subquery().label("target_team_path"),
        VOLUNTEER_PATH.scalar_subquery().label("target_volunteer_path"),
        _missing_qualifications(bindparam("target_volunteer_id", type_=BigInteger), "target_missing_qualifications"),
    ),
    Read.NEW_RECORD_ID: (func.nextval(func.pg_get_serial_sequence("service_records", "id")).label("new_record_id"),),
    Read.PUBLISHED_REGION: (),  # widens what the caller may see, below
    Read.IN_HAND: (),  # the caller's: below
    Read.QUALIFIED: (),  # the caller's: below
}
_HELD = table_of(Order).alias("held")


def _in_hand(caller: Any) -> tuple[Label[Any], ...]:
    """``Read.IN_HAND`` for the caller read in the same query."""
    return (
        select(func.count())
        .select_from(_HELD)
        .where(
            _HELD.c.assignee_volunteer_id == caller.c.volunteer_id,
            _HELD.c.status == any_(array(list(OPEN_STATES))),  # Prepared: no expanding IN
        )
        .scalar_subquery()
        .label("caller_in_hand"),
        select(Volunteer.max_open_orders)
        .where(Volunteer.id == caller.c.volunteer_id)
        .scalar_subquery()
        .label("caller_max_open_orders"),
    )


def _stored_answer() -> tuple[Label[Any], ...]:
    """The answer stored under the request's ``Idempotency-Key`` (``idem_*`` parameters), if any."""
    stored = select(_IDEMPOTENCY.c.fingerprint, _IDEMPOTENCY.c.response).where(
        _IDEMPOTENCY.c.user_id == bindparam("idem_user_id", type_=BigInteger),
        _IDEMPOTENCY.c.key == bindparam("idem_key", type_=String),
    )
    return (
        stored.with_only_columns(_IDEMPOTENCY.c.fingerprint).scalar_subquery().label("idem_fingerprint"),
        stored.with_only_columns(_IDEMPOTENCY.c.response).scalar_subquery().label("idem_response"),
    )


@cache
def read_statement(by_system: bool, reads: frozenset[Read], idempotent: bool, leaves: frozenset[Status]) -> Prepared:
    """The read of a transition (see the module docstring); parameters ``order_id``, the caller's
    ``user_id``, and those of ``reads`` and of the idempotency key. One row for a caller whose
    account exists (the order's columns ``NULL`` if they may not see it); for the system, one row if
    the order exists.

    What only a transition that can happen needs (the policy, the spec's ``reads``) is read only when
    the order is in a state the action ``leaves``: a refusal reads the caller, the order and any stored
    answer alone (in a grab storm, 900 of 1,000 grabs find the order taken)."""
    applies = _ORDERS.c.status == any_(array(sorted(state.value for state in leaves))) if leaves else false()
    extra = [_when(applies, column) for read in sorted(reads) for column in _EXTRA[read]]
    if idempotent:
        extra.extend(_stored_answer())  # a replay is answered whatever the order's state now
    order_id = Order.id == bindparam("order_id", type_=BigInteger)
    policy = in_force_at(Order.unit_path).where(applies).lateral("policy")
    if by_system:
        statement = select(*_ORDERS.c, *policy.c, *extra).select_from(_ORDERS.outerjoin(policy, true()))
        return Prepared(statement.where(order_id))
    caller, columns = caller_columns(CALLER)
    if Read.IN_HAND in reads:
        extra.extend(_when(applies, column) for column in _in_hand(caller))
    if Read.QUALIFIED in reads:
        missing = _missing_qualifications(caller.c.volunteer_id, "caller_missing_qualifications")
        extra.append(_when(applies, missing))
    visible = visible_to_caller(caller, published_region=Read.PUBLISHED_REGION in reads)
    return Prepared(
        select(*columns, *_ORDERS.c, *policy.c, *extra).select_from(
            caller.outerjoin(_ORDERS, and_(order_id, visible)).outerjoin(policy, true())
        )
    )


def _when(applies: ColumnElement[bool], column: Label[Any]) -> Label[Any]:
    """``column`` (a subquery, a ``nextval``), evaluated only if ``applies``; else ``NULL``."""
    return case((applies, column.element), else_=null()).label(column.name)


def order_from_row(row: Mapping[str, Any]) -> OrderRow:
    """The order of a row read with Core, as plain values: effects change it, the write saves it."""
    return OrderRow(**{key: row[key] for key in _ORDER_KEYS})


# What a transition may change on the order row (everything else is fixed when the order is placed).
MUTABLE = (
    "status",
    "assignee_team_id",
    "assignee_volunteer_id",
    "unit_id",
    "unit_path",
    "deadline_at",
    "accepted_at",
    "checked_in_at",
    "presence_proof",
    "completed_at",
    "round",
    "needs_followup",
    "version",
    "updated_at",
)
# Every column of an event but its id: what ``event_row`` fills in.
EVENT_COLUMNS = tuple(column.key for column in table_of(OrderEvent).c if not column.primary_key)


def _idempotency_record(written: ColumnElement[bool]) -> Insert:
    """The answer to a request with ``Idempotency-Key``, stored if the order is written. A second
    request with the same key racing this one fails on the primary key, writes nothing, and reads again
    (finding this answer to replay)."""
    return insert(_IDEMPOTENCY).from_select(
        ["user_id", "key", "fingerprint", "status_code", "response"],
        select(
            bindparam("idem_user_id", type_=BigInteger),
            bindparam("idem_key", type_=String),
            bindparam("idem_fingerprint", type_=String),
            bindparam("idem_status", type_=Integer),
            bindparam("idem_answer", type_=JSONB),
        ).where(written),
    )


@cache
def write_statement(
    outbox_sources: tuple[str, ...], counter: str | None, idempotent: bool, parts: tuple[WritePart, ...]
) -> Prepared:
    """Everything a transition writes, in one statement, all of it only if the order is still at
    ``transition_from_version`` (see the module docstring). Its one row: ``written``, 1 or 0.

    One statement per combination, holding only the parts it writes: PostgreSQL then plans it once per
    connection (a generic plan), where parts switched off by parameters were planned on every execution.
    """
    order_id = bindparam("transition_order_id", type_=BigInteger)
    changed = (
        update(_ORDERS)
        .where(_ORDERS.c.id == order_id, _ORDERS.c.version == bindparam("transition_from_version", type_=BigInteger))
        .values({name: bindparam(f"new_{name}", type_=_ORDERS.c[name].type) for name in MUTABLE})
        .returning(_ORDERS.c.id)
        .cte("changed")
    )
    written = exists(select(changed.c.id))
    events = table_of(OrderEvent)
    event = insert(events).from_select(
        list(EVENT_COLUMNS),
        select(*(bindparam(f"event_{name}", type_=events.c[name].type) for name in EVENT_COLUMNS)).where(written),
    )
    ctes = [event.cte("event")]
    if outbox_sources:
        ctes.append(outbox.enqueue_when(written, outbox_sources).cte("outbox"))
    if counter is not None:
        reliability = (
            update(Volunteer)
            .where(Volunteer.id == bindparam("reliability_volunteer_id", type_=BigInteger), written)
            .values({counter: getattr(Volunteer, counter) + 1})
        )
        ctes.append(reliability.cte("reliability"))
    if idempotent:
        ctes.append(_idempotency_record(written).cte("idempotency"))
    ctes.extend(part(written).cte(f"effect_{i}") for i, part in enumerate(parts))
    return Prepared(select(func.count().label("written")).select_from(changed).add_cte(*ctes))


def write_params(order: OrderRow, from_version: int, event: dict[str, Any]) -> dict[str, Any]:
    """The write statement's parameters for the order's new state and its event."""
    params = {"transition_order_id": order.id, "transition_from_version": from_version}
    params.update({f"new_{name}": getattr(order, name) for name in MUTABLE})
    params.update({f"event_{name}": value for name, value in event.items()})
    return params


def event_row(
    order: OrderView,
    action: Action,
    from_status: Status | None,
    actor: Actor,
    reason: str | None,
    payload: dict[str, Any],
    now: Any,
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
    deletes) outside a transition (placing an order, an hours correction, a 回访): a transition writes
    its event in its one write statement."""
    await session.execute(insert(table_of(OrderEvent)), event)
