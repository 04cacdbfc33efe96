"""常态化服务: standing orders — create, read, pause, resume, end.

A standing order is a recurring need ("visit 王奶奶 every Tuesday at 9:00"): an order template and an
RRULE (``app.services.recurrence``). The sweeper places one ordinary order per occurrence, a lead time
ahead (``app.services.standing_spawn``). Who may act on one: the resident it serves or who placed it,
and admins whose subtree holds its unit; anyone else gets 404 (no existence leaks). A volunteer places
orders for residents one by one (代点单); standing orders are set up by the resident or staff.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, false, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor, hold_account
from app.config import Settings
from app.db import transaction
from app.domain import Role
from app.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.models import MenuItem, OrgUnit, StandingOccurrence, StandingOrder, User
from app.models.org import ancestor_paths
from app.schemas.standing import OccurrenceOut, StandingOrderCreate, StandingOrderOut
from app.services import recurrence
from app.services.scope import subtree

# What each status change may leave from, and where it goes.
_MOVES: dict[str, tuple[tuple[str, ...], str]] = {
    "pause": (("active",), "paused"),
    "resume": (("paused",), "active"),
    "end": (("active", "paused"), "ended"),
}
_VERBS = {"pause": "暂停", "resume": "恢复", "end": "终止"}


def visible_to(actor: Actor) -> ColumnElement[bool]:
    """The standing orders ``actor`` may see and manage."""
    if actor.role is Role.ADMIN and actor.unit_path is not None:
        return subtree(StandingOrder.unit_path, actor.unit_path)
    if actor.role is Role.RESIDENT:
        return or_(StandingOrder.resident_id == actor.user_id, StandingOrder.placed_by_id == actor.user_id)
    return false()


async def create_standing_order(
    session: AsyncSession, settings: Settings, actor: Actor, body: StandingOrderCreate, now: datetime | None = None
) -> StandingOrderOut:
    """Set up a standing order; its first occurrence still to come is the next one spawned.

    422 for a malformed or unbounded RRULE, a schedule with no occurrence after now, a unit or menu
    item the order could not be placed at."""
    now = now or datetime.now(UTC)
    if actor.role not in (Role.RESIDENT, Role.ADMIN):
        raise Forbidden("常态化服务由群众本人或工作人员设立")
    occurrences = recurrence.validate(body.rrule, body.starts_at)
    upcoming = next((moment for moment in occurrences if moment > now), None)
    if upcoming is None:
        raise InvalidInput("该计划已没有未来的服务时间", field="rrule")
    lead = timedelta(hours=settings.standing_order_lead_hours if body.lead_hours is None else body.lead_hours)
    async with transaction(session):
        if actor.role is Role.RESIDENT:
            await hold_account(session, actor.user_id)
        unit = await session.get(OrgUnit, body.unit_id)
        if unit is None or not unit.is_active:
            raise InvalidInput("服务单位不存在或已停用", unit_id=body.unit_id)
        if actor.role is Role.ADMIN and not actor.administers(unit.path):
            raise InvalidInput("只能为本单位及下级单位设立常态化服务", unit_id=body.unit_id)
        resident_id = await _resident(session, actor, body.resident_id)
        if body.item_id is not None:
            await _check_item(session, body.item_id, unit.path)
        standing = StandingOrder(
            resident_id=resident_id,
            placed_by_id=actor.user_id,
            unit_id=unit.id,
            unit_path=unit.path,
            item_id=body.item_id,
            title=body.title,
            description=body.description,
            address=body.address,
            lat=body.lat,
            lng=body.lng,
            contact_name=body.contact_name,
            contact_phone=body.contact_phone,
            beneficiaries=body.beneficiaries,
            rrule=body.rrule.strip().removeprefix("RRULE:"),
            starts_at=body.starts_at,
            duration_minutes=body.duration_minutes,
            lead_minutes=int(lead.total_seconds() // 60),
            keep_volunteer=body.keep_volunteer,
            status="active",
            next_occurrence_at=upcoming,
            next_spawn_at=upcoming - lead,
            created_at=now,
            updated_at=now,
        )
        session.add(standing)
        await session.flush()
        return StandingOrderOut.model_validate(standing)


async def _resident(session: AsyncSession, actor: Actor, resident_id: int | None) -> int | None:
    if actor.role is Role.RESIDENT:
        if resident_id not in (None, actor.user_id):
            raise InvalidInput("群众只能为本人设立常态化服务", resident_id=resident_id)
        return actor.user_id
    if resident_id is None:
        return None
    role = await session.scalar(select(User.role).where(User.id == resident_id, User.is_active.is_(True)))
    if role != Role.RESIDENT.value:
        raise InvalidInput("resident_id 不是有效的群众账号", resident_id=resident_id)
    return resident_id


async def _check_item(session: AsyncSession, item_id: int, unit_path: str) -> None:
    found = await session.scalar(
        select(MenuItem.id)
        .join(OrgUnit, OrgUnit.id == MenuItem.unit_id)
        .where(MenuItem.id == item_id, MenuItem.is_active.is_(True), OrgUnit.path.in_(ancestor_paths(unit_path)))
    )
    if found is None:
        raise InvalidInput("菜单项不存在, 或不在该单位的服务菜单中", item_id=item_id)


async def _visible(session: AsyncSession, actor: Actor, standing_id: int) -> StandingOrder:
    standing = await session.scalar(select(StandingOrder).where(StandingOrder.id == standing_id, visible_to(actor)))
    if standing is None:
        raise NotFound("常态化服务不存在")
    return standing


async def get_standing_order(session: AsyncSession, actor: Actor, standing_id: int) -> StandingOrderOut:
    async with transaction(session):
        return StandingOrderOut.model_validate(await _visible(session, actor, standing_id))


async def list_standing_orders(session: AsyncSession, actor: Actor, limit: int = 100) -> list[StandingOrderOut]:
    """The caller's standing orders (a resident's own, an admin's subtree), newest first."""
    async with transaction(session):
        rows = await session.scalars(
            select(StandingOrder).where(visible_to(actor)).order_by(StandingOrder.id.desc()).limit(limit)
        )
        return [StandingOrderOut.model_validate(row) for row in rows]


async def occurrences(session: AsyncSession, actor: Actor, standing_id: int) -> list[OccurrenceOut]:
    """The occurrences spawned so far (each an ordinary order) and those skipped, oldest first."""
    async with transaction(session):
        await _visible(session, actor, standing_id)
        rows = await session.scalars(
            select(StandingOccurrence)
            .where(StandingOccurrence.standing_order_id == standing_id)
            .order_by(StandingOccurrence.occurrence_at)
        )
        return [OccurrenceOut.model_validate(row) for row in rows]


async def change_status(
    session: AsyncSession, actor: Actor, standing_id: int, move: str, reason: str | None, now: datetime | None = None
) -> StandingOrderOut:
    """暂停 / 恢复 / 终止. Pausing stops spawning (orders already placed stay: each is cancelled like any
    order); resuming continues with the first occurrence still to come (none of those missed while
    paused); ending is for good. One conditional UPDATE: of two concurrent changes, one wins and the
    other gets 409 with the current status."""
    now = now or datetime.now(UTC)
    sources, target = _MOVES[move]
    async with transaction(session):
        standing = await _visible(session, actor, standing_id)
        values: dict[str, object] = {
            "status": target,
            "status_reason": reason,
            "updated_at": now,
            "version": StandingOrder.version + 1,
        }
        if move == "resume":
            after = max(now, standing.last_occurrence_at or now)
            upcoming = recurrence.next_after(standing.rrule, standing.starts_at, after)
            if upcoming is None:
                values |= {"status": "finished", "next_occurrence_at": None, "next_spawn_at": None}
            else:
                lead = timedelta(minutes=standing.lead_minutes)
                values |= {"next_occurrence_at": upcoming, "next_spawn_at": upcoming - lead}
        elif move == "end":
            values |= {"next_occurrence_at": None, "next_spawn_at": None}
        changed = await session.scalar(
            update(StandingOrder)
            .where(StandingOrder.id == standing_id, StandingOrder.status.in_(sources))
            .values(values)
            .returning(StandingOrder.id)
        )
        if changed is None:
            current = await session.scalar(
                select(StandingOrder.status)
                .where(StandingOrder.id == standing_id)
                .execution_options(populate_existing=True)
            )
            raise Conflict(f"常态化服务当前为「{current}」, 不能{_VERBS[move]}", status=current)
        await session.refresh(standing)
        return StandingOrderOut.model_validate(standing)
