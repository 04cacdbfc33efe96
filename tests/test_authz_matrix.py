"""Authorization matrix: every route with an object id in its path × every login role × an object in
and out of the caller's scope.

The routes come from the OpenAPI document the app serves, not from a list kept here: a new route
with a path id fails ``test_every_route_with_an_id_has_a_rule`` until ``RULES`` says how to make
objects for it and who may use it. For each route and role the table gives a ``Scope`` (how to make
an object the caller may reach, and objects of the same kind it may not) or nothing, which means the
role may never use the route. Expected:

- role without a ``Scope``: 403 on every object (the role is refused before any lookup);
- in scope: 2xx (the object is prepared in a state where the call succeeds);
- out of scope: 404, the same answer as for an object that does not exist.

The callers: resident ``r1`` (站11), volunteer ``v11a`` (站11, member of team11), admin ``suo1_admin``
(所1, whose subtree holds 站11 and 站12). Out of scope for the admin are objects of 所2/站21 (a
sibling branch) and, where the kind allows, of the 中心 above it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pytest

from app.config import Settings
from app.domain import Status
from app.main import API_PREFIX, create_app
from tests.world import World

Make = Callable[[World], Awaitable[int]]
Body = Callable[[World], dict[str, Any]]

ROLES: Final = ("resident", "volunteer", "admin")
CALLER: Final = {"resident": "r1", "volunteer": "v11a", "admin": "suo1_admin"}


def _routes_with_an_id() -> list[str]:
    """``"METHOD /path"`` of every operation with a path parameter, as the app documents them."""
    document = create_app(Settings(environment="test", enable_dev_token=True, run_worker=False)).openapi()
    return sorted(
        f"{method.upper()} {path.removeprefix(API_PREFIX)}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if any(parameter["in"] == "path" for parameter in operation.get("parameters", []))
    )


ID_ROUTES: Final = _routes_with_an_id()


# --- object factories ------------------------------------------------------------------------------


def fixed(kind: str, name: str) -> Make:
    """A row the world already has: ``kind`` is one of World's id maps (units, users, teams, …)."""

    async def make(world: World) -> int:
        ids: dict[str, int] = getattr(world, kind)
        return ids[name]

    return make


def order(
    status: Status,
    unit: str = "zhan11",
    *,
    placer: str | None = None,
    for_resident: str | None = None,
    stars: int = 5,
    holder: str | None = None,
) -> Make:
    """A fresh order at ``unit`` driven through the API into ``status``.

    Placed by the unit's resident (r1 in 站11, r3 in 站21) unless ``placer`` places it for
    ``for_resident`` (代点单). Orders are held by ``holder``, else v11a in 站11 and v21 in 站21;
    ``stars`` rates it.
    """

    async def make(world: World) -> int:
        resident = "r3" if unit == "zhan21" else "r1"
        who = placer or resident
        proxy = {"resident_id": world.users[for_resident], "channel": "offline"} if for_resident else {}
        oid: int = (await world.place(who, unit=unit, **proxy))["id"]
        admin, volunteer = f"{unit}_admin", holder or ("v21" if unit == "zhan21" else "v11a")
        steps: list[tuple[Status, str, str, dict[str, Any]]] = [
            (Status.APPROVED, admin, "approve", {}),
            (Status.DISPATCHED, admin, "dispatch", {"volunteer_id": world.volunteers[volunteer]}),
            (Status.ACCEPTED, volunteer, "accept", {}),
            (Status.IN_SERVICE, volunteer, "check_in", {}),
            # Hours may not exceed the time since check-in, rounded up to the half hour.
            (Status.COMPLETED, volunteer, "complete", world.complete_body(volunteer, hours="0.5")),
            (Status.RATED, who, "rate", {"stars": stars}),
        ]
        if status is Status.POOLED:
            steps = [steps[0], (Status.POOLED, admin, "publish", {})]
        for reached, actor, action, body in steps:
            if status is Status.SUBMITTED:
                break
            await world.ok(actor, oid, action, body)
            if reached is status:
                break
        return oid

    return make


def goods(unit: str) -> Make:
    """Goods of the 爱心超市 at ``unit``, put on the shelf by the unit's admin."""

    async def make(world: World) -> int:
        body = {"unit_id": world.units[unit], "name": f"{unit} 的毛巾", "points_price": 10, "stock": 5}
        response = await world.client.post("/admin/goods", json=body, headers=world.h(f"{unit}_admin"))
        assert response.status_code == 201, response.text
        goods_id: int = response.json()["id"]
        return goods_id

    return make


def redemption(unit: str) -> Make:
    """A pending redemption of goods at ``unit`` by its volunteer, who is first given the points."""

    async def make(world: World) -> int:
        volunteer = "v21" if unit == "zhan21" else "v11a"
        admin = world.h(f"{unit}_admin")
        bonus = {"delta": 100, "reason": "矩阵测试"}
        response = await world.client.post(
            f"/admin/volunteers/{world.volunteers[volunteer]}/points", json=bonus, headers=admin
        )
        assert response.status_code == 201, response.text
        body = {"goods_id": await goods(unit)(world)}
        response = await world.client.post("/volunteer/redemptions", json=body, headers=world.h(volunteer))
        assert response.status_code == 201, response.text
        redemption_id: int = response.json()["id"]
        return redemption_id

    return make


def activity(unit: str) -> Make:
    """An activity published at ``unit`` by its admin (a slot starting in half an hour)."""

    async def make(world: World) -> int:
        start = datetime.now(UTC) + timedelta(minutes=30)
        body = {
            "unit_id": world.units[unit],
            "kind": "lecture",
            "title": f"{unit} 的宣讲",
            "address": "文化礼堂",
            "slots": [
                {"starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=1)).isoformat(), "capacity": 5}
            ],
        }
        response = await world.client.post("/admin/activities", json=body, headers=world.h(f"{unit}_admin"))
        assert response.status_code == 201, response.text
        activity_id: int = response.json()["id"]
        return activity_id

    return make


def standing(unit: str, creator: str | None = None, *, paused: bool = False) -> Make:
    """A standing order (常态化服务) at ``unit``, set up by its resident (r1 at 站11, r3 at 站21) or by
    ``creator`` (an admin, for r1 when at 站11); ``paused`` by its creator."""

    async def make(world: World) -> int:
        who = creator or ("r3" if unit == "zhan21" else "r1")
        body = {
            "item_id": world.items["center_lecture"], "description": "每周探访", "unit_id": world.units[unit],
            "address": "幸福村", "contact_name": "王奶奶", "contact_phone": "13812345678",
            "rrule": "FREQ=WEEKLY;COUNT=4", "starts_at": (datetime.now(UTC) + timedelta(days=10)).isoformat(),
        }  # fmt: skip
        response = await world.client.post("/standing-orders", json=body, headers=world.h(who))
        assert response.status_code == 201, response.text
        standing_id: int = response.json()["id"]
        if paused:
            response = await world.client.post(f"/standing-orders/{standing_id}/pause", headers=world.h(who))
            assert response.status_code == 200, response.text
        return standing_id

    return make


def activity_slot(unit: str) -> Make:
    async def make(world: World) -> int:
        response = await world.client.get(
            f"/admin/activities/{await activity(unit)(world)}", headers=world.h(f"{unit}_admin")
        )
        slot_id: int = response.json()["slots"][0]["id"]
        return slot_id

    return make


def activity_signup(unit: str, *, checked_in: bool = False) -> Make:
    """A confirmed sign-up of the unit's volunteer (v11a at 站11, v21 at 站21), checked in if asked."""

    async def make(world: World) -> int:
        volunteer = "v21" if unit == "zhan21" else "v11a"
        slot_id = await activity_slot(unit)(world)
        response = await world.client.post(f"/activity-slots/{slot_id}/signup", headers=world.h(volunteer))
        assert response.status_code == 201, response.text
        signup_id: int = response.json()["id"]
        if checked_in:
            done = await world.client.post(f"/activity-signups/{signup_id}/check-in", headers=world.h(volunteer))
            assert done.status_code == 200, done.text
        return signup_id

    return make


def qualified(volunteer: str, kind: str) -> Make:
    """``volunteer``, holding a qualification of ``kind`` recorded by their 站's admin."""

    async def make(world: World) -> int:
        admin = "zhan21_admin" if volunteer == "v21" else "zhan11_admin"
        body = {"kind": kind, "number": "JJZ-1"}
        path = f"/admin/volunteers/{world.volunteers[volunteer]}/qualifications"
        assert (await world.client.put(path, json=body, headers=world.h(admin))).status_code == 200
        return world.volunteers[volunteer]

    return make


def _standing_rule(paused: bool = False) -> Rule:
    return Rule(
        body=_empty,
        resident=Scope(standing("zhan11", paused=paused), (standing("zhan21", paused=paused),)),
        admin=Scope(
            standing("zhan12", "zhan12_admin", paused=paused),
            (standing("zhan21", paused=paused), standing("center", "center_admin", paused=paused)),
        ),
    )


# --- the table ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """How the role's caller reaches the route: ``inside`` makes an object in its scope, each of
    ``outside`` one of the same kind out of it (none: the kind is shared by everyone)."""

    inside: Make
    outside: tuple[Make, ...]
    caller: str | None = None  # another user of the role, when the default caller may not use the route
    refused: tuple[str, ...] = ()  # users of the role refused (403) whatever the object


@dataclass(frozen=True)
class Rule:
    body: Body | None = None
    resident: Scope | None = None
    volunteer: Scope | None = None
    admin: Scope | None = None
    scopes: dict[str, Scope] = field(init=False)

    def __post_init__(self) -> None:
        found = {role: getattr(self, role) for role in ROLES if getattr(self, role) is not None}
        object.__setattr__(self, "scopes", found)


def _admin(status: Status) -> Scope:
    """An order action of the 所 admin: its 站11 order vs 站21's, and one escalated to the 中心."""
    return Scope(order(status), (order(status, "zhan21"), _at_center(status)))


def _at_center(status: Status) -> Make:
    async def make(world: World) -> int:
        oid = await order(Status.SUBMITTED, "zhan11")(world)
        await world.ok("zhan11_admin", oid, "escalate", {"reason": "本站无法办理"})
        await world.ok("suo1_admin", oid, "escalate", {"reason": "本所无法办理"})
        if status is not Status.SUBMITTED:
            await world.ok("center_admin", oid, "approve")
        if status in (Status.DISPATCHED,):
            await world.ok("center_admin", oid, "dispatch", {"volunteer_id": world.volunteers["v21"]})
        return oid

    return make


def _reason(world: World) -> dict[str, Any]:
    return {"reason": "矩阵测试"}


def _empty(world: World) -> dict[str, Any]:
    return {}


FOREIGN_ORDER = order(Status.SUBMITTED, "zhan21")  # r3's, at 站21: no business of r1, v11a or 所1
UNIT_OUTSIDE = (fixed("units", "zhan21"), fixed("units", "center"))

RULES: Final[dict[str, Rule]] = {
    # --- orders: reads ---
    "GET /orders/{order_id}": Rule(
        resident=Scope(order(Status.SUBMITTED), (FOREIGN_ORDER, order(Status.SUBMITTED, placer="r2"))),
        volunteer=Scope(order(Status.DISPATCHED), (FOREIGN_ORDER, order(Status.SUBMITTED))),
        admin=_admin(Status.SUBMITTED),
    ),
    "GET /orders/{order_id}/events": Rule(
        resident=Scope(order(Status.SUBMITTED), (FOREIGN_ORDER,)),
        volunteer=Scope(order(Status.POOLED), (order(Status.POOLED, "zhan21"), order(Status.APPROVED))),
        admin=_admin(Status.SUBMITTED),
    ),
    # --- orders: staff actions (residents and volunteers may never) ---
    "POST /orders/{order_id}/approve": Rule(body=_empty, admin=_admin(Status.SUBMITTED)),
    "POST /orders/{order_id}/reject": Rule(body=_reason, admin=_admin(Status.SUBMITTED)),
    "POST /orders/{order_id}/escalate": Rule(body=_reason, admin=_admin(Status.APPROVED)),
    "POST /orders/{order_id}/transfer": Rule(
        body=lambda w: {"unit_id": w.units["zhan12"], "reason": "转站12"}, admin=_admin(Status.SUBMITTED)
    ),
    "POST /orders/{order_id}/dispatch": Rule(
        body=lambda w: {"volunteer_id": w.volunteers["v12"]}, admin=_admin(Status.APPROVED)
    ),
    "POST /orders/{order_id}/publish": Rule(body=_empty, admin=_admin(Status.APPROVED)),
    "POST /orders/{order_id}/withdraw": Rule(body=_empty, admin=_admin(Status.DISPATCHED)),
    "POST /orders/{order_id}/reopen": Rule(
        body=_reason,
        admin=Scope(order(Status.RATED, stars=1), (order(Status.RATED, "zhan21", stars=1),)),
    ),
    # --- orders: the volunteer's actions (residents and admins may never) ---
    "POST /orders/{order_id}/accept": Rule(
        body=_empty, volunteer=Scope(order(Status.DISPATCHED), (order(Status.DISPATCHED, "zhan21"),))
    ),
    "POST /orders/{order_id}/decline": Rule(
        body=_reason, volunteer=Scope(order(Status.DISPATCHED), (order(Status.DISPATCHED, "zhan21"),))
    ),
    "POST /orders/{order_id}/grab": Rule(
        body=_empty, volunteer=Scope(order(Status.POOLED), (order(Status.POOLED, "zhan21"), order(Status.APPROVED)))
    ),
    "POST /orders/{order_id}/release": Rule(
        body=_reason, volunteer=Scope(order(Status.ACCEPTED), (order(Status.ACCEPTED, "zhan21"),))
    ),
    "POST /orders/{order_id}/check-in": Rule(
        body=_empty, volunteer=Scope(order(Status.ACCEPTED), (order(Status.ACCEPTED, "zhan21"),))
    ),
    "POST /orders/{order_id}/complete": Rule(
        body=lambda w: w.complete_body("v11a", hours="0.5"),
        volunteer=Scope(order(Status.IN_SERVICE), (order(Status.IN_SERVICE, "zhan21"),)),
    ),
    # --- orders: anyone's, within their relation to the order ---
    "POST /orders/{order_id}/rate": Rule(
        body=lambda w: {"stars": 4},
        resident=Scope(order(Status.COMPLETED), (order(Status.COMPLETED, "zhan21"),)),
        # 代点单: whoever placed the order rates it (unless they served it: v11b holds it here).
        volunteer=Scope(
            order(Status.COMPLETED, placer="v11a", for_resident="r2", holder="v11b"),
            (order(Status.COMPLETED, "zhan21"),),
        ),
        admin=Scope(
            order(Status.COMPLETED, placer="suo1_admin", for_resident="r2"), (order(Status.COMPLETED, "zhan21"),)
        ),
    ),
    "POST /orders/{order_id}/cancel": Rule(
        body=_reason,
        resident=Scope(order(Status.APPROVED), (FOREIGN_ORDER, order(Status.SUBMITTED, placer="r2"))),
        volunteer=Scope(order(Status.SUBMITTED, placer="v11a", for_resident="r2"), (FOREIGN_ORDER,)),
        admin=_admin(Status.APPROVED),
    ),
    # --- orders: 签到核验 ---
    "POST /orders/{order_id}/confirm-presence": Rule(body=_reason, admin=_admin(Status.ACCEPTED)),
    # The code is for whoever placed the order (or is served by it), not the volunteer holding it.
    "GET /orders/{order_id}/presence-code": Rule(
        resident=Scope(order(Status.ACCEPTED), (order(Status.ACCEPTED, "zhan21"),)),
        volunteer=Scope(
            order(Status.ACCEPTED, placer="v11a", for_resident="r2", holder="v11b"),
            (order(Status.ACCEPTED, "zhan21"),),
        ),
        admin=Scope(
            order(Status.ACCEPTED, placer="suo1_admin", for_resident="r2"), (order(Status.ACCEPTED, "zhan21"),)
        ),
    ),
    # --- 活动招募: staff of the subtree; volunteers of the activity's unit's subtree ---
    "GET /admin/activities/{activity_id}": Rule(admin=Scope(activity("zhan11"), (activity("zhan21"),))),
    "POST /admin/activities/{activity_id}/cancel": Rule(
        body=_reason, admin=Scope(activity("zhan11"), (activity("zhan21"),))
    ),
    "PATCH /admin/activities/{activity_id}": Rule(
        body=lambda world: {"title": "矩阵测试"}, admin=Scope(activity("zhan11"), (activity("zhan21"),))
    ),
    "PATCH /admin/activity-slots/{slot_id}": Rule(
        body=lambda world: {"capacity": 5}, admin=Scope(activity_slot("zhan11"), (activity_slot("zhan21"),))
    ),
    "GET /admin/activity-slots/{slot_id}/signups": Rule(
        admin=Scope(activity_slot("zhan11"), (activity_slot("zhan21"),))
    ),
    "GET /admin/activity-slots/{slot_id}/presence-code": Rule(
        admin=Scope(activity_slot("zhan11"), (activity_slot("zhan21"),))
    ),
    "POST /admin/activity-signups/{signup_id}/confirm-presence": Rule(
        body=_reason, admin=Scope(activity_signup("zhan11"), (activity_signup("zhan21"),))
    ),
    "GET /activities/{activity_id}": Rule(volunteer=Scope(activity("zhan11"), (activity("zhan21"),))),
    "POST /activity-slots/{slot_id}/signup": Rule(volunteer=Scope(activity_slot("zhan11"), (activity_slot("zhan21"),))),
    "POST /activity-signups/{signup_id}/cancel": Rule(
        volunteer=Scope(activity_signup("zhan11"), (activity_signup("zhan21"),))
    ),
    "POST /activity-signups/{signup_id}/check-in": Rule(
        body=_empty, volunteer=Scope(activity_signup("zhan11"), (activity_signup("zhan21"),))
    ),
    "POST /activity-signups/{signup_id}/check-out": Rule(
        body=_empty,
        volunteer=Scope(activity_signup("zhan11", checked_in=True), (activity_signup("zhan21", checked_in=True),)),
    ),
    # --- admin: dispatch support, ledger, 回访 ---
    "GET /admin/orders/{order_id}/candidates": Rule(admin=_admin(Status.APPROVED)),
    "POST /admin/orders/{order_id}/hours": Rule(
        # Within the round's window (check-in → completion: half an hour here), not what was reported.
        body=lambda w: {"volunteer_id": w.volunteers["v11a"], "hours": "0.3", "reason": "核减"},
        admin=Scope(order(Status.COMPLETED), (order(Status.COMPLETED, "zhan21"),)),
    ),
    "POST /admin/orders/{order_id}/followup": Rule(
        body=lambda w: {"note": "已电话回访"},
        admin=Scope(order(Status.RATED, stars=1), (order(Status.RATED, "zhan21", stars=1),)),
    ),
    # --- admin: units and their dispatch policy ---
    "GET /admin/units/{unit_id}": Rule(admin=Scope(fixed("units", "zhan11"), UNIT_OUTSIDE)),
    "PATCH /admin/units/{unit_id}": Rule(
        body=lambda w: {"name": "改名的站"}, admin=Scope(fixed("units", "zhan12"), UNIT_OUTSIDE)
    ),
    "GET /admin/units/{unit_id}/policy": Rule(admin=Scope(fixed("units", "zhan11"), UNIT_OUTSIDE)),
    "PUT /admin/units/{unit_id}/policy": Rule(
        body=lambda w: {"accept_minutes": 60}, admin=Scope(fixed("units", "zhan11"), UNIT_OUTSIDE)
    ),
    # --- admin: menu. Categories are shared by every unit (nothing is out of scope); only the
    # admins of the top unit edit them. ---
    "GET /admin/menu/categories/{category_id}": Rule(admin=Scope(fixed("categories", "lecture"), ())),
    "PATCH /admin/menu/categories/{category_id}": Rule(
        body=lambda w: {"sort_order": 9},
        admin=Scope(fixed("categories", "health"), (), caller="center_admin", refused=("suo1_admin",)),
    ),
    "GET /admin/menu/items/{item_id}": Rule(
        admin=Scope(fixed("items", "zhan11_health"), (fixed("items", "zhan21_only"), fixed("items", "center_lecture")))
    ),
    "PATCH /admin/menu/items/{item_id}": Rule(
        body=lambda w: {"description": "每周二上午"},
        admin=Scope(fixed("items", "suo1_auto"), (fixed("items", "zhan21_only"), fixed("items", "center_lecture"))),
    ),
    # --- admin: teams, volunteers, admins ---
    "GET /admin/teams/{team_id}": Rule(admin=Scope(fixed("teams", "team11"), (fixed("teams", "team21"),))),
    "PATCH /admin/teams/{team_id}": Rule(
        body=lambda w: {"name": "站11 宣讲队"}, admin=Scope(fixed("teams", "team11"), (fixed("teams", "team21"),))
    ),
    "PUT /admin/teams/{team_id}/members": Rule(
        body=lambda w: {"volunteer_ids": [w.volunteers["v11a"], w.volunteers["v12"]]},
        admin=Scope(fixed("teams", "team11"), (fixed("teams", "team21"),)),
    ),
    "GET /admin/teams/{team_id}/summary": Rule(admin=Scope(fixed("teams", "team11"), (fixed("teams", "team21"),))),
    "GET /admin/volunteers/{volunteer_id}": Rule(
        admin=Scope(fixed("volunteers", "v12"), (fixed("volunteers", "v21"),))
    ),
    "PATCH /admin/volunteers/{volunteer_id}": Rule(
        body=lambda w: {"skills": ["讲解", "急救"]},
        admin=Scope(fixed("volunteers", "v11b"), (fixed("volunteers", "v21"),)),
    ),
    "POST /admin/volunteers/{volunteer_id}/honor-hours": Rule(
        body=lambda w: {"hours": "2", "reason": "防汛值守"},
        admin=Scope(fixed("volunteers", "vsuo1"), (fixed("volunteers", "v21"),)),
    ),
    "POST /admin/volunteers/{volunteer_id}/points": Rule(
        body=lambda w: {"delta": 5, "reason": "表现突出"},
        admin=Scope(fixed("volunteers", "v11a"), (fixed("volunteers", "v21"),)),
    ),
    "GET /admin/volunteers/{volunteer_id}/summary": Rule(
        admin=Scope(fixed("volunteers", "v11a"), (fixed("volunteers", "v21"),))
    ),
    "GET /admin/admins/{user_id}": Rule(
        admin=Scope(fixed("users", "zhan11_admin"), (fixed("users", "zhan21_admin"), fixed("users", "center_admin")))
    ),
    "PATCH /admin/admins/{user_id}": Rule(
        body=lambda w: {"display_name": "站11 小王"},
        admin=Scope(fixed("users", "zhan12_admin"), (fixed("users", "suo2_admin"), fixed("users", "center_admin"))),
    ),
    # --- admin: 爱心超市 ---
    "GET /admin/goods/{goods_id}": Rule(admin=Scope(goods("zhan11"), (goods("zhan21"), goods("center")))),
    "PATCH /admin/goods/{goods_id}": Rule(
        body=lambda w: {"stock": 9}, admin=Scope(goods("zhan12"), (goods("zhan21"), goods("center")))
    ),
    "POST /admin/redemptions/{redemption_id}/collect": Rule(admin=Scope(redemption("zhan11"), (redemption("zhan21"),))),
    "POST /admin/redemptions/{redemption_id}/cancel": Rule(
        body=_reason, admin=Scope(redemption("zhan11"), (redemption("zhan21"),))
    ),
    # --- 常态化服务 (standing orders): residents their own, admins their subtree's; volunteers never ---
    "GET /standing-orders/{standing_id}": _standing_rule(),
    "GET /standing-orders/{standing_id}/occurrences": _standing_rule(),
    "POST /standing-orders/{standing_id}/pause": _standing_rule(),
    "POST /standing-orders/{standing_id}/resume": _standing_rule(paused=True),
    "POST /standing-orders/{standing_id}/end": _standing_rule(),
    # --- 技能与资质 ---
    "PUT /admin/menu/items/{item_id}/requirements": Rule(
        body=lambda w: {"required_skills": ["量血压"], "required_qualifications": ["急救证"]},
        admin=Scope(fixed("items", "zhan11_health"), (fixed("items", "zhan21_only"), fixed("items", "center_lecture"))),
    ),
    "GET /admin/volunteers/{volunteer_id}/qualifications": Rule(
        admin=Scope(fixed("volunteers", "v12"), (fixed("volunteers", "v21"),))
    ),
    "PUT /admin/volunteers/{volunteer_id}/qualifications": Rule(
        body=lambda w: {"kind": "急救证", "number": "JJZ-2", "expires_on": "2030-01-01"},
        admin=Scope(fixed("volunteers", "v11b"), (fixed("volunteers", "v21"),)),
    ),
    # The path's second id is left as the literal "{kind}": that is the kind these volunteers hold.
    "DELETE /admin/volunteers/{volunteer_id}/qualifications/{kind}": Rule(
        admin=Scope(qualified("v11a", "{kind}"), (qualified("v21", "{kind}"),))
    ),
    # A volunteer cancels only their own (v11a's at 站11; v21's is another volunteer's).
    "POST /volunteer/redemptions/{redemption_id}/cancel": Rule(
        body=_reason, volunteer=Scope(redemption("zhan11"), (redemption("zhan21"),))
    ),
}


# --- the tests ---------------------------------------------------------------------------------------


def test_every_route_with_an_id_has_a_rule() -> None:
    missing = sorted(set(ID_ROUTES) - set(RULES))
    stale = sorted(set(RULES) - set(ID_ROUTES))
    assert not missing, f"routes with a path id but no rule in RULES: {missing}"
    assert not stale, f"rules for routes that no longer exist: {stale}"


@pytest.mark.parametrize("route", ID_ROUTES)
async def test_authorization_matrix(world: World, route: str) -> None:
    rule = RULES.get(route)
    if rule is None:
        pytest.fail(f"{route} takes an object id but RULES has no rule for it")
    assert rule.scopes, f"{route}: a rule must let at least one role in"
    method, template = route.split(" ", 1)
    name = template[template.index("{") + 1 : template.index("}")]

    async def call(username: str, object_id: int) -> int:
        path = template.replace(f"{{{name}}}", str(object_id))
        body = rule.body(world) if rule.body is not None else None
        response = await world.client.request(method, path, json=body, headers=world.h(username))
        return response.status_code

    results: list[tuple[str, str, str, int, str]] = []  # role, caller, object, got, expected
    made: list[tuple[str, int]] = []  # objects of the allowed roles, reused to probe the refused ones
    for role, scope in rule.scopes.items():
        caller = scope.caller or CALLER[role]
        inside = await scope.inside(world)
        outside = [await make(world) for make in scope.outside]
        made += [("in scope", inside)] + [("out of scope", oid) for oid in outside]
        for refused in scope.refused:
            results.append((role, refused, f"in scope #{inside}", await call(refused, inside), "403"))
        for oid in outside:
            results.append((role, caller, f"out of scope #{oid}", await call(caller, oid), "404"))
        # Last: a successful call may move the order on.
        results.append((role, caller, f"in scope #{inside}", await call(caller, inside), "2xx"))
    for role in ROLES:
        if role not in rule.scopes:
            for what, oid in made:
                results.append((role, CALLER[role], f"{what} #{oid}", await call(CALLER[role], oid), "403"))

    def ok(got: int, expected: str) -> bool:
        return 200 <= got < 300 if expected == "2xx" else got == int(expected)

    wrong = [row for row in results if not ok(row[3], row[4])]
    table = "\n".join(f"  {r:<9} {u:<14} {o:<18} got {g}, expected {e}" for r, u, o, g, e in wrong)
    assert not wrong, f"{route}:\n{table}"
