"""The deadline sweeper: fires the system actions of the state machine when an order's deadline passes.

- 待受理/待派单 too long → ``escalate`` to the parent unit (站→所→中心), actor ``system``;
- 待接单/抢单中 too long → ``expire`` back to 待派单 (and, under ``auto_assign``, on to the next candidate);
- 待评价 too long → ``auto_close`` to 已关闭, with no stars invented.

Safe with many service instances on one database: each batch locks its due rows with
``FOR UPDATE SKIP LOCKED`` and re-checks the deadline under the lock, so each due transition fires
exactly once; a crash mid-batch rolls the batch back and the rows are simply due again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import SYSTEM_ACTOR
from app.config import Settings
from app.domain import Action, Status
from app.errors import DomainError
from app.models import Order, OrgUnit
from app.models.base import table_of
from app.schemas.orders import EmptyBody, ReasonBody
from app.services.transitions import order_from_row, transition_locked
from app.workflow import TRANSITIONS

log = logging.getLogger(__name__)

DUE_ACTIONS: dict[Status, Action] = {
    Status.SUBMITTED: Action.ESCALATE,
    Status.APPROVED: Action.ESCALATE,
    Status.DISPATCHED: Action.EXPIRE,
    Status.POOLED: Action.EXPIRE,
    Status.COMPLETED: Action.AUTO_CLOSE,
}
RETRY_POISONED_AFTER = timedelta(hours=1)


async def sweep(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *, now: datetime | None = None, batch: int = 200
) -> int:
    """Fire every transition due at ``now``; returns how many fired (by this sweeper)."""
    now = now or datetime.now(UTC)
    fired = 0
    while True:
        count, seen = await _sweep_batch(sessionmaker, settings, now, batch)
        fired += count
        if seen < batch:
            return fired


async def _sweep_batch(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime, batch: int
) -> tuple[int, int]:
    fired = 0
    async with sessionmaker() as session, session.begin():
        due = [
            order_from_row(row)
            for row in (
                await session.execute(
                    select(*table_of(Order).c)
                    .where(Order.deadline_at <= now, Order.status.in_([s.value for s in DUE_ACTIONS]))
                    .order_by(Order.deadline_at)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            ).mappings()
        ]
        for order in due:
            if await _fire(session, settings, order, now):
                fired += 1
    return fired, len(due)


async def _fire(session: AsyncSession, settings: Settings, order: Order, now: datetime) -> bool:
    status = Status(order.status)
    action = DUE_ACTIONS[status]
    order_id = order.id
    body: BaseModel = EmptyBody()
    if action is Action.ESCALATE:
        parent = await session.scalar(select(OrgUnit.parent_id).where(OrgUnit.id == order.unit_id))
        if parent is None:
            # Already at the top (中心 or above): nobody to escalate to; staff see it overdue in their list.
            await session.execute(update(Order).where(Order.id == order_id).values(deadline_at=None))
            return False
        body = ReasonBody(reason="超时未处理, 系统自动上报")
    try:
        async with session.begin_nested():
            await transition_locked(
                session, settings, order, TRANSITIONS[(status, action)], action, SYSTEM_ACTOR, body, now
            )
    except DomainError as exc:
        # One order that cannot move must not block the others: retry it later.
        log.warning("sweeper could not %s order %s: %s", action.value, order_id, exc)
        await session.execute(update(Order).where(Order.id == order_id).values(deadline_at=now + RETRY_POISONED_AFTER))
        return False
    return True
