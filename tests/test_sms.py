"""SMS (Tencent Cloud SMS) when WeChat cannot reach someone: over real HTTP to a stand-in that checks
the TC3 signature, with the per-phone daily cap, the quiet hours and the delivery record in PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.domain import Status
from app.models import OutboxMessage, SmsDailyCount, SmsDelivery, User
from app.services.delivery import Channel, default_channels, deliver_due
from app.services.sms_channel import TencentSmsChannel, quiet_until
from app.services.sms_state import SmsBook, e164, key_from_data_key, prune_daily_counts
from tests.sms_standin import SDK_APP_ID, SECRET_ID, SECRET_KEY, StandInSms, serve_sms
from tests.world import World

Sessions = async_sessionmaker[AsyncSession]
SHANGHAI = ZoneInfo("Asia/Shanghai")
TEMPLATES: dict[str, Any] = {
    "order.grab": {"template_id": "2001", "params": ["code", "status_label"]},
    "order.complete": {"template_id": "2003", "params": ["code", "title"]},
    "order.reject": {"template_id": "2009", "params": ["code"], "urgent": True},
}
RESIDENT_PHONE = "+8613900000000"  # r1 of the test world (tests/world.py)


def shanghai(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


DAY = shanghai(2027, 1, 10, 10)  # in the future, so rows written now are due at any clock we pass


@pytest.fixture
def sms_server() -> Iterator[str]:
    yield from serve_sms()


def sms_settings(wechat_server: str, sms_server: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "wechat_base_url": wechat_server,
        "wechat_appid": "wx-app",
        "wechat_secret": "wx-secret",
        "wechat_template_id": "tmpl-1",
        "sms_enabled": True,
        "sms_endpoint": sms_server,
        "sms_secret_id": SECRET_ID,
        "sms_secret_key": SECRET_KEY,
        "sms_sdk_app_id": SDK_APP_ID,
        "sms_sign_name": "四单服务",
        "sms_templates": TEMPLATES,
    }
    return Settings(**(values | overrides))


def with_clock(channels: list[Channel], clock: Callable[[], datetime]) -> list[Channel]:
    for channel in channels:
        if isinstance(channel, TencentSmsChannel):
            channel.clock = clock
    return channels


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def channels(wechat_server: str, sms_server: str, sessionmaker: Sessions, http: httpx.AsyncClient) -> list[Channel]:
    return with_clock(default_channels(sms_settings(wechat_server, sms_server), http, sessionmaker), lambda: DAY)


async def deliveries(sessionmaker: Sessions) -> list[SmsDelivery]:
    async with sessionmaker() as session:
        return list((await session.execute(select(SmsDelivery).order_by(SmsDelivery.outbox_id))).scalars())


async def outbox(sessionmaker: Sessions) -> list[OutboxMessage]:
    async with sessionmaker() as session:
        return list((await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def test_a_resident_without_wechat_gets_a_signed_sms(
    world: World, sessionmaker: Sessions, channels: list[Channel]
) -> None:
    order = await world.order_in(Status.COMPLETED)  # r1 has no openid
    stats = await deliver_due(sessionmaker, channels)
    assert (stats.sent, stats.retried, stats.failed) == (3, 0, 0)
    assert StandInSms.rejected == []
    bodies = [r["body"] for r in StandInSms.received]
    assert [b["TemplateId"] for b in bodies] == ["2001", "2003"]
    assert all(b["PhoneNumberSet"] == [RESIDENT_PHONE] and b["SmsSdkAppId"] == SDK_APP_ID for b in bodies)
    assert bodies[0]["TemplateParamSet"] == [order["code"], "已接单"]
    assert bodies[1]["TemplateParamSet"] == [order["code"], order["title"]]
    assert bodies[0]["SignName"] == "四单服务"
    channels_used = [(m.topic, m.channel) for m in await outbox(sessionmaker)]
    assert channels_used == [("order.place", "log"), ("order.grab", "sms"), ("order.complete", "sms")]
    records = await deliveries(sessionmaker)
    assert [(r.kind, r.template_id, r.state, r.attempts) for r in records] == [
        ("order.grab", "2001", "sent", 1),
        ("order.complete", "2003", "sent", 1),
    ]
    assert [r.provider_serial for r in records] == ["2433:1", "2433:2"]
    assert records[0].phone == RESIDENT_PHONE and records[0].phone_masked == "139****0000"
    async with sessionmaker() as session:  # the number is encrypted at rest, like every phone
        stored = await session.scalar(text("SELECT phone FROM sms_deliveries LIMIT 1"))
    assert str(stored).startswith("enc2:") and "13900000000" not in str(stored)


async def test_an_order_placed_for_someone_without_an_account_texts_its_contact_phone(
    world: World, sessionmaker: Sessions, channels: list[Channel]
) -> None:
    """代点单 for an elderly resident with no account: the resident-side notices reach the order's
    contact phone, not the staff member who placed it."""
    order = await world.place("zhan11_admin", contact_phone="13812345678")
    assert order["resident_id"] is None
    await world.ok("zhan11_admin", order["id"], "approve")
    await world.ok("zhan11_admin", order["id"], "publish")
    await world.ok("v11a", order["id"], "grab")
    await deliver_due(sessionmaker, channels)
    assert [r["body"]["PhoneNumberSet"] for r in StandInSms.received] == [["+8613812345678"]]
    grab = next(m for m in await outbox(sessionmaker) if m.topic == "order.grab")
    assert (grab.recipient_user_id, grab.channel) == (world.users["zhan11_admin"], "sms")


async def test_a_request_with_a_bad_signature_is_refused_and_recorded_failed(
    world: World, sessionmaker: Sessions, wechat_server: str, sms_server: str, http: httpx.AsyncClient
) -> None:
    settings = sms_settings(wechat_server, sms_server, sms_secret_key="not-the-secret")
    channels = with_clock(default_channels(settings, http, sessionmaker), lambda: DAY)
    await world.order_in(Status.ACCEPTED)
    stats = await deliver_due(sessionmaker, channels)
    assert StandInSms.rejected == ["AuthFailure.SignatureFailure"] and StandInSms.received == []
    assert (stats.sent, stats.retried) == (2, 0)  # permanent: the log took it at once, no retry
    [record] = await deliveries(sessionmaker)
    assert (record.state, record.error_code) == ("failed", "AuthFailure.SignatureFailure")
    grab = next(m for m in await outbox(sessionmaker) if m.topic == "order.grab")
    assert grab.channel == "log" and "AuthFailure.SignatureFailure" in (grab.last_error or "")
    async with sessionmaker() as session:  # what was not sent does not count against the cap
        assert await session.scalar(select(func.sum(SmsDailyCount.sent))) == 0


async def test_provider_errors_transient_are_retried_permanent_are_not(
    world: World, sessionmaker: Sessions, channels: list[Channel]
) -> None:
    await world.order_in(Status.ACCEPTED)
    StandInSms.fail_next = ["InternalError.Timeout"]
    first = await deliver_due(sessionmaker, channels)
    assert first.retried == 1
    [record] = await deliveries(sessionmaker)
    assert (record.state, record.error_code) == ("failed", "InternalError.Timeout")
    later = datetime.now(UTC) + timedelta(minutes=5)  # past the backoff
    assert (await deliver_due(sessionmaker, channels, now=later)).sent == 1
    [record] = await deliveries(sessionmaker)
    assert (record.state, record.attempts, record.error_code) == ("sent", 2, None)

    await world.order_in(Status.ACCEPTED)
    StandInSms.status_codes = ["LimitExceeded.PhoneNumberDailyLimit"]  # Tencent's own cap: no retry today
    again = await deliver_due(sessionmaker, channels, now=later)
    assert (again.sent, again.retried) == (2, 0)
    assert (await deliveries(sessionmaker))[-1].error_code == "LimitExceeded.PhoneNumberDailyLimit"


async def test_the_daily_cap_holds_for_concurrent_senders_of_several_instances(
    world: World, sessionmaker: Sessions, wechat_server: str, sms_server: str
) -> None:
    """Twelve messages to one phone (r1's), sent by four senders at once, each with its
    own channels as a separate instance would have: three SMS go out, nine are recorded capped."""
    async with sessionmaker() as session, session.begin():
        session.add_all(
            OutboxMessage(
                topic="order.grab", recipient_user_id=world.users["r1"],
                payload={"code": f"SD{i}", "status": "accepted"},
            )
            for i in range(12)
        )  # fmt: skip
    settings = sms_settings(wechat_server, sms_server, sms_daily_cap_per_phone=3)
    async with httpx.AsyncClient() as http:
        instances = [with_clock(default_channels(settings, http, sessionmaker), lambda: DAY) for _ in range(4)]
        results = await asyncio.gather(*(deliver_due(sessionmaker, c, batch=3) for c in instances))
    assert sum(r.sent for r in results) == 12
    assert len(StandInSms.received) == 3
    states = [r.state for r in await deliveries(sessionmaker)]
    assert sorted(states) == ["capped"] * 9 + ["sent"] * 3
    async with sessionmaker() as session:
        assert await session.scalar(select(SmsDailyCount.sent)) == 3


async def test_the_cap_counts_in_the_database_under_a_burst(sessionmaker: Sessions, settings: Settings) -> None:
    book = SmsBook(sessionmaker, key_from_data_key(settings.data_key_list[0]), daily_cap=5)
    others = [SmsBook(sessionmaker, book.secret, daily_cap=5) for _ in range(3)]
    day = DAY.astimezone(SHANGHAI).date()
    taken = await asyncio.gather(*(b.take_slot(RESIDENT_PHONE, day) for b in [book, *others] * 10))
    assert taken.count(True) == 5
    assert await book.take_slot("+8613700000001", day)  # another phone has its own cap
    async with sessionmaker() as session:  # counted by a keyed hash, never the number
        keys = list((await session.execute(select(SmsDailyCount.phone_key))).scalars())
    assert all("139" not in k and len(k) == 64 for k in keys)


async def test_quiet_hours_defer_non_urgent_kinds_and_let_urgent_ones_through(
    world: World, sessionmaker: Sessions, channels: list[Channel]
) -> None:
    night = shanghai(2027, 1, 10, 23, 30)
    with_clock(channels, lambda: night)
    await world.order_in(Status.ACCEPTED)
    rejected = await world.order_in(Status.REJECTED)  # reject is configured urgent
    stats = await deliver_due(sessionmaker, channels)
    assert (stats.sent, stats.deferred, stats.retried) == (3, 1, 0)  # two admins' (log) and the rejection
    assert [r["body"]["TemplateId"] for r in StandInSms.received] == ["2009"]
    assert StandInSms.received[0]["body"]["TemplateParamSet"] == [rejected["code"]]
    grab = next(m for m in await outbox(sessionmaker) if m.topic == "order.grab")
    morning = shanghai(2027, 1, 11, 8)
    assert (grab.status, grab.attempts, grab.next_attempt_at) == ("pending", 0, morning)  # deferred, not dropped
    states = {r.kind: r.state for r in await deliveries(sessionmaker)}
    assert states == {"order.grab": "deferred", "order.reject": "sent"}
    just_before = shanghai(2027, 1, 11, 7, 59)
    assert (await deliver_due(sessionmaker, channels, now=just_before)).sent == 0
    with_clock(channels, lambda: morning)
    assert (await deliver_due(sessionmaker, channels, now=morning)).sent == 1
    assert [r["body"]["TemplateId"] for r in StandInSms.received] == ["2009", "2001"]
    assert {r.kind: r.state for r in await deliveries(sessionmaker)} == {"order.grab": "sent", "order.reject": "sent"}


def test_quiet_hours_bounds() -> None:
    start, end = time(21), time(8)
    assert quiet_until(shanghai(2027, 1, 10, 20, 59), SHANGHAI, start, end) is None
    assert quiet_until(shanghai(2027, 1, 10, 21), SHANGHAI, start, end) == shanghai(2027, 1, 11, 8)
    assert quiet_until(shanghai(2027, 1, 11, 3), SHANGHAI, start, end) == shanghai(2027, 1, 11, 8)
    assert quiet_until(shanghai(2027, 1, 11, 8), SHANGHAI, start, end) is None
    assert quiet_until(shanghai(2027, 1, 11, 13), SHANGHAI, time(12), time(14)) == shanghai(2027, 1, 11, 14)
    assert quiet_until(shanghai(2027, 1, 11, 13), SHANGHAI, time(12), time(12)) is None  # none configured


def test_numbers_sms_can_reach() -> None:
    assert e164("138-1234-5678") == e164("+86 13812345678") == "+8613812345678"
    assert e164("0571-8888888") is None and e164("12345") is None
    assert e164("+85291234567") == "+85291234567"


async def test_sms_is_off_by_default_and_sends_nothing(
    world: World, sessionmaker: Sessions, wechat_server: str, sms_server: str, http: httpx.AsyncClient
) -> None:
    defaults = Settings()
    assert defaults.sms_enabled is False
    settings = sms_settings(wechat_server, sms_server, sms_enabled=False)
    channels = default_channels(settings, http, sessionmaker)
    assert [c.name for c in channels] == ["wechat", "log"]
    await world.order_in(Status.COMPLETED)
    assert (await deliver_due(sessionmaker, channels)).sent == 3
    assert StandInSms.received == [] and StandInSms.rejected == []
    assert await deliveries(sessionmaker) == []
    with pytest.raises(ValidationError, match="SIDAN_SMS_SECRET_ID"):
        Settings(sms_enabled=True)


async def test_a_kind_without_a_template_and_a_user_without_a_phone_skip_sms(
    world: World, sessionmaker: Sessions, channels: list[Channel]
) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.id == world.users["r1"]).values(phone=None))
    await world.order_in(Status.ACCEPTED)  # r1 has no phone: the order's contact phone stands in
    await deliver_due(sessionmaker, channels)
    assert [r["body"]["PhoneNumberSet"] for r in StandInSms.received] == [["+8613812345678"]]
    assert "order.place" not in {r.kind for r in await deliveries(sessionmaker)}  # no template: never by SMS


async def test_an_unreachable_provider_holds_up_no_transition_and_is_retried(
    world: World, sessionmaker: Sessions, wechat_server: str, http: httpx.AsyncClient
) -> None:
    settings = sms_settings(wechat_server, "http://127.0.0.1:9/")
    channels = with_clock(default_channels(settings, http, sessionmaker), lambda: DAY)
    order = await world.order_in(Status.COMPLETED)
    assert (await world.ok("r1", order["id"], "rate", {"stars": 5}))["status"] == "rated"
    stats = await deliver_due(sessionmaker, channels)
    assert stats.retried == 2  # grab and complete wait for the provider (rate notifies no one)
    assert {r.state for r in await deliveries(sessionmaker)} == {"failed"}
    async with sessionmaker() as session:  # slots of unsent messages were given back
        assert await session.scalar(select(func.sum(SmsDailyCount.sent))) == 0


async def test_counts_of_past_days_are_pruned(sessionmaker: Sessions) -> None:
    today = DAY.astimezone(SHANGHAI).date()
    async with sessionmaker() as session, session.begin():
        session.add_all(SmsDailyCount(phone_key=f"k{i}", day=today - timedelta(days=i), sent=1) for i in range(4))
    await prune_daily_counts(sessionmaker, today)
    async with sessionmaker() as session:
        days = sorted((await session.execute(select(SmsDailyCount.day))).scalars())
    assert days == [today - timedelta(days=1), today]


def test_templates_name_only_known_fields() -> None:
    with pytest.raises(ValidationError, match="unknown field"):
        Settings(sms_templates={"order.grab": {"template_id": "1", "params": ["cod"]}})
    with pytest.raises(ValidationError, match="unknown field"):
        Settings(wechat_template_fields={"thing2": "titel"})
    with pytest.raises(ValidationError, match="SIDAN_SMS_TIMEZONE"):
        Settings(sms_timezone="Mars/Base")
