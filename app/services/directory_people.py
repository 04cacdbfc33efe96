"""管理后台 · 人员: volunteer teams (服务队), volunteers (志愿者) and admins (管理员) of the caller's subtree.

A volunteer belongs to the subtree of its home unit, a team and an admin to that of their unit.
Passwords are hashed before the transaction opens (argon2 is slow) and never leave this module.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from typing import cast

from sqlalchemy import delete, exists, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor, hash_password
from app.db import transaction
from app.domain import Role
from app.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.models import MenuCategory, OrgUnit, Team, TeamMember, User, Volunteer, team_categories
from app.schemas.common import Page
from app.schemas.directory import (
    AdminCreate,
    AdminOut,
    AdminUpdate,
    TeamCreate,
    TeamMembersIn,
    TeamOut,
    TeamUpdate,
    VolunteerCreate,
    VolunteerOut,
    VolunteerStatus,
    VolunteerUpdate,
)
from app.services.directory_units import flush_unique, jurisdiction, listing_scope, referenced_unit
from app.services.pagination import keyset, page_of
from app.services.privacy import record_volunteer_phone_reads
from app.services.scope import subtree

# --- shared checks --------------------------------------------------------------------------------


async def _ensure_username_free(session: AsyncSession, username: str) -> None:
    if await session.scalar(select(exists().where(User.username == username))):
        raise Conflict(f"用户名 {username} 已被使用", field="username")


async def _check_volunteers_in_scope(
    session: AsyncSession, actor: Actor, volunteer_ids: Collection[int], field: str
) -> None:
    """422 unless every id is a volunteer whose home unit lies in the caller's subtree."""
    if not volunteer_ids:
        return
    found = set(
        await session.scalars(
            select(Volunteer.id)
            .join(OrgUnit, OrgUnit.id == Volunteer.home_unit_id)
            .where(Volunteer.id.in_(volunteer_ids), subtree(OrgUnit.path, jurisdiction(actor)))
        )
    )
    missing = sorted(set(volunteer_ids) - found)
    if missing:
        raise InvalidInput("志愿者不存在或不在管辖范围内", field=field, volunteer_ids=missing)


async def _checked_category_ids(session: AsyncSession, category_ids: Iterable[int]) -> list[int]:
    """The distinct ids, in order; 422 if any names no 菜单类别."""
    wanted = list(dict.fromkeys(category_ids))
    if not wanted:
        return []
    found = set(await session.scalars(select(MenuCategory.id).where(MenuCategory.id.in_(wanted))))
    missing = [c for c in wanted if c not in found]
    if missing:
        raise InvalidInput("菜单类别不存在", field="category_ids", category_ids=missing)
    return wanted


# --- teams (志愿服务队) ----------------------------------------------------------------------------


async def _present_teams(session: AsyncSession, teams: list[Team]) -> list[TeamOut]:
    members: dict[int, list[int]] = defaultdict(list)
    categories: dict[int, list[int]] = defaultdict(list)
    ids = [t.id for t in teams]
    if ids:
        member_rows = await session.execute(
            select(TeamMember.team_id, TeamMember.volunteer_id)
            .where(TeamMember.team_id.in_(ids))
            .order_by(TeamMember.volunteer_id)
        )
        for team_id, volunteer_id in member_rows:
            members[team_id].append(volunteer_id)
        category_rows = await session.execute(
            select(team_categories.c.team_id, team_categories.c.category_id)
            .where(team_categories.c.team_id.in_(ids))
            .order_by(team_categories.c.category_id)
        )
        for team_id, category_id in category_rows:
            categories[team_id].append(category_id)
    return [
        TeamOut(
            id=t.id,
            unit_id=t.unit_id,
            name=t.name,
            leader_volunteer_id=t.leader_volunteer_id,
            is_active=t.is_active,
            member_ids=members[t.id],
            category_ids=categories[t.id],
        )
        for t in teams
    ]


async def _team_in_scope(session: AsyncSession, actor: Actor, team_id: int, *, lock: bool = False) -> Team:
    query = (
        select(Team)
        .join(OrgUnit, OrgUnit.id == Team.unit_id)
        .where(Team.id == team_id, subtree(OrgUnit.path, jurisdiction(actor)))
    )
    if lock:  # serializes member/category replacement, which deletes and re-inserts link rows
        query = query.with_for_update(of=Team)
    team = (await session.scalars(query)).one_or_none()
    if team is None:
        raise NotFound("服务队不存在")
    return team


async def _member_ids(session: AsyncSession, team_id: int) -> set[int]:
    return set(await session.scalars(select(TeamMember.volunteer_id).where(TeamMember.team_id == team_id)))


async def _replace_categories(session: AsyncSession, team_id: int, category_ids: list[int]) -> None:
    await session.execute(delete(team_categories).where(team_categories.c.team_id == team_id))
    if category_ids:
        await session.execute(insert(team_categories), [{"team_id": team_id, "category_id": c} for c in category_ids])


async def list_teams(session: AsyncSession, actor: Actor, unit_id: int | None) -> list[TeamOut]:
    """Teams of units in the caller's subtree (or of ``unit_id`` and everything under it)."""
    async with transaction(session):
        path = await listing_scope(session, actor, unit_id)
        teams = await session.scalars(
            select(Team)
            .join(OrgUnit, OrgUnit.id == Team.unit_id)
            .where(subtree(OrgUnit.path, path))
            .order_by(OrgUnit.path, Team.id)
        )
        return await _present_teams(session, list(teams))


async def get_team(session: AsyncSession, actor: Actor, team_id: int) -> TeamOut:
    async with transaction(session):
        team = await _team_in_scope(session, actor, team_id)
        return (await _present_teams(session, [team]))[0]


async def create_team(session: AsyncSession, actor: Actor, body: TeamCreate) -> TeamOut:
    """组建服务队 at an active unit of the caller's subtree; the leader (队长) becomes its first member."""
    async with transaction(session):
        unit = await referenced_unit(session, actor, body.unit_id, "unit_id")
        category_ids = await _checked_category_ids(session, body.category_ids)
        leader_id = body.leader_volunteer_id
        if leader_id is not None:
            await _check_volunteers_in_scope(session, actor, [leader_id], "leader_volunteer_id")
        team = Team(unit_id=unit.id, name=body.name, leader_volunteer_id=leader_id)
        session.add(team)
        await session.flush()
        await _replace_categories(session, team.id, category_ids)
        if leader_id is not None:
            session.add(TeamMember(team_id=team.id, volunteer_id=leader_id))
            await session.flush()
        return (await _present_teams(session, [team]))[0]


async def update_team(session: AsyncSession, actor: Actor, team_id: int, body: TeamUpdate) -> TeamOut:
    """Rename, 停用/启用, change the leader (made a member if not yet), or replace the categories served."""
    changes = body.model_dump(exclude_unset=True)
    async with transaction(session):
        team = await _team_in_scope(session, actor, team_id, lock=True)
        if "category_ids" in changes:
            await _replace_categories(session, team.id, await _checked_category_ids(session, changes["category_ids"]))
        leader_id = changes.get("leader_volunteer_id")
        if leader_id is not None and leader_id not in await _member_ids(session, team.id):
            await _check_volunteers_in_scope(session, actor, [leader_id], "leader_volunteer_id")
            session.add(TeamMember(team_id=team.id, volunteer_id=leader_id))
        for name in ("name", "leader_volunteer_id", "is_active"):
            if name in changes:
                setattr(team, name, changes[name])
        await session.flush()
        return (await _present_teams(session, [team]))[0]


async def replace_members(session: AsyncSession, actor: Actor, team_id: int, body: TeamMembersIn) -> TeamOut:
    """设置队员: the list replaces the members. Newcomers must be volunteers of the caller's subtree;
    members already in the team may stay even if another admin brought them in from elsewhere."""
    wanted = set(body.volunteer_ids)
    async with transaction(session):
        team = await _team_in_scope(session, actor, team_id, lock=True)
        if team.leader_volunteer_id is not None and team.leader_volunteer_id not in wanted:
            raise InvalidInput(
                "队长必须是队员, 请先更换或取消队长",
                field="volunteer_ids",
                leader_volunteer_id=team.leader_volunteer_id,
            )
        current = await _member_ids(session, team.id)
        newcomers = sorted(wanted - current)
        await _check_volunteers_in_scope(session, actor, newcomers, "volunteer_ids")
        await session.execute(
            delete(TeamMember).where(TeamMember.team_id == team.id, TeamMember.volunteer_id.not_in(wanted))
        )
        session.add_all(TeamMember(team_id=team.id, volunteer_id=v) for v in newcomers)
        await session.flush()
        return (await _present_teams(session, [team]))[0]


# --- volunteers (志愿者) ---------------------------------------------------------------------------


def _present_volunteer(volunteer: Volunteer, username: str | None) -> VolunteerOut:
    return VolunteerOut(
        id=volunteer.id,
        user_id=volunteer.user_id,
        username=username,
        real_name=volunteer.real_name,
        phone=volunteer.phone,
        skills=list(volunteer.skills),
        home_unit_id=volunteer.home_unit_id,
        status=cast(VolunteerStatus, volunteer.status),  # the CHECK constraint keeps it in the Literal
        max_open_orders=volunteer.max_open_orders,
        created_at=volunteer.created_at,
    )


async def _volunteer_in_scope(
    session: AsyncSession, actor: Actor, volunteer_id: int, *, lock: bool = False
) -> tuple[Volunteer, User]:
    query = (
        select(Volunteer, User)
        .join(User, User.id == Volunteer.user_id)
        .join(OrgUnit, OrgUnit.id == Volunteer.home_unit_id)
        .where(Volunteer.id == volunteer_id, subtree(OrgUnit.path, jurisdiction(actor)))
    )
    if lock:
        query = query.with_for_update(of=[Volunteer, User])
    row = (await session.execute(query)).one_or_none()
    if row is None:
        raise NotFound("志愿者不存在")
    return row[0], row[1]


async def list_volunteers(
    session: AsyncSession,
    actor: Actor,
    *,
    unit_id: int | None,
    status: VolunteerStatus | None,
    cursor: str | None,
    limit: int,
) -> Page[VolunteerOut]:
    """Volunteers whose home unit lies in the caller's subtree (or ``unit_id``'s), newest first."""
    async with transaction(session):
        path = await listing_scope(session, actor, unit_id)
        query = select(Volunteer).join(OrgUnit, OrgUnit.id == Volunteer.home_unit_id).where(subtree(OrgUnit.path, path))
        if status is not None:
            query = query.where(Volunteer.status == status)
        rows = list(await session.scalars(keyset(query, Volunteer.created_at, Volunteer.id, cursor, limit)))
        page, next_cursor = page_of(rows, limit)
        user_ids = [v.user_id for v in page]
        usernames = dict((await session.execute(select(User.id, User.username).where(User.id.in_(user_ids)))).all())
        await record_volunteer_phone_reads(session, actor, page, "GET /admin/volunteers")
    return Page[VolunteerOut](
        items=[_present_volunteer(v, usernames.get(v.user_id)) for v in page], next_cursor=next_cursor
    )


async def get_volunteer(session: AsyncSession, actor: Actor, volunteer_id: int) -> VolunteerOut:
    async with transaction(session):
        volunteer, user = await _volunteer_in_scope(session, actor, volunteer_id)
        await record_volunteer_phone_reads(session, actor, [volunteer], "GET /admin/volunteers/{id}")
        return _present_volunteer(volunteer, user.username)


async def create_volunteer(session: AsyncSession, actor: Actor, body: VolunteerCreate) -> VolunteerOut:
    """志愿者注册 by an admin: the login (role volunteer) and the profile, in one transaction."""
    password_hash = await hash_password(body.password)
    async with transaction(session):
        unit = await referenced_unit(session, actor, body.home_unit_id, "home_unit_id")
        await _ensure_username_free(session, body.username)
        user = User(
            username=body.username,
            password_hash=password_hash,
            role=Role.VOLUNTEER.value,
            unit_id=unit.id,
            display_name=body.real_name,
            phone=body.phone,
        )
        session.add(user)
        await flush_unique(session, f"用户名 {body.username} 已被使用", field="username")
        volunteer = Volunteer(
            user_id=user.id,
            real_name=body.real_name,
            phone=body.phone,
            skills=body.skills,
            home_unit_id=unit.id,
            max_open_orders=body.max_open_orders,
            status="active",
        )
        session.add(volunteer)
        await flush_unique(session, "该手机号已登记为志愿者", field="phone")
        return _present_volunteer(volunteer, user.username)


async def update_volunteer(
    session: AsyncSession, actor: Actor, volunteer_id: int, body: VolunteerUpdate
) -> VolunteerOut:
    """Edit a profile. ``status=suspended`` stops new orders but keeps the login (history stays visible);
    a new ``home_unit_id`` must be in the caller's subtree; a password reset voids the old tokens."""
    changes = body.model_dump(exclude_unset=True)
    password = changes.pop("password", None)
    password_hash = await hash_password(password) if password is not None else None
    async with transaction(session):
        volunteer, user = await _volunteer_in_scope(session, actor, volunteer_id, lock=True)
        if "home_unit_id" in changes and changes["home_unit_id"] != volunteer.home_unit_id:
            unit = await referenced_unit(session, actor, changes["home_unit_id"], "home_unit_id")
            user.unit_id = unit.id  # the login mirrors the profile's home unit
        for name, value in changes.items():
            setattr(volunteer, name, value)
        if "real_name" in changes:
            user.display_name = volunteer.real_name
        if "phone" in changes:
            user.phone = volunteer.phone
        if password_hash is not None:
            user.password_hash = password_hash
            user.token_version += 1
        await flush_unique(session, "该手机号已登记为志愿者", field="phone")
        await record_volunteer_phone_reads(session, actor, [volunteer], "PATCH /admin/volunteers/{id}")
        return _present_volunteer(volunteer, user.username)


# --- admins (管理员) -------------------------------------------------------------------------------


async def _admin_in_scope(session: AsyncSession, actor: Actor, user_id: int, *, lock: bool = False) -> User:
    query = (
        select(User)
        .join(OrgUnit, OrgUnit.id == User.unit_id)
        .where(User.id == user_id, User.role == Role.ADMIN.value, subtree(OrgUnit.path, jurisdiction(actor)))
    )
    if lock:
        query = query.with_for_update(of=User)
    user = (await session.scalars(query)).one_or_none()
    if user is None:
        raise NotFound("管理员不存在")
    return user


async def list_admins(session: AsyncSession, actor: Actor) -> list[AdminOut]:
    """Admins of units in the caller's subtree (its own unit's included), unit by unit."""
    async with transaction(session):
        admins = await session.scalars(
            select(User)
            .join(OrgUnit, OrgUnit.id == User.unit_id)
            .where(User.role == Role.ADMIN.value, subtree(OrgUnit.path, jurisdiction(actor)))
            .order_by(OrgUnit.path, User.id)
        )
        return [AdminOut.model_validate(a) for a in admins]


async def get_admin(session: AsyncSession, actor: Actor, user_id: int) -> AdminOut:
    async with transaction(session):
        return AdminOut.model_validate(await _admin_in_scope(session, actor, user_id))


async def create_admin(session: AsyncSession, actor: Actor, body: AdminCreate) -> AdminOut:
    """新增管理员 bound to an active unit of the caller's subtree (that unit is its jurisdiction)."""
    password_hash = await hash_password(body.password)
    async with transaction(session):
        unit = await referenced_unit(session, actor, body.unit_id, "unit_id")
        await _ensure_username_free(session, body.username)
        admin = User(
            username=body.username,
            password_hash=password_hash,
            role=Role.ADMIN.value,
            unit_id=unit.id,
            display_name=body.display_name or body.username,
        )
        session.add(admin)
        await flush_unique(session, f"用户名 {body.username} 已被使用", field="username")
        return AdminOut.model_validate(admin)


async def update_admin(session: AsyncSession, actor: Actor, user_id: int, body: AdminUpdate) -> AdminOut:
    """Rename, reset the password or 停用/启用 an admin. A new password or disabling bumps
    ``token_version``, so every token issued before stops working at once. Nobody disables itself."""
    changes = body.model_dump(exclude_unset=True)
    password = changes.pop("password", None)
    if changes.get("is_active") is False and user_id == actor.user_id:
        raise Forbidden("不能停用自己的账号")
    password_hash = await hash_password(password) if password is not None else None
    async with transaction(session):
        admin = await _admin_in_scope(session, actor, user_id, lock=True)
        bump = password_hash is not None or (admin.is_active and changes.get("is_active") is False)
        for name, value in changes.items():
            setattr(admin, name, value)
        if password_hash is not None:
            admin.password_hash = password_hash
        if bump:
            admin.token_version += 1
        await session.flush()
        return AdminOut.model_validate(admin)
