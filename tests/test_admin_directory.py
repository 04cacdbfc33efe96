"""管理后台 · 基础数据: units, menu, teams, volunteers and admins, each within the admin's subtree."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.world import World

PASSWORD = "s3cret-pass"


async def call(
    world: World, method: str, path: str, username: str | None, body: Any = None, **params: Any
) -> httpx.Response:
    headers = world.h(username) if username else {}
    return await world.client.request(method, path, json=body, headers=headers, params=params or None)


async def ok(world: World, method: str, path: str, username: str, body: Any = None, **params: Any) -> Any:
    response = await call(world, method, path, username, body, **params)
    assert response.status_code in (200, 201), f"{method} {path} by {username}: {response.text}"
    return response.json()


async def login(world: World, username: str, password: str = PASSWORD) -> httpx.Response:
    return await world.client.post("/auth/login", json={"username": username, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ids(rows: list[dict[str, Any]]) -> list[int]:
    return [row["id"] for row in rows]


# --- roles ----------------------------------------------------------------------------------------

READ_ENDPOINTS = [
    "/admin/units",
    "/admin/menu/categories",
    "/admin/menu/items",
    "/admin/teams",
    "/admin/volunteers",
    "/admin/admins",
]


@pytest.mark.parametrize("path", READ_ENDPOINTS)
async def test_only_admins_may_read(world: World, path: str) -> None:
    assert (await call(world, "GET", path, "center_admin")).status_code == 200
    for username in ("r1", "v11a"):
        response = await call(world, "GET", path, username)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"
    assert (await call(world, "GET", path, None)).status_code == 401


async def test_non_admins_cannot_write(world: World) -> None:
    before = await ok(world, "GET", "/admin/units", "center_admin")
    body = {"parent_id": world.units["zhan11"], "level": "point", "name": "偷建的点", "code": "sneaky"}
    assert (await call(world, "POST", "/admin/units", "v11a", body)).status_code == 403
    assert (await call(world, "POST", "/admin/units", "r1", body)).status_code == 403
    assert (await call(world, "POST", "/admin/units", None, body)).status_code == 401
    vid = world.volunteers["v11b"]
    patch = await call(world, "PATCH", f"/admin/volunteers/{vid}", "v11a", {"status": "suspended"})
    assert patch.status_code == 403
    assert await ok(world, "GET", "/admin/units", "center_admin") == before
    assert (await ok(world, "GET", f"/admin/volunteers/{vid}", "center_admin"))["status"] == "active"


# --- units ----------------------------------------------------------------------------------------


async def test_units_list_is_the_subtree_parents_first(world: World) -> None:
    u = world.units
    assert ids(await ok(world, "GET", "/admin/units", "zhan11_admin")) == [u["zhan11"]]
    assert ids(await ok(world, "GET", "/admin/units", "suo1_admin")) == [u["suo1"], u["zhan11"], u["zhan12"]]
    everything = await ok(world, "GET", "/admin/units", "center_admin")
    assert sorted(ids(everything)) == sorted(u.values())
    assert everything[0]["id"] == u["center"]


async def test_create_unit_places_it_under_the_parent(world: World) -> None:
    body = {"parent_id": world.units["zhan11"], "level": "point", "name": " 幸福村实践点 ", "code": "p-111"}
    unit = await ok(world, "POST", "/admin/units", "suo1_admin", body)
    assert unit["parent_id"] == world.units["zhan11"]
    assert unit["depth"] == 3
    assert unit["level"] == "point"
    assert unit["name"] == "幸福村实践点"
    assert unit["is_active"] is True
    # The materialized path puts it in zhan11's subtree and nowhere else.
    assert unit["id"] in ids(await ok(world, "GET", "/admin/units", "zhan11_admin"))
    assert unit["id"] not in ids(await ok(world, "GET", "/admin/units", "zhan12_admin"))
    assert (await call(world, "GET", f"/admin/units/{unit['id']}", "zhan12_admin")).status_code == 404
    assert (await ok(world, "GET", f"/admin/units/{unit['id']}", "zhan11_admin"))["code"] == "p-111"
    # Its own admin can then be given the new unit and manage exactly it.
    admin = {"username": "p111_admin", "password": PASSWORD, "unit_id": unit["id"]}
    await ok(world, "POST", "/admin/admins", "zhan11_admin", admin)
    token = (await login(world, "p111_admin")).json()["access_token"]
    seen = (await world.client.get("/admin/units", headers=bearer(token))).json()
    assert ids(seen) == [unit["id"]]


async def test_create_unit_rejects_parents_outside_scope_and_bad_levels(world: World) -> None:
    before = await ok(world, "GET", "/admin/units", "center_admin")
    cases = [
        ("zhan11_admin", {"parent_id": world.units["zhan21"], "level": "point"}),
        ("zhan11_admin", {"parent_id": world.units["suo1"], "level": "station"}),
        ("zhan11_admin", {"parent_id": 999_999, "level": "point"}),
        ("center_admin", {"parent_id": world.units["zhan11"], "level": "station"}),
        ("center_admin", {"parent_id": world.units["suo1"], "level": "center"}),
    ]
    for username, partial in cases:
        response = await call(world, "POST", "/admin/units", username, {**partial, "name": "新单位", "code": "x1"})
        assert response.status_code == 422, (partial, response.text)
        assert response.json()["error"]["code"] == "invalid_input"
    assert await ok(world, "GET", "/admin/units", "center_admin") == before


async def test_create_unit_duplicate_code_is_409(world: World) -> None:
    body = {"parent_id": world.units["suo1"], "level": "station", "name": "重复", "code": "zhan12"}
    response = await call(world, "POST", "/admin/units", "suo1_admin", body)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert len(await ok(world, "GET", "/admin/units", "suo1_admin")) == 3


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": "含\x00控制符"},
        {"name": "长" * 101},
        {"name": "   "},
        {"code": "有 空格"},
        {"code": "c" * 41},
        {"level": "galaxy"},
        {"parent_id": 2**63},
        {"parent_id": "abc"},
        {"address": "地" * 201},
        {"name": None},
    ],
)
async def test_create_unit_invalid_body_is_422(world: World, overrides: dict[str, Any]) -> None:
    body = {"parent_id": world.units["suo1"], "level": "station", "name": "新站", "code": "new-zhan"}
    body.update(overrides)
    response = await call(world, "POST", "/admin/units", "center_admin", body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert len(await ok(world, "GET", "/admin/units", "center_admin")) == len(world.units)


async def test_update_unit_fields_and_scope(world: World) -> None:
    zhan11 = world.units["zhan11"]
    updated = await ok(world, "PATCH", f"/admin/units/{zhan11}", "suo1_admin", {"name": "幸福村站", "address": "村口"})
    assert (updated["name"], updated["address"]) == ("幸福村站", "村口")
    assert (await ok(world, "GET", f"/admin/units/{zhan11}", "zhan11_admin"))["name"] == "幸福村站"
    cleared = await ok(world, "PATCH", f"/admin/units/{zhan11}", "zhan11_admin", {"address": None})
    assert cleared["address"] is None
    assert cleared["name"] == "幸福村站"
    # Siblings, cousins and units above the caller do not exist for it.
    for target in ("zhan21", "zhan12", "suo1", "center"):
        response = await call(world, "PATCH", f"/admin/units/{world.units[target]}", "zhan11_admin", {"name": "x"})
        assert response.status_code == 404, target
    assert (await ok(world, "GET", f"/admin/units/{world.units['suo1']}", "center_admin"))["name"] == "测试suo1"


async def test_update_unit_rejects_bad_patches(world: World) -> None:
    zhan12 = world.units["zhan12"]
    path = f"/admin/units/{zhan12}"
    assert (await call(world, "PATCH", path, "suo1_admin", {"code": "zhan11"})).status_code == 409
    assert (await call(world, "PATCH", path, "suo1_admin", {"parent_id": world.units["suo2"]})).status_code == 422
    assert (await call(world, "PATCH", path, "suo1_admin", {"name": None})).status_code == 422
    assert (await call(world, "PATCH", path, "suo1_admin", {"name": "x\x00"})).status_code == 422
    unit = await ok(world, "GET", path, "center_admin")
    assert (unit["code"], unit["parent_id"], unit["name"]) == ("zhan12", world.units["suo1"], "测试zhan12")


async def test_deactivating_units(world: World) -> None:
    u = world.units
    # Nobody switches off their own unit, and a unit with active children stays on.
    assert (
        await call(world, "PATCH", f"/admin/units/{u['zhan11']}", "zhan11_admin", {"is_active": False})
    ).status_code == 403
    assert (
        await call(world, "PATCH", f"/admin/units/{u['suo1']}", "suo1_admin", {"is_active": False})
    ).status_code == 403
    assert (
        await call(world, "PATCH", f"/admin/units/{u['suo1']}", "center_admin", {"is_active": False})
    ).status_code == 409
    assert (await ok(world, "GET", f"/admin/units/{u['suo1']}", "center_admin"))["is_active"] is True

    off = await ok(world, "PATCH", f"/admin/units/{u['zhan12']}", "suo1_admin", {"is_active": False})
    assert off["is_active"] is False
    public = (await world.client.get("/units")).json()
    assert u["zhan12"] not in ids(public)
    # Still listed for admins, but no longer a valid target for new objects.
    assert u["zhan12"] in ids(await ok(world, "GET", "/admin/units", "suo1_admin"))
    item = {"unit_id": u["zhan12"], "category_id": world.categories["health"], "name": "义诊"}
    assert (await call(world, "POST", "/admin/menu/items", "suo1_admin", item)).status_code == 422
    on = await ok(world, "PATCH", f"/admin/units/{u['zhan12']}", "suo1_admin", {"is_active": True})
    assert on["is_active"] is True


# --- menu categories ------------------------------------------------------------------------------


async def test_categories_listed_for_every_admin(world: World) -> None:
    rows = await ok(world, "GET", "/admin/menu/categories", "zhan21_admin")
    assert [c["code"] for c in rows] == ["lecture", "health"]


async def test_categories_managed_by_the_top_unit_only(world: World) -> None:
    body = {"name": "文明交通", "code": "traffic", "sort_order": 5}
    for username in ("suo1_admin", "zhan11_admin"):
        response = await call(world, "POST", "/admin/menu/categories", username, body)
        assert response.status_code == 403
    created = await ok(world, "POST", "/admin/menu/categories", "center_admin", body)
    assert (created["name"], created["code"], created["sort_order"]) == ("文明交通", "traffic", 5)
    cid = created["id"]
    assert (
        await call(world, "PATCH", f"/admin/menu/categories/{cid}", "suo1_admin", {"name": "交通"})
    ).status_code == 403
    renamed = await ok(world, "PATCH", f"/admin/menu/categories/{cid}", "center_admin", {"name": "文明出行"})
    assert renamed["name"] == "文明出行"
    assert (await ok(world, "GET", f"/admin/menu/categories/{cid}", "zhan11_admin"))["name"] == "文明出行"
    assert (
        await call(world, "PATCH", "/admin/menu/categories/999999", "center_admin", {"name": "x"})
    ).status_code == 404


async def test_category_duplicates_are_409(world: World) -> None:
    for body in ({"name": "理论宣讲", "code": "other"}, {"name": "别的", "code": "health"}):
        response = await call(world, "POST", "/admin/menu/categories", "center_admin", body)
        assert response.status_code == 409, body
    lecture = world.categories["lecture"]
    response = await call(world, "PATCH", f"/admin/menu/categories/{lecture}", "center_admin", {"code": "health"})
    assert response.status_code == 409
    # Renaming to its own current name is no conflict.
    same = await call(world, "PATCH", f"/admin/menu/categories/{lecture}", "center_admin", {"name": "理论宣讲"})
    assert same.status_code == 200
    assert len(await ok(world, "GET", "/admin/menu/categories", "center_admin")) == 2
    bad = await call(
        world,
        "POST",
        "/admin/menu/categories",
        "center_admin",
        {"name": "x", "code": "x", "sort_order": 10**30},
    )
    assert bad.status_code == 422


# --- menu items -----------------------------------------------------------------------------------


async def test_items_list_is_scoped(world: World) -> None:
    i = world.items
    assert ids(await ok(world, "GET", "/admin/menu/items", "zhan11_admin")) == [i["zhan11_health"]]
    assert sorted(ids(await ok(world, "GET", "/admin/menu/items", "suo1_admin"))) == sorted(
        [i["suo1_auto"], i["zhan11_health"]]
    )
    assert len(await ok(world, "GET", "/admin/menu/items", "center_admin")) == 4
    only = await ok(world, "GET", "/admin/menu/items", "center_admin", unit_id=world.units["zhan21"])
    assert ids(only) == [i["zhan21_only"]]
    response = await call(world, "GET", "/admin/menu/items", "zhan11_admin", unit_id=world.units["zhan21"])
    assert response.status_code == 404


async def test_create_item_shows_on_the_units_menu(world: World) -> None:
    body = {
        "unit_id": world.units["zhan11"],
        "category_id": world.categories["lecture"],
        "name": "家风故事会",
        "description": "每月一次",
        "auto_approve": True,
    }
    item = await ok(world, "POST", "/admin/menu/items", "zhan11_admin", body)
    assert (item["name"], item["auto_approve"], item["is_active"]) == ("家风故事会", True, True)
    menu = (await world.client.get("/menu", params={"unit_id": world.units["zhan11"]})).json()
    assert item["id"] in [it["id"] for s in menu["sections"] for it in s["items"]]
    other = (await world.client.get("/menu", params={"unit_id": world.units["zhan12"]})).json()
    assert item["id"] not in [it["id"] for s in other["sections"] for it in s["items"]]


async def test_create_item_rejects_bad_references(world: World) -> None:
    good = {"unit_id": world.units["zhan11"], "category_id": world.categories["lecture"], "name": "讲座"}
    for overrides in (
        {"unit_id": world.units["zhan21"]},
        {"unit_id": world.units["suo1"]},
        {"category_id": 999_999},
        {"name": ""},
        {"description": "长" * 1001},
    ):
        response = await call(world, "POST", "/admin/menu/items", "zhan11_admin", {**good, **overrides})
        assert response.status_code == 422, overrides
    assert len(await ok(world, "GET", "/admin/menu/items", "center_admin")) == 4


async def test_update_item(world: World) -> None:
    item_id = world.items["zhan11_health"]
    response = await call(
        world, "PATCH", f"/admin/menu/items/{world.items['zhan21_only']}", "zhan11_admin", {"name": "x"}
    )
    assert response.status_code == 404
    bad = await call(world, "PATCH", f"/admin/menu/items/{item_id}", "zhan11_admin", {"category_id": 999_999})
    assert bad.status_code == 422
    patch = {"is_active": False, "category_id": world.categories["lecture"], "name": "上门测血压"}
    updated = await ok(world, "PATCH", f"/admin/menu/items/{item_id}", "suo1_admin", patch)
    assert (updated["is_active"], updated["category_id"], updated["name"]) == (
        False,
        world.categories["lecture"],
        "上门测血压",
    )
    menu = (await world.client.get("/menu", params={"unit_id": world.units["zhan11"]})).json()
    assert item_id not in [it["id"] for s in menu["sections"] for it in s["items"]]
    assert (await ok(world, "GET", f"/admin/menu/items/{item_id}", "zhan11_admin"))["is_active"] is False


# --- teams ----------------------------------------------------------------------------------------


async def test_teams_list_is_scoped_with_members(world: World) -> None:
    v = world.volunteers
    rows = await ok(world, "GET", "/admin/teams", "zhan11_admin")
    assert ids(rows) == [world.teams["team11"]]
    assert rows[0]["member_ids"] == sorted([v["v11a"], v["v11b"]])
    assert rows[0]["leader_volunteer_id"] == v["v11a"]
    assert sorted(ids(await ok(world, "GET", "/admin/teams", "center_admin"))) == sorted(world.teams.values())
    assert (await call(world, "GET", f"/admin/teams/{world.teams['team21']}", "suo1_admin")).status_code == 404


async def test_create_team_with_leader_and_categories(world: World) -> None:
    v, c = world.volunteers, world.categories
    body = {
        "unit_id": world.units["zhan12"],
        "name": "红马甲服务队",
        "leader_volunteer_id": v["v12"],
        "category_ids": [c["health"], c["lecture"], c["health"]],
    }
    team = await ok(world, "POST", "/admin/teams", "suo1_admin", body)
    assert team["leader_volunteer_id"] == v["v12"]
    assert team["member_ids"] == [v["v12"]]
    assert sorted(team["category_ids"]) == sorted([c["health"], c["lecture"]])
    assert team == await ok(world, "GET", f"/admin/teams/{team['id']}", "zhan12_admin")
    token = world.tokens["v12"]
    me = (await world.client.get("/volunteer/me", headers=bearer(token))).json()
    assert team["id"] in me["team_ids"]


async def test_create_team_rejects_bad_references(world: World) -> None:
    good = {"unit_id": world.units["zhan11"], "name": "新队"}
    for overrides in (
        {"unit_id": world.units["zhan21"]},
        {"leader_volunteer_id": world.volunteers["v21"]},
        {"leader_volunteer_id": world.volunteers["v12"]},
        {"leader_volunteer_id": 999_999},
        {"category_ids": [999_999]},
        {"category_ids": [0]},
        {"name": "队" * 101},
    ):
        response = await call(world, "POST", "/admin/teams", "zhan11_admin", {**good, **overrides})
        assert response.status_code == 422, overrides
    assert len(await ok(world, "GET", "/admin/teams", "center_admin")) == 2


async def test_replace_members(world: World) -> None:
    v = world.volunteers
    team_id = world.teams["team11"]
    path = f"/admin/teams/{team_id}/members"
    team = await ok(world, "PUT", path, "zhan11_admin", {"volunteer_ids": [v["v11a"], v["v11x"], v["v11x"]]})
    assert team["member_ids"] == sorted([v["v11a"], v["v11x"]])
    me = (await world.client.get("/volunteer/me", headers=world.h("v11b"))).json()
    assert team_id not in me["team_ids"]
    # The leader must stay; newcomers must come from the caller's subtree.
    assert (await call(world, "PUT", path, "zhan11_admin", {"volunteer_ids": [v["v11b"]]})).status_code == 422
    for outsider in (v["v12"], v["v21"], 999_999):
        response = await call(world, "PUT", path, "zhan11_admin", {"volunteer_ids": [v["v11a"], outsider]})
        assert response.status_code == 422, outsider
    assert (await ok(world, "GET", f"/admin/teams/{team_id}", "zhan11_admin"))["member_ids"] == team["member_ids"]
    # suo1's admin may bring in a 站12 volunteer; 站11's admin can then keep (but not add) them.
    mixed = await ok(world, "PUT", path, "suo1_admin", {"volunteer_ids": [v["v11a"], v["v12"]]})
    assert mixed["member_ids"] == sorted([v["v11a"], v["v12"]])
    kept = await ok(world, "PUT", path, "zhan11_admin", {"volunteer_ids": [v["v11a"], v["v12"], v["v11b"]]})
    assert kept["member_ids"] == sorted([v["v11a"], v["v12"], v["v11b"]])
    other = f"/admin/teams/{world.teams['team21']}/members"
    assert (await call(world, "PUT", other, "zhan11_admin", {"volunteer_ids": []})).status_code == 404


async def test_update_team(world: World) -> None:
    v, c = world.volunteers, world.categories
    team_id = world.teams["team11"]
    path = f"/admin/teams/{team_id}"
    team = await ok(world, "PATCH", path, "zhan11_admin", {"category_ids": [c["lecture"]], "name": "先锋队"})
    assert (team["category_ids"], team["name"]) == ([c["lecture"]], "先锋队")
    team = await ok(world, "PATCH", path, "zhan11_admin", {"category_ids": [c["health"]]})
    assert team["category_ids"] == [c["health"]]
    # A new leader joins the team.
    team = await ok(world, "PATCH", path, "zhan11_admin", {"leader_volunteer_id": v["v11x"]})
    assert team["leader_volunteer_id"] == v["v11x"]
    assert v["v11x"] in team["member_ids"]
    team = await ok(world, "PATCH", path, "zhan11_admin", {"leader_volunteer_id": None, "is_active": False})
    assert (team["leader_volunteer_id"], team["is_active"]) == (None, False)
    assert (await call(world, "PATCH", path, "zhan11_admin", {"leader_volunteer_id": v["v21"]})).status_code == 422
    assert (await call(world, "PATCH", path, "zhan11_admin", {"category_ids": [999_999]})).status_code == 422
    assert (await call(world, "PATCH", path, "zhan11_admin", {"unit_id": world.units["zhan12"]})).status_code == 422
    assert (await ok(world, "GET", path, "zhan11_admin"))["category_ids"] == [c["health"]]
    other = f"/admin/teams/{world.teams['team21']}"
    assert (await call(world, "PATCH", other, "suo1_admin", {"name": "x"})).status_code == 404


# --- volunteers -----------------------------------------------------------------------------------


async def test_volunteers_list_is_scoped(world: World) -> None:
    v = world.volunteers
    zhan11 = (await ok(world, "GET", "/admin/volunteers", "zhan11_admin"))["items"]
    assert sorted(ids(zhan11)) == sorted([v["v11a"], v["v11b"], v["v11x"]])
    assert zhan11[0]["phone"].isdigit()  # unmasked for admins in scope
    suo1 = (await ok(world, "GET", "/admin/volunteers", "suo1_admin"))["items"]
    assert sorted(ids(suo1)) == sorted([v[n] for n in ("v11a", "v11b", "v11x", "v12", "vsuo1")])
    filtered = await ok(world, "GET", "/admin/volunteers", "suo1_admin", unit_id=world.units["zhan12"])
    assert ids(filtered["items"]) == [v["v12"]]
    suspended = await ok(world, "GET", "/admin/volunteers", "center_admin", status="suspended")
    assert ids(suspended["items"]) == [v["v11x"]]
    assert suspended["items"][0]["username"] == "v11x"
    response = await call(world, "GET", "/admin/volunteers", "zhan11_admin", unit_id=world.units["zhan21"])
    assert response.status_code == 404
    assert (await call(world, "GET", f"/admin/volunteers/{v['v21']}", "suo1_admin")).status_code == 404


async def test_volunteers_pagination(world: World) -> None:
    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = await ok(world, "GET", "/admin/volunteers", "center_admin", **params)
        assert len(page["items"]) <= 2
        seen.extend(ids(page["items"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(world.volunteers.values())
    assert len(seen) == len(set(seen))
    for params in ({"limit": 201}, {"limit": 0}, {"cursor": "not-a-cursor"}, {"status": "retired"}):
        assert (await call(world, "GET", "/admin/volunteers", "center_admin", **params)).status_code == 422


async def test_created_volunteer_can_log_in(world: World) -> None:
    body = {
        "username": "li.lei",
        "password": PASSWORD,
        "real_name": "李雷",
        "phone": "13912345678",
        "home_unit_id": world.units["zhan12"],
        "skills": ["理发", "义诊"],
        "max_open_orders": 5,
    }
    created = await ok(world, "POST", "/admin/volunteers", "suo1_admin", body)
    assert created["username"] == "li.lei"
    assert created["phone"] == "13912345678"
    assert (created["skills"], created["status"], created["max_open_orders"]) == (
        ["理发", "义诊"],
        "active",
        5,
    )
    assert not any("password" in key for key in created)
    response = await login(world, "li.lei")
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert response.json()["user"]["role"] == "volunteer"
    me = (await world.client.get("/volunteer/me", headers=bearer(token))).json()
    assert (me["id"], me["real_name"], me["home_unit_id"]) == (created["id"], "李雷", world.units["zhan12"])
    who = (await world.client.get("/me", headers=bearer(token))).json()
    assert (who["volunteer_id"], who["unit_id"]) == (created["id"], world.units["zhan12"])
    assert created["id"] in ids((await ok(world, "GET", "/admin/volunteers", "zhan12_admin"))["items"])


async def test_create_volunteer_rejects_bad_input(world: World) -> None:
    good = {
        "username": "han.meimei",
        "password": PASSWORD,
        "real_name": "韩梅梅",
        "phone": "13912345678",
        "home_unit_id": world.units["zhan11"],
    }
    duplicate = await call(world, "POST", "/admin/volunteers", "zhan11_admin", {**good, "username": "v11a"})
    assert duplicate.status_code == 409
    for overrides in (
        {"home_unit_id": world.units["zhan21"]},
        {"home_unit_id": world.units["suo1"]},
        {"password": "short"},
        {"phone": "12345"},
        {"real_name": "韩\x00梅梅"},
        {"username": "有 空格"},
        {"username": "x" * 65},
        {"skills": ["t" * 33]},
        {"max_open_orders": 10**20},
    ):
        response = await call(world, "POST", "/admin/volunteers", "zhan11_admin", {**good, **overrides})
        assert response.status_code == 422, (overrides, response.text)
    assert (await login(world, "han.meimei")).status_code == 401
    assert len((await ok(world, "GET", "/admin/volunteers", "center_admin"))["items"]) == len(world.volunteers)


async def test_update_volunteer(world: World) -> None:
    vid = world.volunteers["v11b"]
    path = f"/admin/volunteers/{vid}"
    patch = {"real_name": "王小二", "phone": "0571-88886666", "skills": ["摄影"], "max_open_orders": 1}
    updated = await ok(world, "PATCH", path, "zhan11_admin", patch)
    assert (updated["real_name"], updated["phone"], updated["skills"], updated["max_open_orders"]) == (
        "王小二",
        "0571-88886666",
        ["摄影"],
        1,
    )
    suspended = await ok(world, "PATCH", path, "zhan11_admin", {"status": "suspended"})
    assert suspended["status"] == "suspended"
    # Suspension keeps the login: the volunteer still sees its profile with its old token.
    me = await world.client.get("/volunteer/me", headers=world.h("v11b"))
    assert me.status_code == 200
    assert me.json()["status"] == "suspended"
    assert (await call(world, "PATCH", path, "zhan11_admin", {"status": "retired"})).status_code == 422
    assert (
        await call(world, "PATCH", path, "zhan11_admin", {"home_unit_id": world.units["zhan21"]})
    ).status_code == 422
    assert (await call(world, "PATCH", path, "zhan11_admin", {"real_name": None})).status_code == 422
    assert (await ok(world, "GET", path, "center_admin"))["home_unit_id"] == world.units["zhan11"]
    other = f"/admin/volunteers/{world.volunteers['v21']}"
    assert (await call(world, "PATCH", other, "zhan11_admin", {"status": "suspended"})).status_code == 404


async def test_moving_a_volunteer_moves_its_scope(world: World) -> None:
    vid = world.volunteers["v11a"]
    moved = await ok(world, "PATCH", f"/admin/volunteers/{vid}", "suo1_admin", {"home_unit_id": world.units["zhan12"]})
    assert moved["home_unit_id"] == world.units["zhan12"]
    assert (await call(world, "GET", f"/admin/volunteers/{vid}", "zhan11_admin")).status_code == 404
    assert (await ok(world, "GET", f"/admin/volunteers/{vid}", "zhan12_admin"))["id"] == vid
    who = (await world.client.get("/me", headers=world.h("v11a"))).json()
    assert who["unit_id"] == world.units["zhan12"]


async def test_volunteer_password_reset_voids_old_tokens(world: World) -> None:
    vid = world.volunteers["v12"]
    assert (await world.client.get("/me", headers=world.h("v12"))).status_code == 200
    await ok(world, "PATCH", f"/admin/volunteers/{vid}", "zhan12_admin", {"password": PASSWORD})
    assert (await world.client.get("/me", headers=world.h("v12"))).status_code == 401
    response = await login(world, "v12")
    assert response.status_code == 200
    assert (await world.client.get("/volunteer/me", headers=bearer(response.json()["access_token"]))).status_code == 200


# --- admins ---------------------------------------------------------------------------------------


async def test_admins_list_is_scoped(world: World) -> None:
    rows = await ok(world, "GET", "/admin/admins", "suo1_admin")
    assert [a["username"] for a in rows] == ["suo1_admin", "zhan11_admin", "zhan12_admin"]
    assert all(not any("password" in key or "token" in key for key in row) for row in rows)
    assert [a["username"] for a in await ok(world, "GET", "/admin/admins", "zhan21_admin")] == ["zhan21_admin"]
    assert len(await ok(world, "GET", "/admin/admins", "center_admin")) == 6
    center = world.users["center_admin"]
    assert (await call(world, "GET", f"/admin/admins/{center}", "suo1_admin")).status_code == 404
    # A volunteer's user id is not an admin.
    volunteer_user = world.users["v11a"]
    assert (await call(world, "GET", f"/admin/admins/{volunteer_user}", "center_admin")).status_code == 404


async def test_create_admin_and_log_in(world: World) -> None:
    body = {
        "username": "zhan12_clerk",
        "password": PASSWORD,
        "unit_id": world.units["zhan12"],
        "display_name": "小张",
    }
    admin = await ok(world, "POST", "/admin/admins", "suo1_admin", body)
    assert (admin["username"], admin["unit_id"], admin["display_name"], admin["is_active"]) == (
        "zhan12_clerk",
        world.units["zhan12"],
        "小张",
        True,
    )
    assert not any("password" in key for key in admin)
    response = await login(world, "zhan12_clerk")
    assert response.status_code == 200
    assert response.json()["user"]["role"] == "admin"
    token = response.json()["access_token"]
    units = (await world.client.get("/admin/units", headers=bearer(token))).json()
    assert ids(units) == [world.units["zhan12"]]
    assert (await ok(world, "GET", f"/admin/admins/{admin['id']}", "zhan12_admin"))["username"] == "zhan12_clerk"


async def test_create_admin_rejects_bad_input(world: World) -> None:
    good = {"username": "clerk", "password": PASSWORD, "unit_id": world.units["zhan11"]}
    assert (await call(world, "POST", "/admin/admins", "zhan11_admin", {**good, "username": "r1"})).status_code == 409
    for overrides in (
        {"unit_id": world.units["suo1"]},
        {"unit_id": world.units["zhan21"]},
        {"unit_id": 999_999},
        {"password": "1234567"},
        {"display_name": "x" * 65},
    ):
        response = await call(world, "POST", "/admin/admins", "zhan11_admin", {**good, **overrides})
        assert response.status_code == 422, overrides
    assert (await login(world, "clerk")).status_code == 401
    assert len(await ok(world, "GET", "/admin/admins", "center_admin")) == 6


async def test_admin_password_change_voids_old_tokens(world: World) -> None:
    target = world.users["zhan11_admin"]
    assert (await world.client.get("/me", headers=world.h("zhan11_admin"))).status_code == 200
    updated = await ok(world, "PATCH", f"/admin/admins/{target}", "suo1_admin", {"password": PASSWORD})
    assert not any("password" in key for key in updated)
    assert (await world.client.get("/me", headers=world.h("zhan11_admin"))).status_code == 401
    response = await login(world, "zhan11_admin")
    assert response.status_code == 200
    assert (await world.client.get("/me", headers=bearer(response.json()["access_token"]))).status_code == 200
    # Renaming alone leaves tokens valid.
    fresh = bearer(response.json()["access_token"])
    await ok(world, "PATCH", f"/admin/admins/{target}", "suo1_admin", {"display_name": "站长"})
    assert (await world.client.get("/me", headers=fresh)).status_code == 200


async def test_disabling_an_admin(world: World) -> None:
    target = world.users["zhan12_admin"]
    await ok(world, "PATCH", f"/admin/admins/{target}", "suo1_admin", {"password": PASSWORD})
    token = bearer((await login(world, "zhan12_admin")).json()["access_token"])
    disabled = await ok(world, "PATCH", f"/admin/admins/{target}", "suo1_admin", {"is_active": False})
    assert disabled["is_active"] is False
    assert (await world.client.get("/me", headers=token)).status_code == 401
    assert (await login(world, "zhan12_admin")).status_code == 401
    await ok(world, "PATCH", f"/admin/admins/{target}", "suo1_admin", {"is_active": True})
    assert (await world.client.get("/me", headers=token)).status_code == 401  # old tokens stay void
    assert (await login(world, "zhan12_admin")).status_code == 200


async def test_admin_scope_and_self_disable(world: World) -> None:
    me = world.users["suo1_admin"]
    response = await call(world, "PATCH", f"/admin/admins/{me}", "suo1_admin", {"is_active": False})
    assert response.status_code == 403
    assert (await world.client.get("/me", headers=world.h("suo1_admin"))).status_code == 200
    for target in ("center_admin", "suo2_admin", "zhan21_admin"):
        response = await call(
            world, "PATCH", f"/admin/admins/{world.users[target]}", "suo1_admin", {"is_active": False}
        )
        assert response.status_code == 404, target
        assert (await world.client.get("/me", headers=world.h(target))).status_code == 200
    bad = await call(
        world, "PATCH", f"/admin/admins/{world.users['zhan11_admin']}", "suo1_admin", {"password": "short"}
    )
    assert bad.status_code == 422
    assert (await world.client.get("/me", headers=world.h("zhan11_admin"))).status_code == 200
