"""Roster imports: dry run, all-or-nothing commit, idempotent re-upload, scope, concurrency, templates."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.crypto import lookup_hash
from app.models import OrgUnit, TeamMember, User, Volunteer
from tests.sheets import (
    RESIDENT_HEADER,
    UNIT_HEADER,
    VOLUNTEER_HEADER,
    counts,
    csv_bytes,
    read_xlsx,
    upload,
    volunteer_by_phone,
    volunteer_rows,
    xlsx,
)
from tests.world import World

Sessions = async_sessionmaker[AsyncSession]


async def test_volunteers_dry_run_commit_and_idempotent_re_upload(world: World, sessionmaker: Sessions) -> None:
    rows: list[list[Any]] = [
        ["王芳", "13811112222", "zhan11", "讲解、急救", "测试team11", "wangfang"],
        ["李强", "+86 138-1111-3333", "zhan12", "摄影", "", ""],
        ["赵敏", 13811114444, "zhan11", "", "", ""],  # a phone Excel stored as a number
    ]
    data = xlsx([VOLUNTEER_HEADER, *rows])
    before = await counts(sessionmaker)
    admin = world.h("center_admin")

    dry = await upload(world.client, admin, "volunteers", data, dry_run=True)
    assert dry.status_code == 200, dry.text
    assert dry.json() | {"errors": []} == {
        "error_count": 0,
        "kind": "volunteers",
        "dry_run": True,
        "rows": 3,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "errors": [],
    }
    assert await counts(sessionmaker) == before  # a dry run writes nothing

    done = await upload(world.client, admin, "volunteers", data)
    assert done.status_code == 200, done.text
    assert (done.json()["created"], done.json()["dry_run"]) == (3, False)
    after = await counts(sessionmaker)
    assert after["volunteers"] == before["volunteers"] + 3
    assert after["users"] == before["users"] + 3
    assert after["team_members"] == before["team_members"] + 1

    async with sessionmaker() as session:
        wang = (
            await session.scalars(select(Volunteer).where(Volunteer.phone_hash == lookup_hash("13811112222")))
        ).one()
        assert (wang.real_name, wang.skills, wang.home_unit_id) == ("王芳", ["讲解", "急救"], world.units["zhan11"])
        user = await session.get(User, wang.user_id)
        assert user is not None and (user.username, user.role, user.unit_id) == (
            "wangfang",
            "volunteer",
            wang.home_unit_id,
        )
        assert await session.get(TeamMember, (world.teams["team11"], wang.id)) is not None
        li = await volunteer_by_phone(session, "13811113333")
        assert li.phone == "13811113333"  # stored in one form, found by any
        zhao = (
            await session.scalars(select(Volunteer).where(Volunteer.phone_hash == lookup_hash("13811114444")))
        ).one()
        assert zhao.phone == "13811114444"

    again = await upload(world.client, admin, "volunteers", data)
    assert again.status_code == 200, again.text
    assert (again.json()["created"], again.json()["updated"], again.json()["unchanged"]) == (0, 0, 3)
    assert await counts(sessionmaker) == after

    rows[1] = ["李强强", "13811113333", "zhan12", "摄影、剪辑", "", ""]
    changed = await upload(world.client, admin, "volunteers", csv_bytes([VOLUNTEER_HEADER, *rows]), "roster.csv")
    assert changed.status_code == 200, changed.text
    assert (changed.json()["created"], changed.json()["updated"], changed.json()["unchanged"]) == (0, 1, 2)
    assert await counts(sessionmaker) == after
    async with sessionmaker() as session:
        li = await volunteer_by_phone(session, "13811113333")
        assert (li.real_name, li.skills) == ("李强强", ["摄影", "剪辑"])
        li_user = await session.get(User, li.user_id)
        assert li_user is not None and li_user.display_name == "李强强"


async def test_an_existing_volunteer_is_found_by_phone(world: World, sessionmaker: Sessions) -> None:
    """The world's volunteers were created through the ORM: their lookup hash is there, so an import
    updates them instead of creating a second profile."""
    data = xlsx([VOLUNTEER_HEADER, ["新名字", "13700000000", "zhan11", "讲解", "测试team11", ""]])
    before = await counts(sessionmaker)
    response = await upload(world.client, world.h("zhan11_admin"), "volunteers", data)
    assert response.status_code == 200, response.text
    assert (response.json()["created"], response.json()["updated"]) == (0, 1)
    assert await counts(sessionmaker) == before
    async with sessionmaker() as session:
        volunteer = await session.get(Volunteer, world.volunteers["v11a"])
        assert volunteer is not None and volunteer.real_name == "新名字"


async def test_a_commit_with_row_errors_writes_nothing(world: World, sessionmaker: Sessions) -> None:
    rows: list[list[Any]] = [
        ["好人", "13822220001", "zhan11", "", "", ""],  # fine, but its file has errors: not written
        ["", "13822220002", "zhan11", "", "", ""],  # name missing
        ["坏号码", "1234", "zhan11", "", "", ""],  # bad phone
        ["无单位", "13822220004", "nowhere", "", "", ""],  # unknown unit
        ["无队", "13822220005", "zhan11", "", "不存在的队", ""],  # unknown team
        ["重复", "138 2222 0001", "zhan11", "", "", ""],  # the first row's phone again
        ["重名", "13822220007", "zhan11", "", "", "v11a"],  # a username taken
        ["怪名", "13822220008", "zhan11", "", "", "有 空格"],  # not a username
    ]
    data = xlsx([VOLUNTEER_HEADER, *rows])
    before = await counts(sessionmaker)
    admin = world.h("center_admin")

    dry = await upload(world.client, admin, "volunteers", data, dry_run=True)
    assert dry.status_code == 200
    expected = [
        (3, "姓名"),
        (4, "手机号"),
        (5, "所属单位编码"),
        (6, "服务队"),
        (7, "手机号"),
        (8, "用户名"),
        (9, "用户名"),
    ]
    assert [(e["row"], e["column"]) for e in dry.json()["errors"]] == expected
    assert all(e["message"] for e in dry.json()["errors"])

    committed = await upload(world.client, admin, "volunteers", data)
    assert committed.status_code == 422
    error = committed.json()["error"]
    assert error["code"] == "invalid_input" and "未写入" in error["message"]
    assert [(e["row"], e["column"]) for e in error["details"]["errors"]] == expected
    assert await counts(sessionmaker) == before


async def test_residents_upsert_by_phone(world: World, sessionmaker: Sessions) -> None:
    data = csv_bytes([RESIDENT_HEADER, ["张大爷", "13933330001", "zhan11"], ["刘奶奶", "13933330002", "zhan12"]])
    before = await counts(sessionmaker)
    admin = world.h("suo1_admin")
    first = await upload(world.client, admin, "residents", data, "residents.csv")
    assert first.status_code == 200, first.text
    assert first.json()["created"] == 2
    again = await upload(world.client, admin, "residents", data, "residents.csv")
    assert (again.json()["created"], again.json()["unchanged"]) == (0, 2)
    twice = csv_bytes([RESIDENT_HEADER, ["甲", "13933330009", "zhan11"], ["乙", "139-3333-0009", "zhan11"]])
    refused = await upload(world.client, admin, "residents", twice, "r.csv")
    assert refused.status_code == 422
    assert [(e["row"], e["column"]) for e in refused.json()["error"]["details"]["errors"]] == [(3, "手机号")]
    moved = csv_bytes([RESIDENT_HEADER, ["张大爷", "13933330001", "zhan12"]])
    assert (await upload(world.client, admin, "residents", moved, "r.csv")).json()["updated"] == 1
    assert (await counts(sessionmaker))["users"] == before["users"] + 2
    async with sessionmaker() as session:
        zhang = (
            await session.scalars(
                select(User).where(User.role == "resident", User.phone_hash == lookup_hash("13933330001"))
            )
        ).one()
        assert (zhang.display_name, zhang.unit_id, zhang.password_hash) == ("张大爷", world.units["zhan12"], None)


async def test_units_in_any_order_get_their_paths(world: World, sessionmaker: Sessions) -> None:
    rows = [
        ["point-a", "实践点甲", "实践点", "zhan-new", "某路1号"],  # its parent comes two rows later
        ["zhan-other", "新站乙", "站", "suo1", ""],
        ["zhan-new", "新站甲", "站", "suo1", ""],
        ["zhan11", "测试zhan11改名", "站", "suo1", "新地址"],  # an existing unit: renamed
    ]
    before = await counts(sessionmaker)
    admin = world.h("suo1_admin")
    response = await upload(world.client, admin, "units", xlsx([UNIT_HEADER, *rows]))
    assert response.status_code == 200, response.text
    assert (response.json()["created"], response.json()["updated"]) == (3, 1)
    assert (await counts(sessionmaker))["org_units"] == before["org_units"] + 3
    async with sessionmaker() as session:
        by_code = {u.code: u for u in await session.scalars(select(OrgUnit))}
    new, point, suo1 = by_code["zhan-new"], by_code["point-a"], by_code["suo1"]
    assert new.path == f"{suo1.path}{new.id}." and new.depth == suo1.depth + 1
    assert point.path == f"{new.path}{point.id}." and point.parent_id == new.id and point.level == "point"
    assert (by_code["zhan11"].name, by_code["zhan11"].address) == ("测试zhan11改名", "新地址")
    listed = await world.client.get("/admin/units", headers=admin)
    assert {"zhan-new", "point-a", "zhan-other"} <= {u["code"] for u in listed.json()}
    again = await upload(world.client, admin, "units", xlsx([UNIT_HEADER, *rows]))
    assert (again.json()["created"], again.json()["unchanged"]) == (0, 4)


async def test_unit_rows_that_cannot_be_placed(world: World, sessionmaker: Sessions) -> None:
    rows = [
        ["loop-a", "甲", "站", "loop-b", ""],
        ["loop-b", "乙", "站", "loop-a", ""],
        ["big", "中心", "中心", "suo1", ""],  # a 中心 under a 所
        ["far", "远方", "站", "suo2", ""],  # a parent outside the caller's subtree
        ["suo2", "抢编码", "站", "suo1", ""],  # a code used outside the subtree
        ["zhan12", "测试zhan12", "站", "zhan11", ""],  # an existing unit moved
        ["bad code!", "坏编码", "站", "suo1", ""],
        ["lvl", "层级错", "村", "suo1", ""],
        ["fine", "好单位", "站", "suo1", ""],
        ["fine", "好单位again", "站", "suo1", ""],  # a code twice in the file
    ]
    before = await counts(sessionmaker)
    response = await upload(world.client, world.h("suo1_admin"), "units", xlsx([UNIT_HEADER, *rows]))
    assert response.status_code == 422
    errors = {(e["row"], e["column"]) for e in response.json()["error"]["details"]["errors"]}
    assert errors == {
        (2, "上级单位编码"),
        (3, "上级单位编码"),
        (4, "层级"),
        (5, "上级单位编码"),
        (6, "单位编码"),
        (7, "上级单位编码"),
        (8, "单位编码"),
        (9, "层级"),
        (11, "单位编码"),
    }
    assert await counts(sessionmaker) == before


async def test_only_admins_import_and_only_into_their_subtree(world: World, sessionmaker: Sessions) -> None:
    data = xlsx([VOLUNTEER_HEADER, *volunteer_rows(2, unit="zhan12")])
    before = await counts(sessionmaker)
    for who in ("v11a", "r1"):
        response = await upload(world.client, world.h(who), "volunteers", data)
        assert response.status_code == 403, who
    assert (await world.client.post("/admin/imports/volunteers", files={"file": ("a.xlsx", data)})).status_code == 401
    assert (await world.client.get("/admin/imports/units/template.xlsx", headers=world.h("r1"))).status_code == 403

    # A 站 admin names another 站: row errors, nothing written.
    other = await upload(world.client, world.h("zhan11_admin"), "volunteers", data)
    assert other.status_code == 422
    assert {e["column"] for e in other.json()["error"]["details"]["errors"]} == {"所属单位编码"}
    # A 站 admin cannot take over another 站's volunteer by naming its phone with their own unit.
    v12_phone = "13700000002"
    grab = xlsx([VOLUNTEER_HEADER, ["抢人", v12_phone, "zhan11", "", "", ""]])
    taken = await upload(world.client, world.h("zhan11_admin"), "volunteers", grab)
    assert taken.status_code == 422
    assert taken.json()["error"]["details"]["errors"][0]["column"] == "手机号"
    # Nor another 站's residents, nor its teams.
    resident = csv_bytes([RESIDENT_HEADER, ["抢人", "13900000002", "zhan11"]])  # r3 of zhan21 (tests/world.py)
    assert (await upload(world.client, world.h("zhan11_admin"), "residents", resident, "r.csv")).status_code == 422
    team = xlsx([VOLUNTEER_HEADER, ["队员", "13822229999", "zhan11", "", "测试team21", ""]])
    assert (await upload(world.client, world.h("zhan11_admin"), "volunteers", team)).status_code == 422
    assert await counts(sessionmaker) == before
    async with sessionmaker() as session:
        volunteer = await session.get(Volunteer, world.volunteers["v12"])
        assert volunteer is not None and volunteer.home_unit_id == world.units["zhan12"]

    # The 所 above both may.
    assert (await upload(world.client, world.h("suo1_admin"), "volunteers", data)).status_code == 200


async def test_two_identical_uploads_at_once_create_one_set(app: FastAPI, world: World, sessionmaker: Sessions) -> None:
    data = xlsx([VOLUNTEER_HEADER, *volunteer_rows(50, teams="测试team11")])
    residents = csv_bytes([RESIDENT_HEADER, *[[f"群众{i}", f"1350000{i:04d}", "zhan11"] for i in range(50)]])
    before = await counts(sessionmaker)
    admins = [world.h("center_admin"), world.h("suo1_admin"), world.h("zhan11_admin")]
    answers = await asyncio.gather(
        *(upload(world.client, h, "volunteers", data) for h in admins),
        *(upload(world.client, h, "residents", residents, "r.csv") for h in admins),
    )
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    assert sorted(a.json()["created"] for a in answers[:3]) == [0, 0, 50]
    assert sorted(a.json()["created"] for a in answers[3:]) == [0, 0, 50]
    after = await counts(sessionmaker)
    assert after["volunteers"] == before["volunteers"] + 50
    assert after["users"] == before["users"] + 100
    assert after["team_members"] == before["team_members"] + 50


async def test_one_profile_per_phone_is_a_database_rule(world: World, sessionmaker: Sessions) -> None:
    """Beyond the imports' turn-taking, the unique index keeps a second profile out; the admin API
    answers 409 for a phone already registered."""
    body = {
        "username": "dup",
        "password": "secret-pass-123",
        "real_name": "重复",
        "phone": "13700000000",
        "home_unit_id": world.units["zhan11"],
    }
    response = await world.client.post("/admin/volunteers", json=body, headers=world.h("center_admin"))
    assert response.status_code == 409, response.text
    async with sessionmaker() as session:
        assert (
            await session.scalar(select(func.count()).select_from(Volunteer).where(Volunteer.real_name == "重复")) == 0
        )


async def test_templates(world: World) -> None:
    admin = world.h("zhan11_admin")
    for kind, first in (("units", "单位编码*"), ("volunteers", "姓名*"), ("residents", "姓名*")):
        response = await world.client.get(f"/admin/imports/{kind}/template.xlsx", headers=admin)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        assert f"sidan-import-{kind}.xlsx" in response.headers["content-disposition"]
        sheets = read_xlsx(response.content)
        data, notes = list(sheets.values())
        assert data[0][0] == first and len(data) == 2 and all(isinstance(v, str) for v in data[1])
        assert notes[0] == ["列名", "是否必填", "说明", "示例"] and any("公式" in str(r) for r in notes)
        as_csv = await world.client.get(f"/admin/imports/{kind}/template.csv", headers=admin)
        assert as_csv.headers["content-type"].startswith("text/csv")
        assert as_csv.content.startswith(b"\xef\xbb\xbf" + first.encode())
        # The template reads back: its header is the import's (the example unit code is not real).
        back = await upload(world.client, admin, kind, response.content, f"{kind}.xlsx", dry_run=True)
        assert back.status_code == 200, back.text
        assert back.json()["rows"] == 1
