"""爱心超市: goods in the admins' subtrees, redemptions that never overdraw points or stock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import issue_token
from app.domain import Role
from app.models import PointsEntry, Redemption, User, Volunteer
from tests.world import World

Maker = async_sessionmaker[AsyncSession]


async def call(world: World, method: str, path: str, user: str, body: dict[str, Any] | None = None) -> Any:
    response = await world.client.request(method, path, json=body, headers=world.h(user))
    return response.status_code, response.json()


async def goods(
    world: World, unit: str = "zhan11", admin: str = "zhan11_admin", *, price: int = 10, stock: int = 5, **extra: Any
) -> dict[str, Any]:
    body = {"unit_id": world.units[unit], "name": f"{unit} 大米 5kg", "points_price": price, "stock": stock} | extra
    status, data = await call(world, "POST", "/admin/goods", admin, body)
    assert status == 201, data
    result: dict[str, Any] = data
    return result


async def add_shoppers(world: World, sessionmaker: Maker, n: int) -> list[str]:
    """``n`` more volunteers of 站11, with tokens and ids in ``world``."""
    names = [f"shopper{i:02d}" for i in range(n)]
    async with sessionmaker() as session, session.begin():
        for i, name in enumerate(names):
            user = User(username=name, role=Role.VOLUNTEER.value, unit_id=world.units["zhan11"], display_name=name)
            session.add(user)
            await session.flush()
            volunteer = Volunteer(
                user_id=user.id, real_name=name, phone=f"1580000{i:04d}", home_unit_id=world.units["zhan11"]
            )
            session.add(volunteer)
            await session.flush()
            world.tokens[name], world.volunteers[name] = issue_token(world.settings, user), volunteer.id
    return names


async def give_points(world: World, volunteer: str, points: int) -> None:
    path = f"/admin/volunteers/{world.volunteers[volunteer]}/points"
    status, data = await call(world, "POST", path, "center_admin", {"delta": points, "reason": "测试积分"})
    assert status == 201, data


async def balance(world: World, volunteer: str = "v11a") -> int:
    status, data = await call(world, "GET", "/volunteer/me", volunteer)
    assert status == 200, data
    points: int = data["points"]
    return points


async def stock(world: World, goods_id: int) -> int:
    status, data = await call(world, "GET", f"/admin/goods/{goods_id}", "center_admin")
    assert status == 200, data
    left: int = data["stock"]
    return left


async def redeem(world: World, volunteer: str, goods_id: int, quantity: int = 1, **headers: str) -> Any:
    response = await world.client.post(
        "/volunteer/redemptions",
        json={"goods_id": goods_id, "quantity": quantity},
        headers=world.h(volunteer) | headers,
    )
    return response


# --- goods ----------------------------------------------------------------------------------------


async def test_admins_manage_the_goods_of_their_subtree(world: World) -> None:
    rice = await goods(world, description="每户限领一袋")
    assert rice["is_active"] is True and rice["stock"] == 5 and rice["description"] == "每户限领一袋"
    status, _ = await call(world, "POST", "/admin/goods", "zhan11_admin", {
        "unit_id": world.units["zhan21"], "name": "别处的米", "points_price": 10,
    })  # fmt: skip
    assert status == 422
    for bad in ({"points_price": 0}, {"stock": -1}, {"name": ""}, {"points_price": None}, {"color": "red"}):
        status, _ = await call(world, "PATCH", f"/admin/goods/{rice['id']}", "zhan11_admin", bad)
        assert status == 422, bad
    status, patched = await call(
        world, "PATCH", f"/admin/goods/{rice['id']}", "suo1_admin", {"points_price": 12, "stock": 9, "is_active": False}
    )
    assert status == 200 and (patched["points_price"], patched["stock"], patched["is_active"]) == (12, 9, False)
    assert (await call(world, "PATCH", f"/admin/goods/{rice['id']}", "zhan21_admin", {"stock": 1}))[0] == 404
    assert (await call(world, "GET", f"/admin/goods/{rice['id']}", "zhan12_admin"))[0] == 404
    await goods(world, "zhan21", "zhan21_admin")
    _, listed = await call(world, "GET", "/admin/goods", "suo1_admin")
    assert [g["id"] for g in listed] == [rice["id"]]
    _, everything = await call(world, "GET", "/admin/goods", "center_admin")
    assert len(everything) == 2


async def test_volunteers_see_active_goods_of_their_unit_and_above(world: World) -> None:
    visible: set[int] = set()
    for unit in ("center", "suo1", "zhan11"):
        visible.add((await goods(world, unit, "center_admin"))["id"])
    for unit in ("zhan12", "suo2", "zhan21"):
        await goods(world, unit, "center_admin")
    await goods(world, "zhan11", "center_admin", is_active=False)
    status, listed = await call(world, "GET", "/volunteer/goods", "v11a")
    assert status == 200 and {g["id"] for g in listed} == visible
    _, seen_by_v21 = await call(world, "GET", "/volunteer/goods", "v21")
    assert len(seen_by_v21) == 3  # center, suo2, zhan21


# --- redeeming ------------------------------------------------------------------------------------


async def test_redeeming_debits_points_and_stock_or_changes_nothing(world: World, sessionmaker: Maker) -> None:
    await give_points(world, "v11a", 100)
    item = await goods(world, price=30, stock=4)
    response = await redeem(world, "v11a", item["id"], 2)
    assert response.status_code == 201, response.text
    redemption = response.json()
    assert (redemption["points"], redemption["quantity"], redemption["status"]) == (60, 2, "pending")
    assert redemption["goods_name"] == item["name"] and redemption["volunteer_id"] == world.volunteers["v11a"]
    assert await balance(world) == 40 and await stock(world, item["id"]) == 2

    short_of_points = await redeem(world, "v11a", item["id"], 2)  # 60 > 40
    assert short_of_points.status_code == 409
    assert short_of_points.json()["error"]["details"] == {"balance": 40, "required": 60}
    await give_points(world, "v11a", 100)
    short_of_stock = await redeem(world, "v11a", item["id"], 3)  # 3 > 2 left
    assert short_of_stock.status_code == 409 and short_of_stock.json()["error"]["details"]["stock"] == 2
    assert await balance(world) == 140 and await stock(world, item["id"]) == 2
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Redemption)) == 1

    elsewhere = await goods(world, "zhan21", "zhan21_admin")
    assert (await redeem(world, "v11a", elsewhere["id"])).status_code == 404
    assert (await redeem(world, "v11a", 999_999)).status_code == 404
    for quantity in (0, 11):
        assert (await redeem(world, "v11a", item["id"], quantity)).status_code == 422
    assert (await redeem(world, "r1", item["id"])).status_code == 403
    assert (await redeem(world, "zhan11_admin", item["id"])).status_code == 403
    points = (await call(world, "GET", "/volunteer/me/points", "v11a"))[1]
    debit = next(e for e in points["items"] if e["kind"] == "redemption")
    assert debit["delta"] == -60 and debit["redemption_id"] == redemption["id"]


async def test_ten_concurrent_redemptions_with_points_for_three(world: World, sessionmaker: Maker) -> None:
    await give_points(world, "v11a", 30)
    # Different goods, so only the lock on the volunteer (not one on the goods) stands between them.
    shelf = [await goods(world, price=10, stock=100, name=f"商品{i}") for i in range(10)]
    responses = await asyncio.gather(*(redeem(world, "v11a", item["id"]) for item in shelf))
    assert sorted(r.status_code for r in responses) == [201] * 3 + [409] * 7
    assert all(r.json()["error"]["code"] == "conflict" for r in responses if r.status_code == 409)
    assert await balance(world) == 0
    assert sorted([await stock(world, item["id"]) for item in shelf]) == [99] * 3 + [100] * 7
    async with sessionmaker() as session:
        debits = await session.scalar(select(func.count()).where(PointsEntry.kind == "redemption"))
    assert debits == 3


async def test_concurrent_redemptions_never_oversell_the_stock(world: World, sessionmaker: Maker) -> None:
    people = [*await add_shoppers(world, sessionmaker, 8), "v11a", "v11b"]
    for person in people:
        await give_points(world, person, 10)
    item = await goods(world, "center", "center_admin", price=5, stock=3)
    responses = await asyncio.gather(*(redeem(world, person, item["id"]) for person in people))
    assert sorted(r.status_code for r in responses) == [201] * 3 + [409] * 7
    assert await stock(world, item["id"]) == 0
    winners = {r.json()["volunteer_id"] for r in responses if r.status_code == 201}
    async with sessionmaker() as session:
        query = select(PointsEntry.volunteer_id, func.sum(PointsEntry.delta)).group_by(PointsEntry.volunteer_id)
        spent = {volunteer_id: int(total) for volunteer_id, total in await session.execute(query)}
    assert sorted(spent.values()) == [5] * 3 + [10] * 7
    assert {v for v, left in spent.items() if left == 5} == winners


async def test_a_retried_redemption_with_the_same_key_redeems_once(world: World) -> None:
    await give_points(world, "v11a", 50)
    item = await goods(world, price=10)
    first = await redeem(world, "v11a", item["id"], 2, **{"Idempotency-Key": "redeem-1"})
    again = await redeem(world, "v11a", item["id"], 2, **{"Idempotency-Key": "redeem-1"})
    assert first.status_code == 201 and again.status_code == 201 and again.json() == first.json()
    assert await balance(world) == 30 and await stock(world, item["id"]) == 3


# --- handing out and cancelling ---------------------------------------------------------------------


async def test_cancel_refunds_points_and_restores_stock(world: World) -> None:
    await give_points(world, "v11a", 100)
    item = await goods(world, price=20, stock=4)
    first = (await redeem(world, "v11a", item["id"], 2)).json()
    second = (await redeem(world, "v11a", item["id"])).json()
    assert await balance(world) == 40 and await stock(world, item["id"]) == 1

    cancel = f"/admin/redemptions/{first['id']}/cancel"
    assert (await call(world, "POST", cancel, "zhan21_admin", {"reason": "越权"}))[0] == 404
    assert (await call(world, "POST", cancel, "v11a", {"reason": "自己取消"}))[0] == 403
    assert (await call(world, "POST", cancel, "zhan11_admin", {}))[0] == 422  # reason required
    status, cancelled = await call(world, "POST", cancel, "zhan11_admin", {"reason": "商品破损, 无法发放"})
    assert status == 200 and cancelled["status"] == "cancelled"
    assert cancelled["handled_by_id"] == world.users["zhan11_admin"] and cancelled["handled_at"]
    assert await balance(world) == 80 and await stock(world, item["id"]) == 3
    refund = (await call(world, "GET", "/volunteer/me/points", "v11a"))[1]["items"][0]
    assert (refund["kind"], refund["delta"], refund["reason"]) == ("refund", 40, "商品破损, 无法发放")
    # Only a pending redemption can be cancelled or collected.
    assert (await call(world, "POST", cancel, "zhan11_admin", {"reason": "再取消"}))[0] == 409
    assert (await call(world, "POST", f"/admin/redemptions/{first['id']}/collect", "zhan11_admin"))[0] == 409
    status, collected = await call(world, "POST", f"/admin/redemptions/{second['id']}/collect", "suo1_admin")
    assert status == 200 and collected["status"] == "collected"
    again = await call(world, "POST", f"/admin/redemptions/{second['id']}/cancel", "zhan11_admin", {"reason": "x"})
    assert again[0] == 409
    assert await balance(world) == 80 and await stock(world, item["id"]) == 3


async def test_volunteers_cancel_their_own_pending_redemptions(world: World) -> None:
    await give_points(world, "v11a", 100)
    await give_points(world, "v11b", 100)
    item = await goods(world, price=10, stock=5)
    mine = (await redeem(world, "v11a", item["id"], 2)).json()
    theirs = (await redeem(world, "v11b", item["id"])).json()
    assert await balance(world) == 80 and await stock(world, item["id"]) == 2
    cancel = f"/volunteer/redemptions/{mine['id']}/cancel"
    assert (await call(world, "POST", f"/volunteer/redemptions/{theirs['id']}/cancel", "v11a", {"reason": "x"}))[
        0
    ] == 404  # another volunteer's: as if it did not exist
    assert (await call(world, "POST", cancel, "zhan11_admin", {"reason": "x"}))[0] == 403
    assert (await call(world, "POST", cancel, "v11a", {}))[0] == 422  # reason required
    status, cancelled = await call(world, "POST", cancel, "v11a", {"reason": "不需要了"})
    assert status == 200 and cancelled["status"] == "cancelled"
    assert cancelled["handled_by_id"] == world.users["v11a"]
    assert await balance(world) == 100 and await stock(world, item["id"]) == 4
    assert await balance(world, "v11b") == 90
    assert (await call(world, "POST", cancel, "v11a", {"reason": "再取消"}))[0] == 409
    # Once collected, it is too late.
    collected = await call(world, "POST", f"/admin/redemptions/{theirs['id']}/collect", "zhan11_admin")
    assert collected[0] == 200
    late = await call(world, "POST", f"/volunteer/redemptions/{theirs['id']}/cancel", "v11b", {"reason": "晚了"})
    assert late[0] == 409 and await balance(world, "v11b") == 90


async def test_redemption_lists_for_the_volunteer_and_the_admins(world: World) -> None:
    await give_points(world, "v11a", 100)
    await give_points(world, "v21", 100)
    here, there = await goods(world), await goods(world, "zhan21", "zhan21_admin")
    mine = [(await redeem(world, "v11a", here["id"])).json() for _ in range(3)]
    theirs = (await redeem(world, "v21", there["id"])).json()
    await call(world, "POST", f"/admin/redemptions/{mine[0]['id']}/collect", "zhan11_admin")

    _, page = await call(world, "GET", "/volunteer/redemptions?limit=2", "v11a")
    assert [r["id"] for r in page["items"]] == [mine[2]["id"], mine[1]["id"]] and page["next_cursor"]
    _, rest = await call(world, "GET", f"/volunteer/redemptions?limit=2&cursor={page['next_cursor']}", "v11a")
    assert [r["id"] for r in rest["items"]] == [mine[0]["id"]] and rest["next_cursor"] is None

    _, pending = await call(world, "GET", "/admin/redemptions?status=pending", "suo1_admin")
    assert [r["id"] for r in pending["items"]] == [mine[2]["id"], mine[1]["id"]]
    _, at_center = await call(world, "GET", "/admin/redemptions", "center_admin")
    assert {r["id"] for r in at_center["items"]} == {r["id"] for r in [*mine, theirs]}
    _, at_zhan21 = await call(world, "GET", "/admin/redemptions", "zhan21_admin")
    assert [r["id"] for r in at_zhan21["items"]] == [theirs["id"]]
    assert (await call(world, "GET", "/admin/redemptions?status=lost", "center_admin"))[0] == 422
    assert (await call(world, "GET", f"/admin/redemptions?unit_id={world.units['zhan11']}", "zhan21_admin"))[0] == 404


ADMIN_ENDPOINTS = [
    ("GET", "/admin/goods"),
    ("POST", "/admin/goods"),
    ("GET", "/admin/goods/1"),
    ("PATCH", "/admin/goods/1"),
    ("GET", "/admin/redemptions"),
    ("POST", "/admin/redemptions/1/collect"),
    ("POST", "/admin/redemptions/1/cancel"),
    ("POST", "/admin/orders/1/hours"),
    ("POST", "/admin/orders/1/followup"),
    ("POST", "/admin/volunteers/1/honor-hours"),
    ("POST", "/admin/volunteers/1/points"),
    ("GET", "/admin/volunteers/1/summary"),
    ("GET", "/admin/teams/1/summary"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ENDPOINTS)
async def test_residents_and_volunteers_get_403_on_admin_endpoints(world: World, method: str, path: str) -> None:
    for user in ("r1", "v11a"):
        status, body = await call(world, method, path, user, {} if method != "GET" else None)
        assert status == 403, (user, body)
    response = await world.client.request(method, path)
    assert response.status_code == 401
