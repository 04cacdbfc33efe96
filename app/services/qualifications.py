"""技能与资质: requirements of menu items, volunteers' qualifications, and what "qualified" means.

A volunteer is qualified for an order when, for every kind its menu item requires, they hold a
qualification of that kind (recorded by an admin, who verified it) not expired on the order's service
day, or today if that is later (Asia/Shanghai dates). Candidates (``app.services.candidates``), the
automatic dispatch, a dispatch to a named volunteer and the ``accept``/``grab`` actions
(``app.workflow.ACTIONS``: ``Read.QUALIFIED``, checked by the ``take`` effect) all use this one rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, delete, exists, func, or_, select, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.auth import Actor
from app.db import transaction
from app.errors import NotFound
from app.models import MenuItem, OrgUnit, Volunteer, VolunteerQualification
from app.schemas.directory import ItemOut
from app.schemas.qualifications import ItemRequirements, QualificationIn, QualificationOut
from app.services.directory_units import jurisdiction
from app.services.scope import subtree

LOCAL = ZoneInfo("Asia/Shanghai")


def service_day(preferred_start: datetime | None, now: datetime | None = None) -> date:
    """The day a qualification must still be valid on: the service's, or today if that is later."""
    now = now or datetime.now(UTC)
    moment = max(now, preferred_start) if preferred_start is not None else now
    return moment.astimezone(LOCAL).date()


Column = ColumnElement[Any] | InstrumentedAttribute[Any]


def holds(
    volunteer_id: Column,
    kind: ColumnElement[str] | str,
    on: ColumnElement[date] | date,
) -> ColumnElement[bool]:
    """``volunteer_id`` holds a qualification of ``kind`` valid on day ``on``.

    Every table but the qualifications' is the enclosing query's, however deep this sits in it (the
    order whose service day ``on`` is, the caller ``volunteer_id`` is read from): SQLAlchemy correlates
    only to the immediately enclosing SELECT by itself, and would otherwise add them to this one's FROM,
    asking whether the volunteer holds it on *some* order's day (and scanning every order)."""
    return (
        exists()
        .where(
            VolunteerQualification.volunteer_id == volunteer_id,
            VolunteerQualification.kind == kind,
            or_(VolunteerQualification.expires_on.is_(None), VolunteerQualification.expires_on >= on),
        )
        .correlate_except(VolunteerQualification)
    )


def holds_all(volunteer_id: Column, kinds: Sequence[str], on: date) -> list[ColumnElement[bool]]:
    return [holds(volunteer_id, kind, on) for kind in kinds]


def service_day_of(preferred_start: Column) -> ColumnElement[date]:
    """``service_day`` in SQL, for an order's ``preferred_start``."""
    return func.date(func.timezone(LOCAL.key, func.greatest(func.now(), preferred_start)))


def required_kinds() -> Any:
    """The menu item's required qualification kinds as a table (``.c.kind``) to join ``MenuItem`` to."""
    return func.unnest(MenuItem.required_qualifications).table_valued("kind").render_derived(name="required")


def lacks_a_qualification(volunteer_id: Column, item_id: Column, preferred_start: Column) -> ColumnElement[bool]:
    """The order (its ``item_id``, ``preferred_start``) requires a qualification ``volunteer_id`` lacks."""
    required = required_kinds()
    return exists(
        select(required.c.kind)
        .select_from(MenuItem)
        .join(required, true())
        .where(MenuItem.id == item_id, ~holds(volunteer_id, required.c.kind, service_day_of(preferred_start)))
    )


async def requirements_of(session: AsyncSession, item_id: int | None) -> tuple[list[str], list[str]]:
    """(required skills, required qualification kinds) of a menu item (none for a custom order)."""
    if item_id is None:
        return [], []
    row = (
        await session.execute(
            select(MenuItem.required_skills, MenuItem.required_qualifications).where(MenuItem.id == item_id)
        )
    ).one_or_none()
    return ([], []) if row is None else (list(row[0]), list(row[1]))


# --- admin: requirements of menu items ---------------------------------------------------------------


async def set_item_requirements(session: AsyncSession, actor: Actor, item_id: int, body: ItemRequirements) -> ItemOut:
    """Set what a menu item of the caller's subtree requires (404 outside it). Orders already placed
    are held to it from now on: offers, dispatches, accepts and grabs check it when they happen."""
    async with transaction(session):
        item = await session.scalar(
            select(MenuItem)
            .join(OrgUnit, OrgUnit.id == MenuItem.unit_id)
            .where(MenuItem.id == item_id, subtree(OrgUnit.path, jurisdiction(actor)))
            .with_for_update(of=MenuItem)
        )
        if item is None:
            raise NotFound("菜单项不存在")
        item.required_skills = body.required_skills
        item.required_qualifications = body.required_qualifications
        await session.flush()
        return ItemOut.model_validate(item)


# --- admin: volunteers' qualifications ---------------------------------------------------------------


async def _volunteer_in_scope(session: AsyncSession, actor: Actor, volunteer_id: int) -> None:
    found = await session.scalar(
        select(Volunteer.id)
        .join(OrgUnit, OrgUnit.id == Volunteer.home_unit_id)
        .where(Volunteer.id == volunteer_id, subtree(OrgUnit.path, jurisdiction(actor)))
    )
    if found is None:
        raise NotFound("志愿者不存在")


async def list_qualifications(session: AsyncSession, actor: Actor, volunteer_id: int) -> list[QualificationOut]:
    async with transaction(session):
        await _volunteer_in_scope(session, actor, volunteer_id)
        rows = await session.scalars(
            select(VolunteerQualification)
            .where(VolunteerQualification.volunteer_id == volunteer_id)
            .order_by(VolunteerQualification.kind)
        )
        return [QualificationOut.model_validate(row) for row in rows]


async def record_qualification(
    session: AsyncSession, actor: Actor, volunteer_id: int, body: QualificationIn, now: datetime | None = None
) -> QualificationOut:
    """Record (or renew: one per kind) a qualification the admin has checked; they are its verifier."""
    now = now or datetime.now(UTC)
    values = {
        "volunteer_id": volunteer_id,
        "kind": body.kind,
        "number": body.number,
        "expires_on": body.expires_on,
        "verified_by_id": actor.user_id,
        "verified_at": now,
    }
    async with transaction(session):
        await _volunteer_in_scope(session, actor, volunteer_id)
        new = insert(VolunteerQualification).values(values)
        upsert = new.on_conflict_do_update(
            constraint="uq_volunteer_qualifications_kind",
            set_={k: new.excluded[k] for k in ("number", "expires_on", "verified_by_id", "verified_at")},
        ).returning(VolunteerQualification)
        row = (await session.scalars(upsert)).one()
        return QualificationOut.model_validate(row)


async def remove_qualification(session: AsyncSession, actor: Actor, volunteer_id: int, kind: str) -> None:
    """Withdraw a qualification (revoked, recorded in error); 404 if the volunteer has none of the kind."""
    async with transaction(session):
        await _volunteer_in_scope(session, actor, volunteer_id)
        gone = await session.scalar(
            delete(VolunteerQualification)
            .where(VolunteerQualification.volunteer_id == volunteer_id, VolunteerQualification.kind == kind)
            .returning(VolunteerQualification.id)
        )
        if gone is None:
            raise NotFound("该志愿者没有此类资质")


def skill_share(required: Sequence[str], skills: Sequence[str] | None) -> float:
    """The share of the required skills among ``skills`` (0 when nothing is required)."""
    if not required:
        return 0.0
    held = set(skills or ())
    return sum(1 for skill in required if skill in held) / len(required)
