"""The two forms of "who may see which order" agree: the SQL predicates every read uses
(``scope.VISIBLE``, and the grab query's) and their Python twin (``scope.visible``) that the action
lane applies to an order read in the same query as its caller."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import load_actor
from app.domain import Action, Role, Status
from app.models import Order, OrderEvent
from app.models.base import table_of
from app.services import scope
from app.services.transitions import order_from_row
from tests.world import World


async def _county_of_orders(world: World) -> None:
    """Orders in every reachable state in three stations, some held by a team, one ordered by a
    volunteer for a resident (代点单), one published and withdrawn again."""
    for unit, resident in (("zhan11", "r1"), ("zhan21", "r3")):
        for status in (Status.SUBMITTED, Status.APPROVED, Status.DISPATCHED, Status.POOLED, Status.ACCEPTED):
            await world.order_in(status, resident=resident, unit=unit)
    for status in (Status.SUBMITTED, Status.POOLED):
        await world.order_in(status, resident="r2", unit="zhan12")
    teamed = await world.order_in(Status.APPROVED)
    await world.ok("zhan11_admin", teamed["id"], "dispatch", {"team_id": world.teams["team11"]})
    await world.place("v12", unit="zhan12", resident_id=world.users["r2"])
    withdrawn = await world.order_in(Status.POOLED, unit="zhan12")
    await world.ok("zhan12_admin", withdrawn["id"], "withdraw")
    suo = await world.order_in(Status.APPROVED, unit="zhan11")
    await world.ok("suo1_admin", suo["id"], "publish")


async def test_python_twin_matches_the_sql_predicates(
    world: World, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await _county_of_orders(world)
    async with sessionmaker() as session:
        orders = [order_from_row(row) for row in (await session.execute(select(*table_of(Order).c))).mappings()]
        published = set(
            (
                await session.execute(
                    select(OrderEvent.order_id).where(OrderEvent.action == Action.PUBLISH.value).distinct()
                )
            ).scalars()
        )
        assert {order.status for order in orders} >= {"submitted", "approved", "dispatched", "pooled", "accepted"}
        checked = 0
        for username, user_id in world.users.items():
            actor = await load_actor(session, user_id)
            in_sql = set((await session.execute(select(Order.id).where(scope.order_visible_to(actor)))).scalars())
            grab_sql: set[int] = set()
            if actor.role is Role.VOLUNTEER:
                grab_sql = set(
                    (
                        await session.execute(
                            select(Order.id).where(
                                scope.order_visible_to(actor)
                                | (scope.in_pool_region(actor) & Order.id.in_(published or {0}))
                            )
                        )
                    ).scalars()
                )
            for order in orders:
                checked += 1
                seen = scope.visible(actor, order)
                assert seen == (order.id in in_sql), (username, order.id, order.status, order.unit_path)
                if actor.role is Role.VOLUNTEER:
                    grabbable = scope.visible(actor, order, grabbing=True, was_published=order.id in published)
                    assert grabbable == (order.id in grab_sql), (username, order.id, order.status)
        assert checked == len(world.users) * len(orders)
        # The county is rich enough for the comparison to mean something: every role sees some orders
        # and misses others.
        for username in ("r1", "v11a", "suo1_admin", "zhan21_admin"):
            actor = await load_actor(session, world.users[username])
            answers = {scope.visible(actor, order) for order in orders}
            assert answers == {True, False}, username
