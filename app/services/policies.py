"""派单策略: per-unit deadlines and auto-dispatch, inherited down the tree.

A unit's effective policy is its own ``UnitPolicy`` row, else its nearest ancestor's, else
``DEFAULT_POLICY``. Deadlines are data on the order (``deadline_at``, the deadline of its current
step), set here on every transition and swept by ``app.services.sweeper``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import Status
from app.models import OrgUnit, UnitPolicy
from app.models.org import ancestor_paths


class DispatchMode(StrEnum):
    MANUAL = "manual"  # staff dispatch or publish by hand (default)
    AUTO_ASSIGN = "auto_assign"  # the best candidate gets a directive dispatch; on decline/expiry, the next
    AUTO_POOL = "auto_pool"  # approved orders go straight to the grab pool of the unit's subtree


@dataclass(frozen=True, slots=True)
class Policy:
    review_hours: int = 24  # submitted/approved: staff must review and dispatch within this, else 上报
    accept_minutes: int = 120  # dispatched: the target must accept within this, else expire
    pool_hours: int = 24  # pooled: the pool stays open this long, else expire
    auto_close_days: int = 7  # completed: closed without stars after this many days unrated
    dispatch_mode: DispatchMode = DispatchMode.MANUAL
    points_per_hour: int = 10  # 积分 earned per service hour
    source_unit_id: int | None = None  # the unit whose row this is; None = defaults


DEFAULT_POLICY = Policy()


_POLICY_QUERY = (
    select(UnitPolicy)
    .join(OrgUnit, OrgUnit.id == UnitPolicy.unit_id)
    .where(OrgUnit.path == any_(bindparam("paths", type_=ARRAY(String))))
    .order_by(OrgUnit.depth.desc())
    .limit(1)
)


async def effective_policy(session: AsyncSession, unit_path: str) -> Policy:
    """The policy in force at the unit with ``unit_path`` (one indexed query)."""
    row = (await session.execute(_POLICY_QUERY, {"paths": ancestor_paths(unit_path)})).scalar_one_or_none()
    if row is None:
        return DEFAULT_POLICY
    return Policy(
        review_hours=row.review_hours,
        accept_minutes=row.accept_minutes,
        pool_hours=row.pool_hours,
        auto_close_days=row.auto_close_days,
        dispatch_mode=DispatchMode(row.dispatch_mode),
        points_per_hour=row.points_per_hour,
        source_unit_id=row.unit_id,
    )


def step_deadline(
    status: Status, policy: Policy, now: datetime, minutes: int | None = None, service_start: datetime | None = None
) -> datetime | None:
    """The deadline of the step an order in ``status`` is waiting on; ``minutes`` overrides the policy.

    An accepted order is due to start service at the resident's preferred start (if given); no timer
    acts on it (the state machine has no system action there), staff see it overdue in their list.
    """
    match status:
        case Status.SUBMITTED | Status.APPROVED:
            return now + timedelta(minutes=minutes or policy.review_hours * 60)
        case Status.DISPATCHED:
            return now + timedelta(minutes=minutes or policy.accept_minutes)
        case Status.POOLED:
            return now + timedelta(minutes=minutes or policy.pool_hours * 60)
        case Status.ACCEPTED:
            return service_start
        case Status.COMPLETED:
            return now + timedelta(days=policy.auto_close_days)
        case _:
            return None
