"""One scope rule, two sources of "who": the predicates every read binds (``scope.VISIBLE``) and the
same predicates over the caller's columns in a transition's read (``scope.visible_to_caller``)."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import load_actor
from app.domain import Action, Role, Status
from app.models import Order, OrderEvent
from app.prepared import raw_of
from app.services import scope, statements
from app.workflow import Read
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


async def test_the_transition_read_applies_the_same_scope_as_every_other_read(
    world: World, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The rule has two sources of "who": bound parameters (lists, detail reads) and the caller's own
    columns in the transition's read. Both must find the same orders for every person and order."""
    await _county_of_orders(world)
    plain = statements.read_statement(False, frozenset(), False, frozenset())
    grab = statements.read_statement(False, frozenset({Read.PUBLISHED_REGION}), False, frozenset())
    async with sessionmaker() as session:
        order_ids = list((await session.execute(select(Order.id))).scalars())
        published = set(
            (
                await session.execute(
                    select(OrderEvent.order_id).where(OrderEvent.action == Action.PUBLISH.value).distinct()
                )
            ).scalars()
        )
        statuses = set((await session.execute(select(Order.status))).scalars())
        assert statuses >= {"submitted", "approved", "dispatched", "pooled", "accepted"}
        checked = 0
        async with app.state.engine.connect() as connection:
            db = await raw_of(connection)
            for username, user_id in world.users.items():
                actor = await load_actor(session, user_id)
                in_sql = set((await session.execute(select(Order.id).where(scope.order_visible_to(actor)))).scalars())
                grab_sql = in_sql
                if actor.role is Role.VOLUNTEER:
                    in_region = scope.in_pool_region(actor) & Order.id.in_(published or {0})
                    query = select(Order.id).where(scope.order_visible_to(actor) | in_region)
                    grab_sql = set((await session.execute(query)).scalars())
                seen_by_role = set()
                for order_id in order_ids:
                    checked += 1
                    row = await plain.fetchrow(db, {"user_id": user_id, "order_id": order_id})
                    assert row is not None
                    seen = row["id"] is not None
                    seen_by_role.add(seen)
                    assert seen == (order_id in in_sql), (username, order_id)
                    row = await grab.fetchrow(db, {"user_id": user_id, "order_id": order_id})
                    assert row is not None
                    assert (row["id"] is not None) == (order_id in grab_sql), (username, order_id)
                if username in ("r1", "v11a", "suo1_admin", "zhan21_admin"):
                    # The county is rich enough for the comparison to mean something.
                    assert seen_by_role == {True, False}, username
    assert checked == len(world.users) * len(order_ids)
