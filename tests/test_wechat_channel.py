"""The WeChat channel behaves the way WeChat does: one consent, one message; errcodes in the right
bucket (login and sending); configurable template keywords and page; stale tokens fetched again.
All over real HTTP to ``tests/wechat_standin.py``, which checks the secret and voids old tokens."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import hash_password
from app.config import NOTIFICATION_FIELDS, Settings
from app.domain import Status
from app.main import create_app
from app.models import Activity, Order, OutboxMessage, StandingOrder, User, Volunteer, WechatConsent
from app.services.activities import activity_notice
from app.services.channels import message_fields
from app.services.consents import ConsentBook
from app.services.delivery import Channel, LogChannel, Recipient, WechatSubscribeChannel, default_channels, deliver_due
from tests.helpers import lock_holder, lock_waiters
from tests.sms_standin import SDK_APP_ID, SECRET_ID, SECRET_KEY, StandInSms, serve_sms
from tests.test_standing import standing_body
from tests.wechat_standin import StandInWechat
from tests.world import World

Sessions = async_sessionmaker[AsyncSession]
TEMPLATE = "tmpl-1"


@pytest.fixture
def sms_server() -> Iterator[str]:
    yield from serve_sms()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def wechat_app(app: FastAPI, wechat_server: str, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    """The app's login and consent endpoints talking to the stand-in, template ``tmpl-1``."""
    for name, value in [
        ("wechat_base_url", wechat_server), ("wechat_appid", "wx-app"), ("wechat_secret", "wx-secret"),
        ("wechat_template_id", TEMPLATE),
    ]:  # fmt: skip
        monkeypatch.setattr(app.state.settings, name, value)
    return app


def wechat_overrides(app: FastAPI) -> dict[str, Any]:
    """The WeChat settings ``wechat_app`` gave ``app``, for another instance of the service."""
    names = ("wechat_base_url", "wechat_appid", "wechat_secret", "wechat_template_id")
    return {name: getattr(app.state.settings, name) for name in names}


def settings_for(wechat_server: str, sms_server: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "wechat_base_url": wechat_server, "wechat_appid": "wx-app", "wechat_secret": "wx-secret",
        "wechat_template_id": TEMPLATE,
    }  # fmt: skip
    if sms_server:
        values |= {
            "sms_enabled": True, "sms_endpoint": sms_server, "sms_secret_id": SECRET_ID, "sms_secret_key": SECRET_KEY,
            "sms_sdk_app_id": SDK_APP_ID, "sms_quiet_start": "00:00", "sms_quiet_end": "00:00",
            "sms_templates": {k: {"template_id": "2001", "params": ["code"]} for k in ("order.grab", "order.complete")},
        }  # fmt: skip
    return Settings(**(values | overrides))


async def give_openid(sessionmaker: Sessions, world: World, username: str, openid: str) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.id == world.users[username]).values(wechat_openid=openid))


async def consent(world: World, username: str, answer: str = "accept") -> httpx.Response:
    results = {TEMPLATE: answer, "other-template": "accept", "errMsg": "requestSubscribeMessage:ok"}
    return await world.client.post("/me/wechat/subscriptions", json={"results": results}, headers=world.h(username))


async def outbox(sessionmaker: Sessions) -> list[OutboxMessage]:
    async with sessionmaker() as session:
        return list((await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def remaining(sessionmaker: Sessions, user_id: int) -> int | None:
    async with sessionmaker() as session:
        return await session.scalar(
            select(WechatConsent.remaining).where(
                WechatConsent.user_id == user_id, WechatConsent.template_id == TEMPLATE
            )
        )


# ---- one consent, one message -------------------------------------------------------------------


async def test_the_second_message_of_an_order_goes_by_sms_once_the_consent_is_spent(
    world: World, wechat_app: FastAPI, sessionmaker: Sessions, wechat_server: str, sms_server: str,
    http: httpx.AsyncClient,
) -> None:  # fmt: skip
    await give_openid(sessionmaker, world, "r1", "openid-r1")
    granted = await consent(world, "r1")
    assert granted.status_code == 200 and granted.json() == {"template_id": TEMPLATE, "remaining": 1}
    order = await world.order_in(Status.COMPLETED)  # grab, then complete: two messages to r1
    channels = default_channels(settings_for(wechat_server, sms_server), http, sessionmaker)
    assert (await deliver_due(sessionmaker, channels)).sent == 3
    assert [s["touser"] for s in StandInWechat.sends] == ["openid-r1"]  # never met 43101
    assert StandInWechat.attempts == 1
    assert [r["body"]["TemplateParamSet"] for r in StandInSms.received] == [[order["code"]]]
    used = [(m.topic, m.channel) for m in await outbox(sessionmaker)]
    assert used == [("order.place", "log"), ("order.grab", "wechat"), ("order.complete", "sms")]
    assert await remaining(sessionmaker, world.users["r1"]) == 0


async def test_consents_are_counted_per_accept_and_a_refusal_adds_none(world: World, wechat_app: FastAPI) -> None:
    assert (await consent(world, "r1", "reject")).json()["remaining"] == 0
    for expected in (1, 2, 3):
        assert (await consent(world, "r1")).json()["remaining"] == expected
    assert (await consent(world, "r2")).json()["remaining"] == 1  # per user
    bad = await world.client.post("/me/wechat/subscriptions", json={"results": {}, "x": 1}, headers=world.h("r1"))
    assert bad.status_code == 422
    too_many = {"results": {f"t{i}": "accept" for i in range(21)}}
    assert (
        await world.client.post("/me/wechat/subscriptions", json=too_many, headers=world.h("r1"))
    ).status_code == 422
    assert (await world.client.post("/me/wechat/subscriptions", json={"results": {}})).status_code == 401
    assert (await consent(world, "r1", "ban")).json()["remaining"] == 3


async def test_one_consent_is_spent_once_by_concurrent_senders(
    world: World, sessionmaker: Sessions, wechat_server: str, wechat_app: FastAPI
) -> None:
    """Two instances (own channels, own token caches) send two messages to r1 at once, with one
    consent: WeChat receives one; the other message passes on (False: the next channel)."""
    await consent(world, "r1")
    recipient = Recipient(user_id=world.users["r1"], wechat_openid="openid-r1")
    message = OutboxMessage(topic="order.grab", payload={"code": "SD1", "status": "accepted"})
    async with httpx.AsyncClient() as http:
        senders = [
            WechatSubscribeChannel(
                http, wechat_server, "wx-app", "wx-secret", TEMPLATE, consents=ConsentBook(sessionmaker)
            )
            for _ in range(4)
        ]
        results = await asyncio.gather(*(s.send(recipient, message) for s in senders * 2))
    assert sorted(results) == [False] * 7 + [True]
    assert len(StandInWechat.sends) == 1
    assert await remaining(sessionmaker, world.users["r1"]) == 0


async def test_43101_despite_a_counted_consent_falls_back_at_once_and_clears_the_count(
    world: World, wechat_app: FastAPI, sessionmaker: Sessions, wechat_server: str, sms_server: str,
    http: httpx.AsyncClient,
) -> None:  # fmt: skip
    await give_openid(sessionmaker, world, "r1", "openid-r1")
    for _ in range(3):
        await consent(world, "r1")
    await world.order_in(Status.ACCEPTED)
    StandInWechat.send_errcodes = [43101]  # the user switched subscriptions off in WeChat
    stats = await deliver_due(
        sessionmaker, default_channels(settings_for(wechat_server, sms_server), http, sessionmaker)
    )
    assert (stats.sent, stats.retried) == (2, 0)
    grab = next(m for m in await outbox(sessionmaker) if m.topic == "order.grab")
    assert grab.channel == "sms" and "43101" in (grab.last_error or "")
    assert await remaining(sessionmaker, world.users["r1"]) == 0


# ---- sending errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("errcode", [47003, 40037, 41030])
async def test_permanent_send_errors_fall_back_at_once_and_are_never_retried(
    errcode: int, world: World, wechat_app: FastAPI, sessionmaker: Sessions, wechat_server: str, sms_server: str,
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    await give_openid(sessionmaker, world, "r1", "openid-r1")
    await consent(world, "r1")
    await world.order_in(Status.ACCEPTED)
    StandInWechat.send_errcodes = [errcode]
    channels = default_channels(settings_for(wechat_server, sms_server), http, sessionmaker)
    with caplog.at_level(logging.WARNING, logger="app.services.delivery"):
        stats = await deliver_due(sessionmaker, channels)
    assert (stats.sent, stats.retried, stats.failed) == (2, 0, 0)
    grab = next(m for m in await outbox(sessionmaker) if m.topic == "order.grab")
    assert (grab.status, grab.channel, grab.attempts) == ("sent", "sms", 1)
    assert StandInWechat.attempts == 1 and len(StandInSms.received) == 1
    assert any(str(errcode) in r.getMessage() and "invalid" in r.getMessage() for r in caplog.records)  # errmsg
    assert await remaining(sessionmaker, world.users["r1"]) == 1  # not sent: the consent is still there


async def test_without_sms_a_permanent_error_is_logged_not_retried(
    world: World, wechat_app: FastAPI, sessionmaker: Sessions, wechat_server: str, http: httpx.AsyncClient
) -> None:
    await give_openid(sessionmaker, world, "r1", "openid-r1")
    await consent(world, "r1")
    await world.order_in(Status.ACCEPTED)
    StandInWechat.send_errcodes = [47003]
    channels = default_channels(settings_for(wechat_server), http, sessionmaker)
    assert (await deliver_due(sessionmaker, channels)).retried == 0
    grab = next(m for m in await outbox(sessionmaker) if m.topic == "order.grab")
    assert grab.channel == "log" and "47003" in (grab.last_error or "")
    assert StandInWechat.attempts == 1


async def test_a_busy_wechat_is_retried(
    world: World, wechat_app: FastAPI, sessionmaker: Sessions, wechat_server: str, http: httpx.AsyncClient
) -> None:
    await give_openid(sessionmaker, world, "r1", "openid-r1")
    await consent(world, "r1")
    await world.order_in(Status.ACCEPTED)
    StandInWechat.send_errcodes = [-1]
    channels = default_channels(settings_for(wechat_server), http, sessionmaker)
    assert (await deliver_due(sessionmaker, channels)).retried == 1
    assert await remaining(sessionmaker, world.users["r1"]) == 1  # given back for the retry


async def test_a_token_voided_by_a_newer_one_is_fetched_again_once(wechat_server: str, http: httpx.AsyncClient) -> None:
    """Another tool calls ``cgi-bin/token``, which voids the token this instance holds: WeChat answers
    40001; the sender fetches the current token once and the message goes."""
    channel = WechatSubscribeChannel(http, wechat_server, "wx-app", "wx-secret", TEMPLATE)
    message = OutboxMessage(topic="order.grab", payload={"code": "SD1", "status": "accepted"})
    recipient = Recipient(user_id=None, wechat_openid="openid-r1")
    assert await channel.send(recipient, message)
    token = (await http.get(f"{wechat_server}/cgi-bin/token", params={"appid": "wx-app", "secret": "wx-secret"})).json()
    assert await channel.send(recipient, message)
    assert StandInWechat.stale_refusals == 1
    assert [s["token"] for s in StandInWechat.sends] == ["token-1", token["access_token"]]
    assert StandInWechat.forced_refreshes == 0


async def test_a_wrong_secret_gets_no_token_and_is_logged_for_the_operator(
    wechat_server: str, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    channel = WechatSubscribeChannel(http, wechat_server, "wx-app", "not-the-secret", TEMPLATE)
    message = OutboxMessage(topic="order.grab", payload={})
    with caplog.at_level(logging.ERROR), pytest.raises(Exception, match="40125"):
        await channel.send(Recipient(user_id=None, wechat_openid="openid-r1"), message)
    assert StandInWechat.sends == [] and any("40125" in r.getMessage() for r in caplog.records)


async def test_template_keywords_and_page_are_configuration(
    world: World, wechat_app: FastAPI, sessionmaker: Sessions, wechat_server: str, http: httpx.AsyncClient
) -> None:
    await give_openid(sessionmaker, world, "r1", "openid-r1")
    await consent(world, "r1")
    order = await world.order_in(Status.ACCEPTED)
    settings = settings_for(
        wechat_server,
        wechat_template_fields={"character_string7": "code", "thing9": "title", "phrase1": "status_label"},
        wechat_page="pages/orders/show?oid={order_id}&from=notice",
    )
    await deliver_due(sessionmaker, default_channels(settings, http, sessionmaker))
    [sent] = StandInWechat.sends
    assert sent["page"] == f"pages/orders/show?oid={order['id']}&from=notice"
    assert sent["data"] == {
        "character_string7": {"value": order["code"]},
        "thing9": {"value": order["title"][:20]},
        "phrase1": {"value": "已接单"},
    }


async def test_an_activity_notice_opens_the_activity_page_with_its_own_label(
    wechat_server: str, http: httpx.AsyncClient
) -> None:
    """活动取消 / 候补转正 go through the same template: the activity's id fills the activity page
    (``SIDAN_WECHAT_ACTIVITY_PAGE``), a sign-up's status gets its 中文 (已录取), the reason stays in the
    payload."""
    settings = settings_for(wechat_server, wechat_activity_page="pages/act/show?aid={activity_id}")
    [channel] = [c for c in default_channels(settings, http) if isinstance(c, WechatSubscribeChannel)]
    activity = Activity(id=77, title="重阳节义诊：为老人量血压、测血糖、讲解防诈骗知识")
    for topic, status, label in [
        ("activity.promote", "confirmed", "已录取"),
        ("activity.cancel", "cancelled", "已取消"),
    ]:
        payload = activity_notice(activity, status, reason="暴雨预警")
        assert await channel.send(Recipient(1, "openid-v"), OutboxMessage(id=1, topic=topic, payload=payload))
        sent = StandInWechat.sends[-1]
        assert sent["page"] == "pages/act/show?aid=77"
        assert sent["data"] == {
            "character_string1": {"value": "A77"},
            "thing2": {"value": activity.title[:20]},
            "phrase3": {"value": label},
        }


def test_channels_without_a_database_do_not_count() -> None:
    channels: list[Channel] = default_channels(Settings(), httpx.AsyncClient())
    assert [c.name for c in channels] == ["wechat", "log"] and isinstance(channels[-1], LogChannel)


# ---- login errcodes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errcode", "status", "retry_after"),
    [
        (-1, 503, "1"),
        (45011, 429, "60"),
        (40226, 403, None),
        (40029, 401, None),
        (40163, 401, None),
        (40013, 503, "1"),
        (40125, 503, "1"),
        (40164, 503, "1"),
    ],
)
async def test_each_login_errcode_gives_the_right_status(
    errcode: int, status: int, retry_after: str | None, world: World, wechat_app: FastAPI,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    StandInWechat.login_errcodes = [errcode]
    with caplog.at_level(logging.ERROR, logger="app.services.accounts"):
        response = await world.client.post("/auth/wechat", json={"code": "good-abc"})
    assert response.status_code == status, response.text
    assert response.headers.get("Retry-After") == retry_after
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and str(errcode) in r.getMessage()]
    assert bool(logged) == (errcode in (40013, 40125, 40164))  # configuration: the operator must act
    if status == 503 and errcode != -1:
        assert "wechat_errcode" not in response.json()["error"]["details"]  # not the user's business


async def test_a_login_with_the_wrong_secret_is_503_not_401(
    world: World, wechat_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wechat_app.state.settings, "wechat_secret", "not-the-secret")
    response = await world.client.post("/auth/wechat", json={"code": "good-abc"})
    assert response.status_code == 503
    monkeypatch.setattr(wechat_app.state.settings, "wechat_secret", "wx-secret")
    assert (await world.client.post("/auth/wechat", json={"code": "good-abc"})).status_code == 200


def test_message_fields_are_the_configurable_ones() -> None:
    assert set(message_fields(OutboxMessage(payload={}))) == NOTIFICATION_FIELDS


# ---- 手机号快速验证: a first WeChat login takes over the account registered with the phone --------------


async def roster_volunteer(sessionmaker: Sessions, world: World, phone: str) -> int:
    """A volunteer as an import leaves them: a login without password or WeChat, a profile with a phone."""
    async with sessionmaker() as session, session.begin():
        user = User(role="volunteer", unit_id=world.units["zhan11"], display_name="花名册志愿者")
        session.add(user)
        await session.flush()
        session.add(
            Volunteer(user_id=user.id, real_name="花名册志愿者", phone=phone, home_unit_id=world.units["zhan11"])
        )
        return user.id


async def wechat_login(world: World, code: str, phone_code: str | None = None) -> httpx.Response:
    body = {"code": code} | ({"phone_code": phone_code} if phone_code else {})
    return await world.client.post("/auth/wechat", json=body)


async def openids(sessionmaker: Sessions, *wanted: str) -> dict[str, int]:
    async with sessionmaker() as session:
        rows = await session.execute(select(User.wechat_openid, User.id).where(User.wechat_openid.in_(wanted)))
        return {openid: user_id for openid, user_id in rows if openid is not None}


async def test_a_first_wechat_login_with_a_verified_phone_takes_over_the_imported_volunteer(
    world: World, wechat_app: FastAPI, sessionmaker: Sessions
) -> None:
    volunteer = await roster_volunteer(sessionmaker, world, "13912345678")
    first = await wechat_login(world, "good-vol", "phone-13912345678")
    assert first.status_code == 200, first.text
    assert (first.json()["user"]["id"], first.json()["user"]["role"]) == (volunteer, "volunteer")
    token = {"Authorization": f"Bearer {first.json()['access_token']}"}
    assert (await world.client.get("/activities", headers=token)).status_code == 200  # a volunteer's page
    again = await wechat_login(world, "good-vol")  # later logins need no phone
    assert again.status_code == 200 and again.json()["user"]["id"] == volunteer

    # Another WeChat with the same (verified) phone cannot take the account over, and gets none.
    taken = await wechat_login(world, "good-other", "phone-13912345678.again")
    assert taken.status_code == 409, taken.text
    assert await openids(sessionmaker, "openid-vol", "openid-other") == {"openid-vol": volunteer}
    # A phone code works once.
    used = await wechat_login(world, "good-third", "phone-13912345678")
    assert used.status_code == 422 and used.json()["error"]["details"]["field"] == "phone_code"
    assert await openids(sessionmaker, "openid-third") == {}


async def test_a_phone_wechat_cannot_vouch_for_changes_nothing(
    world: World, wechat_app: FastAPI, sessionmaker: Sessions
) -> None:
    """Another country's number, or a code issued to another mini-program: 422 and no account; a phone
    nobody registered: the usual new resident."""
    await roster_volunteer(sessionmaker, world, "13912345678")
    foreign = await wechat_login(world, "good-a", "phone-1-2025550123")
    assert foreign.status_code == 422, foreign.text
    StandInWechat.phone_appid = "wx-someone-else"
    elsewhere = await wechat_login(world, "good-b", "phone-13912345678")
    assert elsewhere.status_code == 422, elsewhere.text
    assert await openids(sessionmaker, "openid-a", "openid-b") == {}
    StandInWechat.phone_appid = "wx-app"
    stranger = await wechat_login(world, "good-c", "phone-13588889999")
    assert stranger.status_code == 200 and stranger.json()["user"]["role"] == "resident"
    assert stranger.json()["user"]["id"] not in world.users.values()
    # A resident registered by phone (at the hotline, say) gets their WeChat the same way …
    resident = await wechat_login(world, "good-d", "phone-13900000000")
    assert resident.status_code == 200 and resident.json()["user"]["id"] == world.users["r1"]
    # … but an account someone signs in to with a password is never taken by a phone (a number that
    # changed hands): the WeChat gets a resident of its own.
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(User).where(User.id == world.users["r2"]).values(password_hash=await hash_password("pw-of-r2"))
        )
    other = await wechat_login(world, "good-e", "phone-13900000001")
    assert other.status_code == 200 and other.json()["user"]["id"] != world.users["r2"]
    assert await openids(sessionmaker, "openid-d", "openid-e") == {
        "openid-d": world.users["r1"],
        "openid-e": other.json()["user"]["id"],
    }


async def test_a_wechat_that_first_came_as_a_resident_takes_over_its_roster_volunteer(
    world: World, wechat_app: FastAPI, sessionmaker: Sessions
) -> None:
    """The WeChat opened the mini-program before the roster was imported, and got a resident. With the
    phone verified it moves to the volunteer account; the unused resident is stopped, tokens and all."""
    first = await wechat_login(world, "good-early")
    assert first.status_code == 200 and first.json()["user"]["role"] == "resident"
    early, early_token = first.json()["user"]["id"], {"Authorization": f"Bearer {first.json()['access_token']}"}
    volunteer = await roster_volunteer(sessionmaker, world, "13912345678")
    assert (await wechat_login(world, "good-early")).json()["user"]["id"] == early  # no phone: as it was
    stranger = await wechat_login(world, "good-early", "phone-13588889999")  # a phone nobody registered
    assert stranger.status_code == 200 and stranger.json()["user"]["id"] == early

    moved = await wechat_login(world, "good-early", "phone-13912345678")
    assert moved.status_code == 200, moved.text
    assert (moved.json()["user"]["id"], moved.json()["user"]["role"]) == (volunteer, "volunteer")
    assert await openids(sessionmaker, "openid-early") == {"openid-early": volunteer}
    assert (await world.client.get("/orders/mine", headers=early_token)).status_code == 401
    async with sessionmaker() as session:
        assert await session.scalar(select(User.is_active).where(User.id == early)) is False
    assert (await wechat_login(world, "good-early")).json()["user"]["id"] == volunteer  # from now on


async def test_a_resident_who_has_ordered_keeps_its_wechat_and_is_told_to_ask_staff(
    world: World, wechat_app: FastAPI, sessionmaker: Sessions
) -> None:
    first = await wechat_login(world, "good-used")
    resident, token = first.json()["user"]["id"], {"Authorization": f"Bearer {first.json()['access_token']}"}
    assert (await world.client.post("/orders", json=world.order_body(), headers=token)).status_code == 201
    volunteer = await roster_volunteer(sessionmaker, world, "13912345678")
    refused = await wechat_login(world, "good-used", "phone-13912345678")
    assert refused.status_code == 409, refused.text
    assert "工作人员" in refused.json()["error"]["message"]
    assert await openids(sessionmaker, "openid-used") == {"openid-used": resident}
    assert (await world.client.get("/orders/mine", headers=token)).status_code == 200
    async with sessionmaker() as session:
        assert await session.scalar(select(User.wechat_openid).where(User.id == volunteer)) is None


async def test_an_order_landing_while_the_resident_is_retired_keeps_the_resident(
    world: World, wechat_app: FastAPI, sessionmaker: Sessions, database_url: str
) -> None:
    """An order for the resident is being written (its transaction not yet committed) when the phone
    login comes: the login waits for it, then sees it and refuses (409); the resident keeps the WeChat."""
    first = await wechat_login(world, "good-race")
    resident = first.json()["user"]["id"]
    await roster_volunteer(sessionmaker, world, "13912345678")
    template = (await world.place("r1"))["id"]
    async with lock_holder(database_url) as (holder, transaction):
        await holder.execute(
            "CREATE TEMP TABLE copied ON COMMIT DROP AS SELECT * FROM orders WHERE id = $1;".replace(
                "$1", str(template)
            )
        )
        await holder.execute(
            "UPDATE copied SET id = nextval(pg_get_serial_sequence('orders', 'id')), code = code || '-R',"
            " resident_id = $1, placed_by_id = $1",
            resident,
        )
        await holder.execute("INSERT INTO orders SELECT * FROM copied")
        login = asyncio.create_task(wechat_login(world, "good-race", "phone-13912345678"))
        await lock_waiters(holder, 1)
        await transaction.commit()
    refused = await login
    assert refused.status_code == 409, refused.text
    assert await openids(sessionmaker, "openid-race") == {"openid-race": resident}


@pytest.mark.parametrize("what", ["order", "standing order"])
async def test_an_order_placed_while_the_resident_is_retired_is_refused(
    world: World, wechat_app: FastAPI, sessionmaker: Sessions, database_url: str, what: str
) -> None:
    """The other way round: the resident's row is held (as a phone login retiring it holds it) when its
    order (or standing order) comes. It waits, and once the resident is stopped it is refused (401),
    not written for an account nobody can sign in to any more."""
    table: type[Order] | type[StandingOrder] = Order if what == "order" else StandingOrder
    if what == "order":
        path, body = "/orders", world.order_body()
    else:
        starts = datetime.now(UTC) + timedelta(days=2)
        path, body = "/standing-orders", standing_body(world, starts, "FREQ=WEEKLY;COUNT=3")
    first = await wechat_login(world, "good-late")
    resident, token = first.json()["user"]["id"], {"Authorization": f"Bearer {first.json()['access_token']}"}
    async with lock_holder(database_url) as (holder, transaction):
        await holder.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", resident)
        placing = asyncio.create_task(world.client.post(path, json=body, headers=token))
        await lock_waiters(holder, 1)
        await holder.execute("UPDATE users SET is_active = false, wechat_openid = NULL WHERE id = $1", resident)
        await transaction.commit()
    refused = await placing
    assert refused.status_code == 401, refused.text
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).where(table.placed_by_id == resident)) == 0


async def test_a_resident_with_a_phone_or_a_password_keeps_its_wechat(
    world: World, wechat_app: FastAPI, sessionmaker: Sessions
) -> None:
    """Only the resident a first login created (no phone, no password) gives way to a verified phone: a
    resident registered with a phone, or who set a password, is an account someone keeps."""
    bound = await wechat_login(world, "good-r1", "phone-13900000000")  # r1, registered at the hotline
    assert bound.json()["user"]["id"] == world.users["r1"]
    volunteer = await roster_volunteer(sessionmaker, world, "13912345678")
    kept = await wechat_login(world, "good-r1", "phone-13912345678.1")
    assert kept.status_code == 200 and kept.json()["user"]["id"] == world.users["r1"]
    created = await wechat_login(world, "good-pw")
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(User).where(User.id == created.json()["user"]["id"]).values(password_hash=await hash_password("pw"))
        )
    with_password = await wechat_login(world, "good-pw", "phone-13912345678.2")
    assert with_password.status_code == 200 and with_password.json()["user"]["id"] == created.json()["user"]["id"]
    async with sessionmaker() as session:
        assert await session.scalar(select(User.wechat_openid).where(User.id == volunteer)) is None


async def test_staff_and_stopped_accounts_are_never_found_by_phone(
    world: World, wechat_app: FastAPI, sessionmaker: Sessions
) -> None:
    """An admin with a volunteer profile (and no password) and a stopped roster volunteer keep their
    accounts unbound: the WeChat gets a resident of its own."""
    async with sessionmaker() as session, session.begin():
        admin = await session.get(User, world.users["zhan11_admin"])
        assert admin is not None
        admin.password_hash = None
        unit = world.units["zhan11"]
        session.add(Volunteer(user_id=admin.id, real_name="站长", phone="13911110000", home_unit_id=unit))
    stopped = await roster_volunteer(sessionmaker, world, "13922220000")
    async with sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.id == stopped).values(is_active=False))
    for code, phone, account in [
        ("good-s", "phone-13911110000", world.users["zhan11_admin"]),
        ("good-t", "phone-13922220000", stopped),
    ]:
        answer = await wechat_login(world, code, phone)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["user"]["role"], answer.json()["user"]["id"] != account) == ("resident", True)
    async with sessionmaker() as session:
        bound = await session.scalars(
            select(User.wechat_openid).where(User.id.in_([world.users["zhan11_admin"], stopped]))
        )
        assert list(bound) == [None, None]


async def test_twenty_wechat_users_binding_one_volunteer_at_once_through_two_instances_bind_one(
    world: World, wechat_app: FastAPI, sessionmaker: Sessions, settings: Settings, database_url: str
) -> None:
    """The binding is a conditional UPDATE: exactly one of twenty simultaneous first logins with the same
    verified phone, half through another service instance on the same database, takes the account;
    nineteen get 409 (without the condition every one of them would)."""
    volunteer = await roster_volunteer(sessionmaker, world, "13912345678")
    other = create_app(settings.model_copy(update=wechat_overrides(wechat_app)), database_url=database_url)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(other.router.lifespan_context(other))
        transport = httpx.ASGITransport(app=other)
        second = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://test/api/v1"))
        clients = (world.client, second)
        answers = await asyncio.gather(
            *(
                clients[i % 2].post(
                    "/auth/wechat", json={"code": f"good-race{i}", "phone_code": f"phone-13912345678.{i}"}
                )
                for i in range(20)
            )
        )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 19, [a.text for a in answers]
    [winner] = [a.json()["user"]["id"] for a in answers if a.status_code == 200]
    assert winner == volunteer
    bound = await openids(sessionmaker, *(f"openid-race{i}" for i in range(20)))
    assert list(bound.values()) == [volunteer]
