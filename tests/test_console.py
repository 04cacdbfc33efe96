"""The staff console (工作台) over HTTP, in process: its session cookie, CSRF, scope, logout and the
rules it shares with the API (same services, same masking and phone-read log)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.console.session import SESSION_COOKIE
from app.domain import Status
from app.models import PiiAccess
from tests.helpers import snapshot
from tests.test_auth import set_password
from tests.world import World

PASSWORD = "correct horse"


@pytest.fixture
async def web(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client of the console: it keeps cookies, follows nothing by itself."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def signed_in(web: httpx.AsyncClient, world: World, username: str) -> httpx.AsyncClient:
    """The console session of ``username``: the cookie holds the same token the API login issues."""
    web.cookies.set(SESSION_COOKIE, world.tokens[username])
    return web


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match[1]


async def login(web: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    page = await web.get("/console/login")
    return await web.post(
        "/console/login",
        data={"csrf_token": csrf_of(page.text), "username": username, "password": password, "next": "/console/"},
    )


async def test_login_sets_an_httponly_strict_cookie_and_lets_the_admin_in(
    web: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await set_password(sessionmaker, "zhan11_admin", PASSWORD)
    response = await login(web, "zhan11_admin")
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console/"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags
    assert "samesite=strict" in flags
    assert "path=/console" in flags
    desk = await web.get("/console/")
    assert desk.status_code == 200
    assert "工作台" in desk.text and "zhan11_admin" in desk.text


async def test_login_refuses_bad_passwords_other_roles_and_a_missing_form_token(
    web: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await set_password(sessionmaker, "zhan11_admin", PASSWORD)
    await set_password(sessionmaker, "v11a", PASSWORD)
    wrong = await login(web, "zhan11_admin", "wrong")
    assert wrong.status_code == 401 and "用户名或密码错误" in wrong.text
    volunteer = await login(web, "v11a")
    assert volunteer.status_code == 403 and "工作人员" in volunteer.text
    no_token = await web.post("/console/login", data={"username": "zhan11_admin", "password": PASSWORD})
    assert no_token.status_code == 403
    assert SESSION_COOKIE not in web.cookies


async def test_login_counts_against_the_apis_throttle(
    web: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Failures in the console and in the API count against one limit (``accounts.login``)."""
    await set_password(sessionmaker, "zhan11_admin", PASSWORD)
    limit = world.settings.login_failures_per_account
    for _ in range(limit - 1):
        assert (await login(web, "zhan11_admin", "wrong")).status_code == 401
    api = await world.client.post("/auth/login", json={"username": "zhan11_admin", "password": "wrong"})
    assert api.status_code == 401
    refused = await login(web, "zhan11_admin", PASSWORD)
    assert refused.status_code == 429
    assert "Retry-After" in refused.headers


async def test_pages_without_a_session_go_to_the_login_page(web: httpx.AsyncClient, world: World) -> None:
    for path in ("/console/", "/console/orders", "/console/stats", "/console/orders/1"):
        response = await web.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/console/login")
    htmx = await web.get("/console/orders", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/console/login")


async def test_a_volunteer_token_in_the_cookie_is_refused(web: httpx.AsyncClient, world: World) -> None:
    response = await signed_in(web, world, "v11a").get("/console/")
    assert response.status_code == 403


async def test_another_stations_order_is_not_found(web: httpx.AsyncClient, world: World, app: FastAPI) -> None:
    theirs = await world.order_in(Status.SUBMITTED, resident="r3", unit="zhan21")
    mine = await world.order_in(Status.SUBMITTED)
    signed_in(web, world, "zhan11_admin")
    page = await web.get(f"/console/orders/{theirs['id']}")
    assert page.status_code == 404
    assert "不存在" in page.text and theirs["code"] not in page.text
    own = await web.get(f"/console/orders/{mine['id']}")
    assert own.status_code == 200 and mine["code"] in own.text
    before = await snapshot(app, theirs["id"])
    post = await web.post(f"/console/orders/{theirs['id']}/actions/approve", data={"csrf_token": csrf_of(own.text)})
    assert post.status_code == 404
    assert await snapshot(app, theirs["id"]) == before
    board = await web.get("/console/orders?status=all")
    assert mine["code"] in board.text and theirs["code"] not in board.text


async def test_a_post_without_its_csrf_token_is_refused_and_changes_nothing(
    web: httpx.AsyncClient, world: World, app: FastAPI
) -> None:
    order = await world.order_in(Status.SUBMITTED)
    path = f"/console/orders/{order['id']}/actions/approve"
    before = await snapshot(app, order["id"])
    signed_in(web, world, "suo1_admin")
    other_session_token = csrf_of((await web.get(f"/console/orders/{order['id']}")).text)
    signed_in(web, world, "zhan11_admin")
    assert (await web.post(path, data={})).status_code == 403
    assert (await web.post(path, data={"csrf_token": "0" * 64})).status_code == 403
    assert (await web.post(path, data={"csrf_token": other_session_token})).status_code == 403
    assert (await web.post(path, headers={"X-CSRF-Token": other_session_token})).status_code == 403
    assert await snapshot(app, order["id"]) == before
    token = csrf_of((await web.get(f"/console/orders/{order['id']}")).text)
    done = await web.post(path, data={"csrf_token": token})
    assert done.status_code == 303
    assert (await snapshot(app, order["id"]))["status"] == Status.APPROVED.value
    htmx = await web.post(
        f"/console/orders/{order['id']}/actions/publish", headers={"X-CSRF-Token": token, "HX-Request": "true"}
    )
    assert htmx.status_code == 303
    assert (await snapshot(app, order["id"]))["status"] == Status.POOLED.value


async def test_actions_go_through_the_state_machine(web: httpx.AsyncClient, world: World, app: FastAPI) -> None:
    """The console offers and the service decides: an action the table refuses is a 409 page."""
    order = await world.order_in(Status.SUBMITTED)
    signed_in(web, world, "zhan11_admin")
    token = csrf_of((await web.get(f"/console/orders/{order['id']}")).text)
    withdraw = await web.post(f"/console/orders/{order['id']}/actions/withdraw", data={"csrf_token": token})
    assert withdraw.status_code == 409 and "操作未完成" in withdraw.text
    no_reason = await web.post(f"/console/orders/{order['id']}/actions/reject", data={"csrf_token": token})
    assert no_reason.status_code == 422
    rejected = await web.post(
        f"/console/orders/{order['id']}/actions/reject", data={"csrf_token": token, "reason": "不在服务范围"}
    )
    assert rejected.status_code == 303
    api = await world.client.get(f"/orders/{order['id']}", headers=world.h("zhan11_admin"))
    assert api.json()["status"] == "rejected"
    events = await world.client.get(f"/orders/{order['id']}/events", headers=world.h("zhan11_admin"))
    assert events.json()[-1]["reason"] == "不在服务范围"


async def test_dispatch_to_the_top_candidate(web: httpx.AsyncClient, world: World) -> None:
    order = await world.order_in(Status.APPROVED)
    signed_in(web, world, "zhan11_admin")
    page = await web.get(f"/console/orders/{order['id']}")
    candidates = await world.client.get(f"/admin/orders/{order['id']}/candidates", headers=world.h("zhan11_admin"))
    top = candidates.json()["volunteers"][0]
    # The first (checked) choice is the API's top candidate, with its score parts on the page.
    first = re.search(r'name="target" value="([^"]+)"[^>]*checked', page.text)
    assert first and first[1] == f"volunteer:{top['id']}"
    assert f"{top['score']:.2f}" in page.text
    done = await web.post(
        f"/console/orders/{order['id']}/actions/dispatch",
        data={"csrf_token": csrf_of(page.text), "target": first[1]},
    )
    assert done.status_code == 303
    api = (await world.client.get(f"/orders/{order['id']}", headers=world.h("zhan11_admin"))).json()
    assert api["status"] == "dispatched" and api["assignee_volunteer_id"] == top["id"]


async def test_logout_voids_the_token_everywhere(web: httpx.AsyncClient, world: World) -> None:
    signed_in(web, world, "zhan11_admin")
    token = world.tokens["zhan11_admin"]
    desk = await web.get("/console/")
    refused = await web.post("/console/logout", data={})
    assert refused.status_code == 403  # logout is a form like any other
    out = await web.post("/console/logout", data={"csrf_token": csrf_of(desk.text)})
    assert out.status_code == 303
    assert any(c.startswith(f"{SESSION_COOKIE}=") and "Max-Age=0" in c for c in out.headers.get_list("set-cookie"))
    # Replaying the old cookie (as a thief who copied it would) no longer works, nor does the token in the API.
    web.cookies.set(SESSION_COOKIE, token)
    again = await web.get("/console/")
    assert again.status_code == 303 and again.headers["location"].startswith("/console/login")
    api = await world.client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 401


async def test_phones_as_in_the_api_and_unmasked_reads_logged(
    web: httpx.AsyncClient, world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    order = await world.order_in(Status.SUBMITTED)

    async def reads() -> int:
        async with sessionmaker() as session:
            query = select(func.count()).select_from(PiiAccess).where(PiiAccess.order_id == order["id"])
            return int(await session.scalar(query) or 0)

    api = (await world.client.get(f"/orders/{order['id']}", headers=world.h("zhan11_admin"))).json()
    assert await reads() == 1
    page = await signed_in(web, world, "zhan11_admin").get(f"/console/orders/{order['id']}")
    assert api["contact_phone"] in page.text
    assert await reads() == 2  # the console's read is logged like the API's
    board = await web.get("/console/orders?status=submitted")
    assert api["contact_phone"] in board.text
    assert await reads() == 3


async def test_every_page_renders_for_an_admin(web: httpx.AsyncClient, world: World) -> None:
    await world.order_in(Status.RATED)
    signed_in(web, world, "center_admin")
    for path in (
        "/console/",
        "/console/orders",
        "/console/orders?status=all&followup=1",
        "/console/people",
        "/console/market",
        "/console/stats",
        "/console/unmet",
        "/console/settings",
    ):
        response = await web.get(path)
        assert response.status_code == 200, f"{path}: {response.text[:500]}"
        assert 'src="/console/static/htmx.min.js"' in response.text
    assert (await web.get("/console/static/echarts.min.js")).status_code == 200
    bad = await web.get("/console/orders?from=yesterday")
    assert bad.status_code == 422


async def test_text_is_escaped(web: httpx.AsyncClient, world: World) -> None:
    order = await world.place(description="<script>alert(1)</script>", contact_name="<b>王</b>")
    page = await signed_in(web, world, "zhan11_admin").get(f"/console/orders/{order['id']}")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


async def test_export_has_a_bom(web: httpx.AsyncClient, world: World) -> None:
    await world.order_in(Status.RATED)
    response = await signed_in(web, world, "center_admin").get("/console/exports/orders.csv")
    assert response.status_code == 200
    assert response.content.startswith(b"\xef\xbb\xbf")
    assert "attachment" in response.headers["content-disposition"]
    other = await signed_in(web, world, "zhan21_admin").get(
        f"/console/exports/orders.csv?unit_id={world.units['zhan11']}"
    )
    assert other.status_code == 404


async def test_the_desk_lists_each_queue_with_links_to_its_orders(web: httpx.AsyncClient, world: World) -> None:
    waiting = await world.order_in(Status.SUBMITTED)
    dispatched = await world.order_in(Status.DISPATCHED)  # its notification waits in the outbox
    rated = await world.order_in(Status.RATED, resident="r2")
    low = await world.order_in(Status.COMPLETED)
    await world.ok("r1", low["id"], "rate", {"stars": 1, "comment": "没人来"})
    theirs = await world.order_in(Status.SUBMITTED, resident="r3", unit="zhan21")
    page = (await signed_in(web, world, "zhan11_admin").get("/console/")).text

    def section(title: str) -> str:
        start = page.index(f"<h2>{title}")
        return page[start : page.find("</section>", start)]

    link = '/console/orders/{}"'.format
    assert link(waiting["id"]) in section("待审核") and link(dispatched["id"]) not in section("待审核")
    assert link(dispatched["id"]) in section("即将到期")  # its accept deadline is within two hours
    assert link(low["id"]) in section("差评待回访") and link(rated["id"]) not in section("差评待回访")
    assert link(dispatched["id"]) in section("待发送通知")
    for title in ("今日新订单", "待审核"):
        assert link(waiting["id"]) in section("今日新订单")
        assert link(theirs["id"]) not in section(title)
    followed = await web.post(
        f"/console/orders/{low['id']}/followup", data={"csrf_token": csrf_of(page), "note": "已电话致歉并安排返工"}
    )
    assert followed.status_code == 303
    api = (await world.client.get(f"/orders/{low['id']}", headers=world.h("zhan11_admin"))).json()
    assert api["needs_followup"] is False
    events = (await world.client.get(f"/orders/{low['id']}/events", headers=world.h("zhan11_admin"))).json()
    assert events[-1]["action"] == "followup" and events[-1]["reason"] == "已电话致歉并安排返工"


async def test_hours_correction_and_policy_go_through_the_apis_services(web: httpx.AsyncClient, world: World) -> None:
    order = await world.order_in(Status.RATED)
    signed_in(web, world, "zhan11_admin")
    page = (await web.get(f"/console/orders/{order['id']}")).text
    assert "时长更正" in page
    volunteer = world.volunteers["v11a"]
    corrected = await web.post(
        f"/console/orders/{order['id']}/hours",
        data={
            "csrf_token": csrf_of(page),
            "volunteer_id": str(volunteer),
            "hours": "0.3",
            "reason": "核实后减去等候时间",
        },
    )
    assert corrected.status_code == 303
    events = (await world.client.get(f"/orders/{order['id']}/events", headers=world.h("zhan11_admin"))).json()
    assert events[-1]["action"] == "adjust_hours" and events[-1]["reason"] == "核实后减去等候时间"
    too_many = await web.post(
        f"/console/orders/{order['id']}/hours",
        data={"csrf_token": csrf_of(page), "volunteer_id": str(volunteer), "hours": "abc", "reason": "x"},
    )
    assert too_many.status_code == 422
    settings_page = (await web.get("/console/settings")).text
    saved = await web.post(
        "/console/settings/policy",
        data={"csrf_token": csrf_of(settings_page), "accept_minutes": "45", "dispatch_mode": "auto_pool"},
    )
    assert saved.status_code == 303
    policy = (
        await world.client.get(f"/admin/units/{world.units['zhan11']}/policy", headers=world.h("zhan11_admin"))
    ).json()
    assert (policy["accept_minutes"], policy["dispatch_mode"]) == (45, "auto_pool")
    refused = await web.post(
        "/console/settings/policy", data={"csrf_token": csrf_of(settings_page), "accept_minutes": "0"}
    )
    assert refused.status_code == 422


async def test_the_board_pages_with_the_keyset_cursor(web: httpx.AsyncClient, world: World) -> None:
    placed = [(await world.place())["code"] for _ in range(21)]
    signed_in(web, world, "zhan11_admin")
    first = (await web.get("/console/orders?status=submitted")).text
    assert first.count("data-order=") == 20 and 'id="more-row"' in first
    assert placed[-1] in first and placed[0] not in first  # newest first
    cursor = re.search(r"cursor=([^\"&]+)\" class=\"muted\"", first)
    assert cursor
    more = await web.get(
        f"/console/orders?status=submitted&cursor={cursor[1]}", headers={"HX-Request": "true", "HX-Target": "more-row"}
    )
    assert more.status_code == 200
    assert "<html" not in more.text  # rows to swap in, not a page
    assert more.text.count("data-order=") == 1 and placed[0] in more.text and 'id="more-row"' not in more.text
    assert (await web.get("/console/orders?status=submitted&cursor=bm90LWEtY3Vyc29y")).status_code == 422


async def test_redemptions_are_collected_through_the_supermarket_service(web: httpx.AsyncClient, world: World) -> None:
    admin = world.h("zhan11_admin")
    goods = await world.client.post(
        "/admin/goods",
        json={"unit_id": world.units["zhan11"], "name": "保温杯", "points_price": 30, "stock": 5},
        headers=admin,
    )
    assert goods.status_code == 201, goods.text
    volunteer = world.volunteers["v11a"]
    bonus = await world.client.post(
        f"/admin/volunteers/{volunteer}/points", json={"delta": 50, "reason": "表彰"}, headers=admin
    )
    assert bonus.status_code == 201, bonus.text
    redeemed = await world.client.post(
        "/volunteer/redemptions", json={"goods_id": goods.json()["id"]}, headers=world.h("v11a")
    )
    assert redeemed.status_code == 201, redeemed.text
    page = (await signed_in(web, world, "zhan11_admin").get("/console/market")).text
    assert "保温杯" in page and "志愿者v11a" in page
    path = f"/console/market/redemptions/{redeemed.json()['id']}/collect"
    assert (await web.post(path, data={})).status_code == 403
    assert (await web.post(path, data={"csrf_token": csrf_of(page)})).status_code == 303
    assert (await web.post(path, data={"csrf_token": csrf_of(page)})).status_code == 409  # collected already
    listed = await world.client.get("/admin/redemptions", params={"status": "collected"}, headers=admin)
    assert [r["id"] for r in listed.json()["items"]] == [redeemed.json()["id"]]
    other = await signed_in(web, world, "zhan21_admin").post(
        path, data={"csrf_token": csrf_of((await web.get("/console/market")).text)}
    )
    assert other.status_code == 404


async def test_the_menu_is_managed_through_the_directory_service(web: httpx.AsyncClient, world: World) -> None:
    signed_in(web, world, "zhan11_admin")
    page = (await web.get("/console/settings")).text
    token = csrf_of(page)
    added = await web.post(
        "/console/settings/items",
        data={
            "csrf_token": token,
            "unit_id": str(world.units["zhan11"]),
            "category_id": str(world.categories["health"]),
            "name": "代购药品",
        },
    )
    assert added.status_code == 303
    menu = (await world.client.get("/menu", params={"unit_id": world.units["zhan11"]})).json()
    item = next(i for s in menu["sections"] for i in s["items"] if i["name"] == "代购药品")
    assert item["auto_approve"] is False
    off = await web.post(f"/console/settings/items/{item['id']}", data={"csrf_token": token, "is_active": "0"})
    assert off.status_code == 303
    menu = (await world.client.get("/menu", params={"unit_id": world.units["zhan11"]})).json()
    assert all(i["name"] != "代购药品" for s in menu["sections"] for i in s["items"])
    # The county's item is on the 站's menu but not the 站's to change; another 站 is out of reach.
    county = await web.post(
        f"/console/settings/items/{world.items['center_lecture']}", data={"csrf_token": token, "is_active": "0"}
    )
    assert county.status_code == 404
    elsewhere = await web.post(
        "/console/settings/items",
        data={
            "csrf_token": token,
            "unit_id": str(world.units["zhan21"]),
            "category_id": str(world.categories["health"]),
            "name": "x",
        },
    )
    assert elsewhere.status_code == 422  # as the API answers a unit it may not reference
    theirs = (await world.client.get("/menu", params={"unit_id": world.units["zhan21"]})).json()
    assert all(i["name"] != "x" for s in theirs["sections"] for i in s["items"])
    assert (await web.post("/console/settings/items", data={"unit_id": "1"})).status_code == 403


async def test_console_root_and_bad_forms(web: httpx.AsyncClient, world: World) -> None:
    root = await web.get("/console")
    assert root.status_code in (301, 307, 308) and root.headers["location"].endswith("/console/")
    order = await world.order_in(Status.SUBMITTED)
    signed_in(web, world, "zhan11_admin")
    bad = await web.post(
        f"/console/orders/{order['id']}/actions/approve",
        content=b"csrf_token=\xff\xfe",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert bad.status_code == 422
    unknown = await web.post(f"/console/orders/{order['id']}/actions/grab", data={})
    assert unknown.status_code == 403  # no token: refused before anything else


async def test_saving_the_dispatch_policy_keeps_the_check_in_rules(web: httpx.AsyncClient, world: World) -> None:
    """The 设置 form edits the dispatch fields only: the unit's check-in proofs stay as they were."""
    path = f"/admin/units/{world.units['zhan11']}/policy"
    strict = {"presence_proofs": ["code"], "allow_unproven": False, "presence_radius_m": 150}
    assert (await world.client.put(path, json=strict, headers=world.h("zhan11_admin"))).status_code == 200
    signed_in(web, world, "zhan11_admin")
    page = (await web.get("/console/settings")).text
    saved = await web.post("/console/settings/policy", data={"csrf_token": csrf_of(page), "accept_minutes": "45"})
    assert saved.status_code == 303
    policy = (await world.client.get(path, headers=world.h("zhan11_admin"))).json()
    assert policy["accept_minutes"] == 45
    assert (policy["presence_proofs"], policy["allow_unproven"], policy["presence_radius_m"]) == (["code"], False, 150)


async def test_an_admin_confirms_presence_from_the_console(web: httpx.AsyncClient, world: World) -> None:
    order = await world.order_in(Status.ACCEPTED)
    signed_in(web, world, "zhan11_admin")
    page = (await web.get(f"/console/orders/{order['id']}")).text
    assert "确认到场" in page
    confirmed = await web.post(
        f"/console/orders/{order['id']}/actions/confirm_presence",
        data={"csrf_token": csrf_of(page), "version": str(order["version"]), "reason": "电话核实到场"},
    )
    assert confirmed.status_code == 303, confirmed.text
    api = (await world.client.get(f"/orders/{order['id']}", headers=world.h("zhan11_admin"))).json()
    assert (api["status"], api["presence_proof"]) == ("in_service", "admin")
