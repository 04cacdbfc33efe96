"""导入志愿者: a roster of volunteers with their skills and teams, found again by phone.

A row names the volunteer (姓名, 手机号), the home unit by its code, skills, the teams to join (by name,
among the active teams of the caller's subtree) and optionally a username for the login. A phone
already registered updates that volunteer (in the caller's subtree only); a new phone creates the login
(role volunteer, no password: an admin sets one, or the volunteer signs in another way) and the profile.
Skills are replaced by the file's; teams listed are joined, none are left.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.crypto import lookup_hash
from app.domain import Role
from app.models import OrgUnit, Team, TeamMember, User, Volunteer
from app.services.directory_units import jurisdiction
from app.services.importing import (
    Outcome,
    RowChecks,
    UnitRef,
    by_keys,
    check_unit_ref,
    split_list,
    units_by_code,
)
from app.services.scope import subtree
from app.services.tabular import Column, Row, Table

COLUMNS: Final = (
    Column("real_name", "姓名", True, "志愿者真实姓名, 不超过 64 字", "张三"),
    Column(
        "phone",
        "手机号",
        True,
        "11 位手机号 (或带区号的固定电话); 系统按手机号识别同一志愿者, 再次导入即更新",
        "13812345678",
    ),
    Column("unit", "所属单位编码", True, "志愿者所属单位的编码 (须在本单位管辖范围内)", "zhan-xingfuli"),
    Column("skills", "技能", False, "多个技能用顿号、逗号或空格分隔, 每个不超过 32 字; 导入后以本列为准", "讲解、急救"),
    Column(
        "teams", "服务队", False, "要加入的服务队名称, 多个用顿号分隔; 须为管辖范围内已建立的服务队", "幸福里宣讲队"
    ),
    Column(
        "username", "用户名", False, "登录用户名 (可选); 新建志愿者时设置, 已有用户名的不能通过导入修改", "zhangsan"
    ),
)
MAX_SKILLS: Final = 20
USERNAME: Final = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")  # as app.schemas.directory.Username


@dataclass(slots=True)
class _Existing:
    id: int
    user_id: int
    real_name: str
    home_unit_id: int
    skills: list[str]
    path: str
    username: str | None


@dataclass(slots=True)
class _Writes:
    new_users: list[dict[str, Any]] = field(default_factory=list)
    new_profiles: list[dict[str, Any]] = field(default_factory=list)
    new_teams: list[list[int]] = field(default_factory=list)
    profile_updates: list[dict[str, Any]] = field(default_factory=list)
    user_updates: list[dict[str, Any]] = field(default_factory=list)
    memberships: list[dict[str, int]] = field(default_factory=list)


async def _teams_by_name(session: AsyncSession, actor: Actor, names: set[str]) -> dict[str, list[int]]:
    if not names:
        return {}
    rows = await session.execute(
        select(Team.name, Team.id)
        .join(OrgUnit, OrgUnit.id == Team.unit_id)
        .where(Team.name.in_(names), Team.is_active.is_(True), subtree(OrgUnit.path, jurisdiction(actor)))
    )
    found: dict[str, list[int]] = defaultdict(list)
    for name, team_id in rows:
        found[name].append(team_id)
    return found


async def _existing(session: AsyncSession, hashes: list[bytes]) -> dict[bytes, _Existing]:
    if not hashes:
        return {}
    rows = await session.execute(
        select(
            Volunteer.phone_hash,
            Volunteer.id,
            Volunteer.user_id,
            Volunteer.real_name,
            Volunteer.home_unit_id,
            Volunteer.skills,
            OrgUnit.path,
            User.username,
        )
        .join(OrgUnit, OrgUnit.id == Volunteer.home_unit_id)
        .join(User, User.id == Volunteer.user_id)
        .where(Volunteer.phone_hash.in_(hashes))
    )
    return {row.phone_hash: _Existing(*row[1:]) for row in rows if row.phone_hash is not None}


async def plan(session: AsyncSession, actor: Actor, table: Table) -> tuple[Outcome, Callable[[], Awaitable[None]]]:
    """Check every row; the writer creates and updates them in a handful of batched statements."""
    checks = RowChecks(table, COLUMNS)
    rows = table.rows
    phones: dict[int, str] = {}
    for row in rows:
        checks.required(row, "real_name", "phone", "unit")
        checks.length(row, "real_name", 64)
        username = row.values.get("username", "")
        if username and not USERNAME.match(username):
            checks.add(row, "username", "用户名须为 2-64 位字母、数字或 _ . @ -")
        phone = checks.phone(row)
        if phone is not None:
            phones[row.number] = phone
        skills = split_list(row.values.get("skills", ""))
        if len(skills) > MAX_SKILLS or any(len(s) > 32 for s in skills):
            checks.add(row, "skills", f"最多 {MAX_SKILLS} 项技能, 每项不超过 32 字")
    hashes = {number: lookup_hash(phone) or b"" for number, phone in phones.items()}
    _unique_hash(checks, rows, hashes)  # the same number twice, however written
    checks.unique(rows, "username")

    units = await units_by_code(session, {r.values["unit"] for r in rows if r.values.get("unit")})
    team_names = {name for r in rows for name in split_list(r.values.get("teams", ""))}
    teams = await _teams_by_name(session, actor, team_names)
    existing = await _existing(session, list(set(hashes.values())))
    usernames = {r.values["username"] for r in rows if r.values.get("username")}
    taken: dict[str, int] = {}
    if usernames:
        found_users = await session.execute(select(User.username, User.id).where(User.username.in_(usernames)))
        taken = {name: user_id for name, user_id in found_users if name is not None}
    members: set[tuple[int, int]] = set()
    if existing:
        member_rows = await session.execute(
            select(TeamMember.team_id, TeamMember.volunteer_id).where(
                TeamMember.volunteer_id.in_([e.id for e in existing.values()])
            )
        )
        members = {(t, v) for t, v in member_rows}

    outcome = Outcome(rows=len(rows))
    writes = _Writes()
    for row in rows:
        unit = check_unit_ref(checks, row, "unit", units, actor)
        team_ids = _team_ids(checks, row, teams)
        if checks.failed(row) or unit is None:
            continue
        found = existing.get(hashes[row.number])
        if found is None:
            _plan_create(checks, row, unit, phones[row.number], hashes[row.number], team_ids, taken, writes)
            if not checks.failed(row):
                outcome.created += 1
        elif _plan_update(checks, row, unit, found, team_ids, taken, members, writes, actor):
            outcome.updated += 1
        elif not checks.failed(row):
            outcome.unchanged += 1
    outcome.errors = checks.errors

    async def write() -> None:
        await _write(session, writes)

    return outcome, write


def _unique_hash(checks: RowChecks, rows: list[Row], hashes: dict[int, bytes]) -> None:
    first: dict[bytes, int] = {}
    for row in rows:
        digest = hashes.get(row.number)
        if digest is None:
            continue
        seen = first.setdefault(digest, row.number)
        if seen != row.number and not checks.failed(row):
            checks.add(row, "phone", f"与第 {seen} 行手机号重复")


def _team_ids(checks: RowChecks, row: Row, teams: dict[str, list[int]]) -> list[int]:
    ids: list[int] = []
    for name in split_list(row.values.get("teams", "")):
        found = teams.get(name, [])
        if not found:
            checks.add(row, "teams", f"服务队「{name}」不存在、已停用或不在管辖范围内")
        elif len(found) > 1:
            checks.add(row, "teams", f"管辖范围内有 {len(found)} 个名为「{name}」的服务队, 无法确定")
        else:
            ids.append(found[0])
    return ids


def _plan_create(
    checks: RowChecks,
    row: Row,
    unit: UnitRef,
    phone: str,
    digest: bytes,
    team_ids: list[int],
    taken: dict[str, int],
    writes: _Writes,
) -> None:
    username = row.values.get("username") or None
    if username is not None and username in taken:
        checks.add(row, "username", f"用户名「{username}」已被使用")
        return
    name = row.values["real_name"]
    writes.new_users.append(
        {
            "username": username,
            "role": Role.VOLUNTEER.value,
            "unit_id": unit.id,
            "display_name": name,
            "phone": phone,
            "phone_hash": digest,
        }
    )
    writes.new_profiles.append(
        {
            "real_name": name,
            "phone": phone,
            "phone_hash": digest,
            "skills": split_list(row.values.get("skills", "")),
            "home_unit_id": unit.id,
        }
    )
    writes.new_teams.append(team_ids)


def _plan_update(
    checks: RowChecks,
    row: Row,
    unit: UnitRef,
    found: _Existing,
    team_ids: list[int],
    taken: dict[str, int],
    members: set[tuple[int, int]],
    writes: _Writes,
    actor: Actor,
) -> bool:
    """Queue the changes a row makes to a volunteer already registered; True if there are any."""
    if not found.path.startswith(jurisdiction(actor)):
        checks.add(row, "phone", "该手机号已登记为管辖范围外的志愿者, 请联系其所属单位")
        return False
    username = row.values.get("username") or None
    set_username = False
    if username is not None and username != found.username:
        if found.username is not None:
            checks.add(row, "username", f"该志愿者已有用户名「{found.username}」, 不能通过导入修改")
            return False
        if username in taken:
            checks.add(row, "username", f"用户名「{username}」已被使用")
            return False
        set_username = True
    profile: dict[str, Any] = {}
    if row.values["real_name"] != found.real_name:
        profile["real_name"] = row.values["real_name"]
    if unit.id != found.home_unit_id:
        profile["home_unit_id"] = unit.id
    if "skills" in row.values:
        skills = split_list(row.values["skills"])
        if skills != list(found.skills):
            profile["skills"] = skills
    joins = [{"team_id": t, "volunteer_id": found.id} for t in team_ids if (t, found.id) not in members]
    if profile:
        writes.profile_updates.append({"id": found.id, **profile})
    if profile or set_username:
        user: dict[str, Any] = {"id": found.user_id, "display_name": row.values["real_name"], "unit_id": unit.id}
        if set_username:
            user["username"] = username
        writes.user_updates.append(user)
    writes.memberships.extend(joins)
    return bool(profile or set_username or joins)


async def _write(session: AsyncSession, writes: _Writes) -> None:
    if writes.new_users:
        user_ids = (
            await session.scalars(insert(User).returning(User.id, sort_by_parameter_order=True), writes.new_users)
        ).all()
        for profile, user_id in zip(writes.new_profiles, user_ids, strict=True):
            profile["user_id"] = user_id
        volunteer_ids = (
            await session.scalars(
                insert(Volunteer).returning(Volunteer.id, sort_by_parameter_order=True), writes.new_profiles
            )
        ).all()
        for team_ids, volunteer_id in zip(writes.new_teams, volunteer_ids, strict=True):
            writes.memberships.extend({"team_id": t, "volunteer_id": volunteer_id} for t in team_ids)
    for group in by_keys(writes.profile_updates):
        await session.execute(update(Volunteer), group)
    for group in by_keys(writes.user_updates):
        await session.execute(update(User), group)
    if writes.memberships:
        await session.execute(pg_insert(TeamMember).on_conflict_do_nothing(), writes.memberships)
