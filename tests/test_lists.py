"""The lists people poll (我的订单, 我的任务): every page newest first, cursors that neither skip nor repeat,
filters, and nobody else's orders (their statements are built once and take the caller as parameters)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from app.domain import Status
from tests.world import World


async def all_pages(world: World, username: str, path: str, **params: Any) -> list[list[int]]:
    """The ids of every page of ``path``, following ``next_cursor`` to the end."""
    pages: list[list[int]] = []
    cursor = None
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        response = await world.client.get(path, params=query, headers=world.h(username))
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append([item["id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


def flat(pages: list[list[int]]) -> list[int]:
    return [order_id for page in pages for order_id in page]


async def test_my_orders_page_newest_first_and_filter_by_status(world: World) -> None:
    mine = [(await world.place("r1"))["id"] for _ in range(5)]
    others = (await world.place("r2"))["id"]
    for order_id in mine[1], mine[3]:
        await world.ok("zhan11_admin", order_id, "approve")

    pages = await all_pages(world, "r1", "/orders/mine", limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert flat(pages) == mine[::-1]  # placed one after another: newest first, each once
    assert others not in flat(pages)

    approved = await all_pages(world, "r1", "/orders/mine", limit=1, status="approved")
    assert approved == [[mine[3]], [mine[1]]]
    assert flat(await all_pages(world, "r1", "/orders/mine", status="submitted")) == [
        mine[4],
        mine[2],
        mine[0],
    ]
    assert flat(await all_pages(world, "r2", "/orders/mine")) == [others]

    bad = await world.client.get("/orders/mine", params={"cursor": "not-a-cursor"}, headers=world.h("r1"))
    assert bad.status_code == 422


async def test_assigned_tasks_page_through_personal_and_team_dispatches(world: World) -> None:
    done = await world.order_in(Status.COMPLETED)  # by v11a: finished, not a task any more
    personal = [(await world.order_in(Status.DISPATCHED))["id"] for _ in range(2)]  # to v11a
    team = await world.order_in(Status.APPROVED)
    await world.ok("zhan11_admin", team["id"], "dispatch", {"team_id": world.teams["team11"]})
    held = await world.order_in(Status.ACCEPTED)  # grabbed by v11a (the third order v11a may hold)

    pages = await all_pages(world, "v11a", "/volunteer/tasks", limit=3)
    assert [len(page) for page in pages] == [3, 1]
    assert flat(pages) == [held["id"], team["id"], *personal[::-1]]
    assert done["id"] not in flat(pages)
    # v11b: only the team's; a volunteer of another 站 and one of no team: nothing of these.
    assert flat(await all_pages(world, "v11b", "/volunteer/tasks")) == [team["id"]]
    for outsider in ("v12", "v21"):
        assert flat(await all_pages(world, outsider, "/volunteer/tasks")) == [], outsider


async def test_polled_reads_run_without_a_transaction_and_others_keep_theirs(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``read_only`` endpoints save the BEGIN and COMMIT round trips; everything else still gets its
    transaction (asyncpg's ``Connection.transaction`` is what sends BEGIN for SQLAlchemy)."""
    order = await world.order_in(Status.DISPATCHED)  # to v11a
    begun: list[str] = []
    original = asyncpg.Connection.transaction

    def counting(self: asyncpg.Connection, **options: Any) -> Any:
        begun.append("BEGIN")
        return original(self, **options)

    monkeypatch.setattr(asyncpg.Connection, "transaction", counting)
    reads = [
        ("r1", "/orders/mine"),
        ("r1", f"/orders/{order['id']}"),
        ("zhan11_admin", f"/orders/{order['id']}"),  # an unmasked phone: its access-log row is written
        ("r1", f"/orders/{order['id']}/events"),
        ("v11a", "/volunteer/tasks"),
        ("v11a", "/volunteer/tasks?kind=pool"),
    ]
    for username, path in reads:
        response = await world.client.get(path, headers=world.h(username))
        assert response.status_code == 200, (path, response.text)
    assert begun == []
    assert (await world.client.get("/admin/orders", headers=world.h("zhan11_admin"))).status_code == 200
    assert begun == ["BEGIN"]
    begun.clear()
    await world.place("r1")
    assert begun == ["BEGIN"]
