"""派单策略: per-unit deadlines and auto-dispatch, inherited down the tree.

A unit's effective policy is its own ``UnitPolicy`` row, else its nearest ancestor's, else
``DEFAULT_POLICY``. Deadlines are data on the order (``deadline_at``, the deadline of its current
step), set here on every transition and swept by ``app.services.sweeper``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, String, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.domain import Status
from app.models import OrgUnit, UnitPolicy
from app.prepared import Prepared, RawConnection


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
    # 签到核验 (app.services.presence): proofs accepted, whether none is allowed (hours then 未核验),
    # the GPS radius around the place and the worst accuracy accepted, in metres.
    presence_proofs: frozenset[str] = frozenset({"code", "gps", "admin"})
    allow_unproven: bool = True
    presence_radius_m: int = 300
    presence_max_accuracy_m: int = 100
    source_unit_id: int | None = None  # the unit whose row this is; None = defaults


DEFAULT_POLICY = Policy()


# The columns a policy is read from, labelled so they can sit beside an order's in one row.
POLICY_COLUMNS = (
    UnitPolicy.unit_id.label("policy_unit_id"),
    UnitPolicy.review_hours.label("policy_review_hours"),
    UnitPolicy.accept_minutes.label("policy_accept_minutes"),
    UnitPolicy.pool_hours.label("policy_pool_hours"),
    UnitPolicy.auto_close_days.label("policy_auto_close_days"),
    UnitPolicy.dispatch_mode.label("policy_dispatch_mode"),
    UnitPolicy.points_per_hour.label("policy_points_per_hour"),
    UnitPolicy.presence_proofs.label("policy_presence_proofs"),
    UnitPolicy.allow_unproven.label("policy_allow_unproven"),
    UnitPolicy.presence_radius_m.label("policy_presence_radius_m"),
    UnitPolicy.presence_max_accuracy_m.label("policy_presence_max_accuracy_m"),
)


def in_force_at(unit_path: ColumnElement[str] | InstrumentedAttribute[str]) -> Select[*tuple[Any, ...]]:
    """The policy row in force at the unit whose path is ``unit_path``: its own, else its nearest
    ancestor's (none: the defaults)."""
    return (
        select(*POLICY_COLUMNS)
        .join(OrgUnit, OrgUnit.id == UnitPolicy.unit_id)
        .where(unit_path.startswith(OrgUnit.path))
        .order_by(OrgUnit.depth.desc())
        .limit(1)
    )


def policy_from(row: Mapping[Any, Any]) -> Policy:
    """The ``Policy`` of a row holding ``POLICY_COLUMNS`` (all ``None``: the defaults)."""
    if row["policy_unit_id"] is None:
        return DEFAULT_POLICY
    return Policy(
        review_hours=row["policy_review_hours"],
        accept_minutes=row["policy_accept_minutes"],
        pool_hours=row["policy_pool_hours"],
        auto_close_days=row["policy_auto_close_days"],
        dispatch_mode=DispatchMode(row["policy_dispatch_mode"]),
        points_per_hour=row["policy_points_per_hour"],
        presence_proofs=frozenset(row["policy_presence_proofs"]),
        allow_unproven=row["policy_allow_unproven"],
        presence_radius_m=row["policy_presence_radius_m"],
        presence_max_accuracy_m=row["policy_presence_max_accuracy_m"],
        source_unit_id=row["policy_unit_id"],
    )


_POLICY_QUERY = in_force_at(bindparam("unit_path", type_=String))


_POLICY_AT = Prepared(_POLICY_QUERY)


async def policy_at(db: RawConnection, unit_path: str) -> Policy:
    """``effective_policy`` on a raw connection (transitions: ``app.services.applying``)."""
    row = await _POLICY_AT.fetchrow(db, {"unit_path": unit_path})
    return DEFAULT_POLICY if row is None else policy_from(row)


async def effective_policy(session: AsyncSession, unit_path: str) -> Policy:
    """The policy in force at the unit with ``unit_path`` (one indexed query)."""
    row = (await session.execute(_POLICY_QUERY, {"unit_path": unit_path})).mappings().one_or_none()
    return DEFAULT_POLICY if row is None else policy_from(row)


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
