"""导入 (shared part): what every roster import does around its own rows.

An import reads the whole file, checks every row against the file itself (required cells, formats,
a key twice) and against the database (units and teams named must be in the caller's subtree, a
record found by its natural key must be too), and only then writes: all rows in one transaction, in
batched statements, or none. A dry run (试导入) stops before writing and answers what a commit would do.

Imports of one kind take turns (a transaction-level advisory lock, taken before the existing records
are read), so two identical uploads at once give one set of rows: the second finds what the first
wrote and updates it. The unique indexes (unit code, volunteer phone, resident phone, username) are the
guarantee beyond that: a conflicting write by another path answers 409 and writes nothing.
"""

from __future__ import annotations

import re
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.crypto import phone_digits
from app.db import transaction
from app.errors import Conflict, InvalidInput
from app.models import OrgUnit
from app.services.directory_units import UNIQUE_VIOLATION, jurisdiction
from app.services.tabular import Column, Row, RowError, Table

MOBILE: Final = re.compile(r"^1[3-9]\d{9}$")
LANDLINE: Final = re.compile(r"^0\d{2,3}-?\d{7,8}$")
MAX_REPORTED_ERRORS: Final = 1000  # a broken 20,000-row file is not answered with 60,000 messages
LIST_SEPARATORS: Final = re.compile(r"[、,，;；/|\s]+")


class ImportKind(StrEnum):
    UNITS = "units"
    VOLUNTEERS = "volunteers"
    RESIDENTS = "residents"


KIND_TITLES: Final = {ImportKind.UNITS: "单位", ImportKind.VOLUNTEERS: "志愿者", ImportKind.RESIDENTS: "群众"}


@dataclass(slots=True)
class Outcome:
    """What an import did, or (dry run) would do."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)


class RowChecks:
    """Collects row errors while a kind's rows are checked."""

    def __init__(self, table: Table, columns: Sequence[Column]) -> None:
        self.errors = list(table.errors)
        self.cells = {(e.row, e.column) for e in self.errors}
        self.titles = {c.key: c.title for c in columns}

    def add(self, row: Row | int, key: str, message: str) -> None:
        """Record a problem; one per cell (the first found, e.g. a formula before "cannot be empty")."""
        number = row if isinstance(row, int) else row.number
        column = self.titles.get(key, key)
        if (number, column) not in self.cells:
            self.cells.add((number, column))
            self.errors.append(RowError(number, column, message))

    def failed(self, row: Row) -> bool:
        return any(e.row == row.number for e in self.errors)

    def required(self, row: Row, *keys: str) -> bool:
        ok = True
        for key in keys:
            if not row.values.get(key):
                self.add(row, key, "不能为空")
                ok = False
        return ok

    def length(self, row: Row, key: str, most: int) -> None:
        if len(row.values.get(key, "")) > most:
            self.add(row, key, f"不能超过 {most} 个字")

    def phone(self, row: Row, key: str = "phone") -> str | None:
        """The phone in a canonical form (mobile: 11 digits), or None with a row error."""
        raw = row.values.get(key, "")
        if not raw:
            return None
        cleaned = re.sub(r"[\s\u3000]", "", raw)
        digits = phone_digits(cleaned)
        if MOBILE.match(digits):
            return digits
        if LANDLINE.match(cleaned.removeprefix("+86")):
            return cleaned.removeprefix("+86")
        self.add(row, key, f"手机号「{raw[:20]}」格式不正确 (应为 11 位手机号或带区号的固定电话)")
        return None

    def unique(self, rows: Sequence[Row], key: str, normalize: Callable[[str], str] = str) -> None:
        """Each non-empty value of ``key`` at most once in the file."""
        first: dict[str, int] = {}
        for row in rows:
            value = row.values.get(key, "")
            if not value:
                continue
            seen = first.setdefault(normalize(value), row.number)
            if seen != row.number:
                self.add(row, key, f"与第 {seen} 行重复")


def split_list(value: str) -> list[str]:
    """``讲解、摄影, 急救`` → ``["讲解", "摄影", "急救"]`` (distinct, in order)."""
    return list(dict.fromkeys(v for v in LIST_SEPARATORS.split(value) if v))


@dataclass(frozen=True, slots=True)
class UnitRef:
    id: int
    parent_id: int | None
    path: str
    level: str
    depth: int
    name: str
    is_active: bool
    address: str | None


async def units_by_code(session: AsyncSession, codes: set[str], *, lock: bool = False) -> dict[str, UnitRef]:
    """The units with these codes (one query), whatever their scope: callers check it. ``lock``: FOR
    SHARE, so none is disabled or recoded before the import commits."""
    if not codes:
        return {}
    query = select(
        OrgUnit.code,
        OrgUnit.id,
        OrgUnit.parent_id,
        OrgUnit.path,
        OrgUnit.level,
        OrgUnit.depth,
        OrgUnit.name,
        OrgUnit.is_active,
        OrgUnit.address,
    ).where(OrgUnit.code.in_(codes))
    rows = await session.execute(query.with_for_update(read=True) if lock else query)
    return {row.code: UnitRef(*row[1:]) for row in rows}


def check_unit_ref(checks: RowChecks, row: Row, key: str, units: dict[str, UnitRef], actor: Actor) -> UnitRef | None:
    """The active unit of the caller's subtree a row names by code, or None with a row error."""
    code = row.values.get(key, "")
    if not code:
        return None
    unit = units.get(code)
    if unit is None or not unit.path.startswith(jurisdiction(actor)):
        checks.add(row, key, f"单位编码「{code}」不存在或不在管辖范围内")
        return None
    if not unit.is_active:
        checks.add(row, key, f"单位「{unit.name}」已停用")
        return None
    return unit


def by_keys(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by the columns they set: one executemany per group."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[frozenset(row)].append(row)
    return list(groups.values())


def lock_key(kind: ImportKind) -> int:
    """A stable 63-bit advisory-lock key per kind (the same in every instance)."""
    return zlib.crc32(f"sidan.import.{kind.value}".encode()) | (0x5D << 40)


def rejected(kind: ImportKind, outcome: Outcome) -> InvalidInput:
    """The 422 of a commit with row errors: nothing was written."""
    errors = sorted(outcome.errors, key=lambda e: (e.row, e.column))
    return InvalidInput(
        f"{KIND_TITLES[kind]}导入有 {len(errors)} 处错误, 未写入任何数据",
        errors=[{"row": e.row, "column": e.column, "message": e.message} for e in errors[:MAX_REPORTED_ERRORS]],
        error_count=len(errors),
        rows=outcome.rows,
        created=outcome.created,
        updated=outcome.updated,
        unchanged=outcome.unchanged,
    )


Plan = Callable[[AsyncSession, Actor, Table], Awaitable[tuple[Outcome, Callable[[], Awaitable[None]]]]]


async def run_import(
    session: AsyncSession, actor: Actor, kind: ImportKind, table: Table, plan: Plan, *, dry_run: bool
) -> Outcome:
    """Check every row (``plan``), then write them all (its writer) unless it is a dry run or a row failed."""
    jurisdiction(actor)
    async with transaction(session):
        if not dry_run:
            await session.execute(select(func.pg_advisory_xact_lock(lock_key(kind))))
        outcome, write = await plan(session, actor, table)
        outcome.errors.sort(key=lambda e: (e.row, e.column))
        if outcome.errors:
            if dry_run:
                return outcome
            raise rejected(kind, outcome)
        if dry_run:
            return outcome
        try:
            await write()
        except IntegrityError as exc:
            if getattr(exc.orig, "sqlstate", None) == UNIQUE_VIOLATION:
                raise Conflict("导入期间数据已被其他操作修改 (编码、手机号或用户名冲突), 请重新上传") from exc
            raise
    return outcome
