"""导入单位: the organisation tree below the caller (所、站、实践点、基地 …), found again by code.

A row gives the unit's code, name, level, its parent's code and an address. A code already in use
updates that unit's name and address (in the caller's subtree only; level and parent never change
through an import). A new code creates the unit under its parent: a unit of the caller's subtree, or
a unit created by another row of the same file, in any order. Units of one generation are inserted in
one statement, then given their materialized paths in one more.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.domain import UnitLevel
from app.models import OrgUnit
from app.services.directory_units import LEVEL_LABELS, LEVEL_RANK, PATH_MAX_LENGTH, jurisdiction
from app.services.importing import Outcome, RowChecks, UnitRef, by_keys, units_by_code
from app.services.tabular import Column, Row, Table

COLUMNS: Final = (
    Column(
        "code",
        "单位编码",
        True,
        "唯一编码: 字母、数字、点、横线或下划线, 不超过 40 字; 再次导入同一编码即更新名称和地址",
        "zhan-xingfuli",
    ),
    Column("name", "单位名称", True, "不超过 100 字", "幸福里社区新时代文明实践站"),
    Column("level", "层级", True, "省、市、中心、所、站、实践点、基地 之一; 须低于上级单位的层级", "站"),
    Column("parent", "上级单位编码", True, "本单位或其下级单位的编码, 或本文件中另一行的单位编码", "suo-chengguan"),
    Column("address", "地址", False, "不超过 200 字", "城关镇幸福里小区3号楼"),
)
CODE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
LEVELS: Final = {label: level for level, label in LEVEL_LABELS.items()} | {level.value: level for level in UnitLevel}


@dataclass(slots=True)
class _New:
    row: Row
    level: UnitLevel
    parent_code: str
    id: int = 0
    path: str = ""
    depth: int = 0


async def plan(session: AsyncSession, actor: Actor, table: Table) -> tuple[Outcome, Callable[[], Awaitable[None]]]:
    """Check every row; the writer inserts new units generation by generation and updates the others."""
    checks = RowChecks(table, COLUMNS)
    rows = table.rows
    scope = jurisdiction(actor)
    levels: dict[int, UnitLevel] = {}
    for row in rows:
        checks.required(row, "code", "name", "level", "parent")
        code = row.values.get("code", "")
        if code and not CODE.match(code):
            checks.add(row, "code", "只能包含字母、数字、点、横线或下划线, 不超过 40 字")
        checks.length(row, "name", 100)
        checks.length(row, "address", 200)
        label = row.values.get("level", "")
        if label:
            level = LEVELS.get(label)
            if level is None:
                checks.add(row, "level", f"层级「{label}」不正确, 应为 省、市、中心、所、站、实践点、基地 之一")
            else:
                levels[row.number] = level
        if code and code == row.values.get("parent"):
            checks.add(row, "parent", "上级单位不能是自己")
    checks.unique(rows, "code")

    codes = {r.values[k] for r in rows for k in ("code", "parent") if r.values.get(k)}
    existing = await units_by_code(session, codes, lock=True)
    file_codes = {r.values["code"] for r in rows if r.values.get("code")}
    outcome = Outcome(rows=len(rows))
    updates: list[dict[str, Any]] = []
    new: dict[str, _New] = {}
    for row in rows:
        if checks.failed(row):
            continue
        current = existing.get(row.values["code"])
        if current is None:
            new[row.values["code"]] = _New(row, levels[row.number], row.values["parent"])
            continue
        change = _plan_update(checks, row, current, existing.get(row.values["parent"]), levels[row.number], scope)
        if change:
            updates.append({"id": current.id, **change})
            outcome.updated += 1
        elif not checks.failed(row):
            outcome.unchanged += 1
    generations = _place(checks, new, existing, file_codes, scope)
    outcome.created = sum(len(g) for g in generations)
    outcome.errors = checks.errors

    async def write() -> None:
        for group in by_keys(updates):
            await session.execute(update(OrgUnit), group)
        await _insert(session, generations, existing, new)

    return outcome, write


def _plan_update(
    checks: RowChecks, row: Row, current: UnitRef, parent: UnitRef | None, level: UnitLevel, scope: str
) -> dict[str, Any]:
    if not current.path.startswith(scope):
        checks.add(row, "code", f"单位编码「{row.values['code']}」已被管辖范围外的单位使用")
        return {}
    if parent is None or parent.id != current.parent_id:
        checks.add(row, "parent", "不能通过导入调整已有单位的上级单位")
        return {}
    if level.value != current.level:
        checks.add(row, "level", f"已有单位的层级为「{LEVEL_LABELS[UnitLevel(current.level)]}」, 不能通过导入修改")
        return {}
    change: dict[str, Any] = {}
    if row.values["name"] != current.name:
        change["name"] = row.values["name"]
    if "address" in row.values and (row.values["address"] or None) != current.address:
        change["address"] = row.values["address"] or None
    return change


def _place(
    checks: RowChecks, new: dict[str, _New], existing: dict[str, UnitRef], file_codes: set[str], scope: str
) -> list[list[_New]]:
    """New units in generations: each one's parent is an existing unit or in an earlier generation."""
    depth_of: dict[str, tuple[UnitLevel, int]] = {}
    for code, unit in new.items():
        parent = existing.get(unit.parent_code)
        if parent is not None:
            if not parent.path.startswith(scope):
                checks.add(unit.row, "parent", f"上级单位编码「{unit.parent_code}」不存在或不在管辖范围内")
            elif not parent.is_active:
                checks.add(unit.row, "parent", f"上级单位「{parent.name}」已停用")
            elif _level_ok(checks, unit, UnitLevel(parent.level)):
                depth_of[code] = (unit.level, parent.depth + 1)
        elif unit.parent_code not in new:
            if unit.parent_code in file_codes:
                checks.add(unit.row, "parent", f"上级单位「{unit.parent_code}」所在行有错误")
            else:
                checks.add(unit.row, "parent", f"上级单位编码「{unit.parent_code}」不存在或不在管辖范围内")
    generations: list[list[_New]] = [[new[c] for c in depth_of]]
    pending = {c: u for c, u in new.items() if c not in depth_of and not checks.failed(u.row)}
    while pending:
        ready = [c for c, u in pending.items() if u.parent_code in depth_of]
        if not ready:
            for unit in pending.values():
                if checks.failed(new[unit.parent_code].row):
                    checks.add(unit.row, "parent", f"上级单位「{unit.parent_code}」所在行有错误")
                else:
                    checks.add(unit.row, "parent", "上级单位编码循环引用, 无法确定层级")
            break
        generation = []
        for code in ready:
            unit = pending.pop(code)
            parent_level, parent_depth = depth_of[unit.parent_code]
            if _level_ok(checks, unit, parent_level):
                depth_of[code] = (unit.level, parent_depth + 1)
                generation.append(unit)
        generations.append(generation)
    return [kept for g in generations if (kept := [u for u in g if not checks.failed(u.row)])]


def _level_ok(checks: RowChecks, unit: _New, parent_level: UnitLevel) -> bool:
    if LEVEL_RANK[unit.level] <= LEVEL_RANK[parent_level]:
        checks.add(unit.row, "level", f"{LEVEL_LABELS[parent_level]}下不能设立{LEVEL_LABELS[unit.level]}")
        return False
    return True


async def _insert(
    session: AsyncSession, generations: list[list[_New]], existing: dict[str, UnitRef], new: dict[str, _New]
) -> None:
    def parent_of(unit: _New) -> tuple[int, str, int]:
        known = existing.get(unit.parent_code)
        if known is not None:
            return known.id, known.path, known.depth
        parent = new[unit.parent_code]
        return parent.id, parent.path, parent.depth

    for generation in generations:
        values = []
        for unit in generation:
            parent_id, parent_path, parent_depth = parent_of(unit)
            unit.depth = parent_depth + 1
            values.append(
                {
                    "parent_id": parent_id,
                    "level": unit.level.value,
                    "name": unit.row.values["name"],
                    "code": unit.row.values["code"],
                    "address": unit.row.values.get("address") or None,
                    "depth": unit.depth,
                    # Unique stand-in until the id is known (as in directory_units.create_unit).
                    "path": f"{parent_path}~{uuid.uuid4().hex}",
                }
            )
        ids = (await session.scalars(insert(OrgUnit).returning(OrgUnit.id, sort_by_parameter_order=True), values)).all()
        paths = []
        for unit, unit_id in zip(generation, ids, strict=True):
            unit.id = unit_id
            unit.path = f"{parent_of(unit)[1]}{unit_id}."
            # Levels strictly descend (at most 7 of them), so a path stays far below its column's size.
            assert len(unit.path) <= PATH_MAX_LENGTH
            paths.append({"id": unit_id, "path": unit.path})
        await session.execute(update(OrgUnit), paths)
