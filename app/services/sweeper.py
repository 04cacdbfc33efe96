"""The deadline sweeper: fires the system actions of the state machine when an order's deadline passes.

- 待受理/待派单 too long → ``escalate`` to the parent unit (站→所→中心), actor ``system``;
- 待接单/抢单中 too long → ``expire`` back to 待派单 (and, under ``auto_assign``, on to the next candidate);
- 待评价 too long → ``auto_close`` to 已关闭, with no stars invented.

Each transition is applied like any other action (``app.services.applying.apply_as_system``): read,
check the deadline has passed, write only if the order is still at the version read. So any number of
sweepers fire each due transition exactly once. Each batch also locks its due rows with
``FOR UPDATE SKIP LOCKED``, so sweepers share the work without waiting on each other; a crash
mid-batch rolls the batch back and the rows are simply due again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from app.domain import Action, Status
from app.errors import DomainError
from app.models import Order, OrgUnit
from app.schemas.orders import EmptyBody, ReasonBody
from app.services.applying import apply_as_system
from app.workflow import DUE_ACTIONS

log = logging.getLogger(__name__)

RETRY_POISONED_AFTER = timedelta(hours=1)
_DUE = select(Order.id, Order.status, Order.unit_id).where(Order.status.in_([s.value for s in DUE_ACTIONS]))


async def sweep(
    sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime | None = None, batch: int = 200
) -> int:
    """Fire every transition due at ``now``; returns how many fired (by this sweeper)."""
    now = now or datetime.now(UTC)
    fired = 0
    while True:
        count, seen = await _sweep_batch(sessionmaker, now, batch)
        fired += count
        if seen < batch:
            return fired


async def _sweep_batch(sessionmaker: async_sessionmaker[AsyncSession], now: datetime, batch: int) -> tuple[int, int]:
    fired = 0
    async with sessionmaker() as session, session.begin():
        connection = await session.connection()
        due = (
            await connection.execute(
                _DUE.where(Order.deadline_at <= now)
                .order_by(Order.deadline_at)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for order_id, status, unit_id in due:
            if await _fire(connection, order_id, DUE_ACTIONS[Status(status)], unit_id, now):
                fired += 1
    return fired, len(due)


async def _fire(connection: AsyncConnection, order_id: int, action: Action, unit_id: int, now: datetime) -> bool:
    body: BaseModel = EmptyBody()
    if action is Action.ESCALATE:
        parent = await connection.scalar(select(OrgUnit.parent_id).where(OrgUnit.id == unit_id))
        if parent is None:
            # Already at the top (中心 or above): nobody to escalate to; staff see it overdue in their list.
            await connection.execute(update(Order).where(Order.id == order_id).values(deadline_at=None))
            return False
        body = ReasonBody(reason="超时未处理, 系统自动上报")
    try:
        async with connection.begin_nested():
            return await apply_as_system(connection, order_id, action, body, now) is not None
    except DomainError as exc:
        # One order that cannot move must not block the others: retry it later.
        log.warning("sweeper could not %s order %s: %s", action.value, order_id, exc)
        retry_at = now + RETRY_POISONED_AFTER
        await connection.execute(update(Order).where(Order.id == order_id).values(deadline_at=retry_at))
        return False
