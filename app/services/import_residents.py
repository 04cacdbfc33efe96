"""导入群众: residents a 站 already serves (often elderly, ordered for by proxy), found again by phone.

A row gives the name, the phone and the home unit's code. A phone already registered as a resident
updates that resident (in the caller's subtree only); a new one creates a resident account with no
password and no WeChat binding yet, which staff and grid volunteers can place orders for (代点单).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.crypto import lookup_hash
from app.domain import Role
from app.models import OrgUnit, User
from app.services.directory_units import jurisdiction
from app.services.importing import Outcome, RowChecks, by_keys, check_unit_ref, units_by_code
from app.services.tabular import Column, Table

COLUMNS: Final = (
    Column("name", "姓名", True, "群众姓名, 不超过 64 字", "李大爷"),
    Column(
        "phone",
        "手机号",
        True,
        "11 位手机号 (或带区号的固定电话); 系统按手机号识别同一群众, 再次导入即更新",
        "13912345678",
    ),
    Column("unit", "所属单位编码", True, "群众所在站点 (或其他单位) 的编码, 须在本单位管辖范围内", "zhan-xingfuli"),
)


async def plan(session: AsyncSession, actor: Actor, table: Table) -> tuple[Outcome, Callable[[], Awaitable[None]]]:
    """Check every row; the writer inserts the new residents and updates the others, batched."""
    checks = RowChecks(table, COLUMNS)
    rows = table.rows
    phones: dict[int, str] = {}
    for row in rows:
        checks.required(row, "name", "phone", "unit")
        checks.length(row, "name", 64)
        phone = checks.phone(row)
        if phone is not None:
            phones[row.number] = phone
    hashes = {number: lookup_hash(phone) or b"" for number, phone in phones.items()}
    first: dict[bytes, int] = {}
    for row in rows:
        if row.number in hashes:
            seen = first.setdefault(hashes[row.number], row.number)
            if seen != row.number:
                checks.add(row, "phone", f"与第 {seen} 行手机号重复")

    units = await units_by_code(session, {r.values["unit"] for r in rows if r.values.get("unit")})
    existing: dict[bytes, tuple[int, str, int | None, str]] = {}
    if hashes:
        found = await session.execute(
            select(User.phone_hash, User.id, User.display_name, User.unit_id, OrgUnit.path)
            .outerjoin(OrgUnit, OrgUnit.id == User.unit_id)
            .where(User.role == Role.RESIDENT.value, User.phone_hash.in_(set(hashes.values())))
        )
        existing = {
            digest: (user_id, name, unit_id, path or "")
            for digest, user_id, name, unit_id, path in found
            if digest is not None
        }

    outcome = Outcome(rows=len(rows))
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for row in rows:
        unit = check_unit_ref(checks, row, "unit", units, actor)
        if checks.failed(row) or unit is None:
            continue
        digest = hashes[row.number]
        name = row.values["name"]
        current = existing.get(digest)
        if current is None:
            inserts.append(
                {
                    "role": Role.RESIDENT.value,
                    "unit_id": unit.id,
                    "display_name": name,
                    "phone": phones[row.number],
                    "phone_hash": digest,
                }
            )
            outcome.created += 1
            continue
        user_id, current_name, current_unit, path = current
        if not path.startswith(jurisdiction(actor)):
            checks.add(row, "phone", "该手机号已登记为管辖范围外的群众, 请联系其所属单位")
            continue
        change: dict[str, Any] = {}
        if name != current_name:
            change["display_name"] = name
        if unit.id != current_unit:
            change["unit_id"] = unit.id
        if change:
            updates.append({"id": user_id, **change})
            outcome.updated += 1
        else:
            outcome.unchanged += 1
    outcome.errors = checks.errors

    async def write() -> None:
        if inserts:
            await session.execute(insert(User), inserts)
        for group in by_keys(updates):
            await session.execute(update(User), group)

    return outcome, write
