"""短信的数据库一侧: whose phone a message goes to, the per-phone daily cap, and the delivery record.

Each is a short transaction of its own, committed before or after the call to the provider, so the
cap holds for every sender of every instance (a slot is taken by one upsert that refuses past the
cap) and the record shows a message as ``queued`` while it is in flight.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain import Notify
from app.models import Order, SmsDailyCount, SmsDelivery, User, Volunteer
from app.schemas.common import mask_phone
from app.workflow import ACTIONS

# The kinds the resident side hears of: for these the order's contact phone stands in for a resident
# with no phone of their own, or with no account at all (代点单 for someone without WeChat).
RESIDENT_KINDS = frozenset(
    f"order.{spec.action.value}"
    for spec in ACTIONS.values()
    if any(Notify.RESIDENT in rule.notify for rule in spec.rules.values())
)
_MOBILE = re.compile(r"^(?:\+?86)?(1\d{10})$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def e164(phone: str) -> str | None:
    """A number SMS can reach, as ``+8613812345678``; None for landlines and junk."""
    digits = re.sub(r"[\s\-()]", "", phone)
    if match := _MOBILE.match(digits):
        return f"+86{match.group(1)}"
    return digits if _E164.match(digits) and not digits.startswith("+86") else None


def phone_key(secret: bytes, phone: str) -> str:
    """A keyed hash of the number: the cap counts by it, and a database dump does not reveal it."""
    return hmac.new(secret, phone.encode(), hashlib.sha256).hexdigest()


def key_from_data_key(data_key: str) -> bytes:
    return hmac.new(base64.urlsafe_b64decode(data_key), b"sidan/sms-phone-key", hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class SmsTarget:
    """One outbox message on its way by SMS: what its delivery record names."""

    outbox_id: int
    user_id: int | None
    phone: str
    kind: str
    template_id: str


@dataclass(frozen=True, slots=True)
class SmsBook:
    sessionmaker: async_sessionmaker[AsyncSession]
    secret: bytes
    daily_cap: int

    async def phone_for(self, user_id: int | None, order_id: int | None, kind: str) -> str | None:
        """The number a message to ``user_id`` about ``order_id`` goes to by SMS: the user's own
        (account, else volunteer profile); for a resident-side kind, the order's contact phone when
        the user is the resident without a number, or the proxy who ordered for someone without an
        account (the proxy's own phone is then not the one to text)."""
        if user_id is None:
            return None
        query = (
            select(User.phone, Volunteer.phone, Order.resident_id, Order.placed_by_id, Order.contact_phone)
            .select_from(User)
            .outerjoin(Volunteer, Volunteer.user_id == User.id)
            .outerjoin(Order, Order.id == bindparam("order_id", order_id))
            .where(User.id == user_id)
        )
        async with self.sessionmaker() as session:
            row = (await session.execute(query)).first()
        if row is None:
            return None
        own_phone, volunteer_phone, resident_id, placed_by_id, contact_phone = row
        own = own_phone or volunteer_phone
        if resident_id is not None or placed_by_id is not None:
            if kind in RESIDENT_KINDS and user_id == resident_id:
                return own or contact_phone
            if kind in RESIDENT_KINDS and user_id == placed_by_id:
                return contact_phone if resident_id is None else None
        return own

    async def take_slot(self, phone: str, day: date) -> bool:
        """One of the phone's ``daily_cap`` messages of ``day``; False once they are all taken."""
        statement = insert(SmsDailyCount).values(phone_key=phone_key(self.secret, phone), day=day, sent=1)
        upsert = statement.on_conflict_do_update(
            index_elements=[SmsDailyCount.phone_key, SmsDailyCount.day],
            set_={"sent": SmsDailyCount.sent + 1},
            where=SmsDailyCount.sent < self.daily_cap,
        ).returning(SmsDailyCount.sent)
        async with self.sessionmaker() as session, session.begin():
            return (await session.execute(upsert)).first() is not None

    async def give_back_slot(self, phone: str, day: date) -> None:
        """The provider did not send it: the slot is free again."""
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(SmsDailyCount)
                .where(
                    SmsDailyCount.phone_key == phone_key(self.secret, phone),
                    SmsDailyCount.day == day,
                    SmsDailyCount.sent > 0,
                )
                .values(sent=SmsDailyCount.sent - 1)
            )

    async def record(
        self,
        target: SmsTarget,
        state: str,
        *,
        attempt: bool = False,
        serial: str | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        """The message's delivery record, created or brought to ``state``."""
        values = {
            "outbox_id": target.outbox_id,
            "user_id": target.user_id,
            "phone": target.phone,
            "phone_masked": mask_phone(target.phone.removeprefix("+86")),
            "kind": target.kind,
            "template_id": target.template_id,
            "state": state,
            "attempts": int(attempt),
            "provider_serial": serial,
            "error_code": error_code,
            "error_message": error_message[:500] if error_message else None,
        }
        statement = insert(SmsDelivery).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[SmsDelivery.outbox_id],
            set_={
                "state": statement.excluded.state,
                "template_id": statement.excluded.template_id,
                "attempts": SmsDelivery.attempts + statement.excluded.attempts,
                "provider_serial": func.coalesce(statement.excluded.provider_serial, SmsDelivery.provider_serial),
                "error_code": statement.excluded.error_code,
                "error_message": statement.excluded.error_message,
                "updated_at": func.now(),
            },
        )
        async with self.sessionmaker() as session, session.begin():
            await session.execute(statement)


async def prune_daily_counts(sessionmaker: async_sessionmaker[AsyncSession], today: date) -> None:
    """Counts of days before yesterday are spent."""
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(SmsDailyCount).where(SmsDailyCount.day < today - timedelta(days=1)))
