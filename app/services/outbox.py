"""Writing notifications to the outbox (通知发件箱), in the transaction of the event that causes them.

One row per recipient user, so delivery (``app.services.delivery``) is at-least-once per person and
a retry never re-sends to someone already reached.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CursorResult,
    Insert,
    Select,
    String,
    bindparam,
    func,
    insert,
    select,
    true,
    union,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import Action, Notify, Role
from app.models import ActivitySignup, OrderView, OutboxMessage, TeamMember, User, Volunteer
from app.models.base import table_of

# Recipients resolved in SQL, and their rows written, by one prebuilt statement: the people named
# directly (the resident and whoever placed the order), a unit's active admins, the target volunteer,
# or else the target team's active members; each source keyed by its parameter in ``enqueue_params``.
SOURCES: dict[str, Select[Any]] = {
    "outbox_direct": select(func.unnest(bindparam("outbox_direct", type_=ARRAY(BigInteger))).label("user_id")),
    "outbox_admins_of_unit": select(User.id.label("user_id")).where(
        User.unit_id == bindparam("outbox_admins_of_unit", type_=BigInteger),
        User.role == Role.ADMIN.value,
        User.is_active.is_(True),
    ),
    "outbox_target_volunteer": select(Volunteer.user_id).where(
        Volunteer.id == bindparam("outbox_target_volunteer", type_=BigInteger)
    ),
    "outbox_target_team": select(Volunteer.user_id)
    .join(TeamMember, TeamMember.volunteer_id == Volunteer.id)
    .where(TeamMember.team_id == bindparam("outbox_target_team", type_=BigInteger), Volunteer.status == "active"),
}


def sources_in(params: dict[str, Any]) -> tuple[str, ...]:
    """The recipient sources ``enqueue_params`` gave a value: the only ones a statement needs."""
    return tuple(name for name in SOURCES if params[name])


def enqueue_when(condition: ColumnElement[bool], sources: tuple[str, ...] = tuple(SOURCES)) -> Insert:
    """The statement writing the outbox rows for the recipients of ``sources`` (parameters:
    ``enqueue_params``), if ``condition`` holds."""
    recipients = union(*(SOURCES[name] for name in sources)).subquery("recipients")
    return insert(table_of(OutboxMessage)).from_select(
        ["topic", "order_id", "recipient_user_id", "payload"],
        select(
            bindparam("outbox_topic", type_=String),
            bindparam("outbox_order_id", type_=BigInteger),
            recipients.c.user_id,
            bindparam("outbox_payload", type_=JSONB),
        )
        .where(recipients.c.user_id.is_not(None), condition)
        .order_by(recipients.c.user_id),
    )


ENQUEUE = enqueue_when(true())


def enqueue_params(
    order: OrderView,
    action: Action,
    audiences: tuple[Notify, ...],
    previous_target: tuple[int | None, int | None] = (None, None),
) -> dict[str, Any]:
    """``ENQUEUE``'s parameters: who of ``audiences`` hears of ``action`` on ``order``, and what."""
    direct = (
        sorted({u for u in (order.resident_id, order.placed_by_id) if u is not None})
        if Notify.RESIDENT in audiences
        else []
    )
    team_id = volunteer_id = None
    if Notify.TARGET in audiences:
        volunteer_id = order.assignee_volunteer_id or previous_target[1]
        team_id = None if volunteer_id is not None else order.assignee_team_id or previous_target[0]
    return {
        "outbox_topic": f"order.{action.value}",
        "outbox_order_id": order.id,
        "outbox_payload": {
            "order_id": order.id,
            "code": order.code,
            "title": order.title,
            "action": action.value,
            "status": order.status,
            "unit_id": order.unit_id,
        },
        "outbox_direct": direct,
        "outbox_admins_of_unit": order.unit_id if Notify.UNIT_ADMINS in audiences else None,
        "outbox_target_volunteer": volunteer_id,
        "outbox_target_team": team_id,
    }


async def enqueue(
    session: AsyncSession,
    order: OrderView,
    action: Action,
    audiences: tuple[Notify, ...],
    previous_target: tuple[int | None, int | None] = (None, None),
) -> int:
    """Add one outbox row per recipient of ``audiences``; returns how many."""
    if not audiences:
        return 0
    result = await session.execute(ENQUEUE, enqueue_params(order, action, audiences, previous_target))
    return cast(CursorResult[Any], result).rowcount


async def enqueue_for_signups(session: AsyncSession, topic: str, signup_ids: list[int], payload: dict[str, Any]) -> int:
    """活动通知: one outbox row per volunteer of ``signup_ids`` (however many of their sign-ups are
    among them: one message about the activity), ``topic`` ``activity.…`` and no order, in the caller's
    transaction; returns how many."""
    if not signup_ids:
        return 0
    volunteers = (
        select(Volunteer.user_id)
        .join(ActivitySignup, ActivitySignup.volunteer_id == Volunteer.id)
        .where(ActivitySignup.id.in_(signup_ids))
        .distinct()
        .subquery("volunteers")
    )
    recipients = select(
        bindparam("outbox_topic", topic, type_=String),
        volunteers.c.user_id,
        bindparam("outbox_payload", payload, type_=JSONB),
    ).order_by(volunteers.c.user_id)
    statement = insert(table_of(OutboxMessage)).from_select(["topic", "recipient_user_id", "payload"], recipients)
    return cast(CursorResult[Any], await session.execute(statement)).rowcount
