"""Writing notifications to the outbox (通知发件箱), in the transaction of the event that causes them.

One row per recipient user, so delivery (``app.services.delivery``) is at-least-once per person and
a retry never re-sends to someone already reached.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import Action, Role
from app.models import Order, OutboxMessage, TeamMember, User, Volunteer
from app.workflow import Notify


async def enqueue(
    session: AsyncSession,
    order: Order,
    action: Action,
    audiences: tuple[Notify, ...],
    previous_target: tuple[int | None, int | None] = (None, None),
) -> int:
    """Add one outbox row per recipient of ``audiences``; returns how many."""
    recipients: set[int] = set()
    for audience in audiences:
        recipients |= await _recipients(session, order, audience, previous_target)
    payload = {
        "order_id": order.id,
        "code": order.code,
        "title": order.title,
        "action": action.value,
        "status": order.status,
        "unit_id": order.unit_id,
    }
    session.add_all(
        OutboxMessage(topic=f"order.{action.value}", order_id=order.id, recipient_user_id=user_id, payload=payload)
        for user_id in sorted(recipients)
    )
    return len(recipients)


async def _recipients(
    session: AsyncSession, order: Order, audience: Notify, previous_target: tuple[int | None, int | None]
) -> set[int]:
    match audience:
        case Notify.RESIDENT:
            return {u for u in (order.resident_id, order.placed_by_id) if u is not None}
        case Notify.UNIT_ADMINS:
            query = select(User.id).where(
                User.unit_id == order.unit_id, User.role == Role.ADMIN.value, User.is_active.is_(True)
            )
        case Notify.TARGET:
            team_id = order.assignee_team_id or previous_target[0]
            volunteer_id = order.assignee_volunteer_id or previous_target[1]
            if volunteer_id is not None:
                query = select(Volunteer.user_id).where(Volunteer.id == volunteer_id)
            elif team_id is not None:
                query = (
                    select(Volunteer.user_id)
                    .join(TeamMember, TeamMember.volunteer_id == Volunteer.id)
                    .where(TeamMember.team_id == team_id, Volunteer.status == "active")
                )
            else:
                return set()
    return set((await session.execute(query)).scalars())
