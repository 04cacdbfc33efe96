"""订阅消息授权计数: WeChat allows one subscribe message per consent (一次性订阅消息).

The mini-program reports each consent it obtained (``wx.requestSubscribeMessage`` answered
``accept``) to ``POST /me/wechat/subscriptions``; the sender spends one per message. Both are single
statements on ``wechat_consents``: a conditional ``UPDATE … WHERE remaining > 0`` spends one, so two
senders (in one process or many) never spend the same consent, and a message without one goes to
the next channel instead of meeting WeChat's 43101.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import WechatConsent

MAX_REMAINING = 100  # more consents than any one resident will be sent messages about in a while


async def grant(session: AsyncSession, user_id: int, template_id: str, count: int = 1) -> int:
    """Add ``count`` consents (capped at ``MAX_REMAINING``); returns how many are left."""
    values = {"user_id": user_id, "template_id": template_id, "remaining": min(count, MAX_REMAINING)}
    statement = insert(WechatConsent).values(values)
    upsert = statement.on_conflict_do_update(
        index_elements=[WechatConsent.user_id, WechatConsent.template_id],
        set_={
            "remaining": func.least(WechatConsent.remaining + statement.excluded.remaining, MAX_REMAINING),
            "updated_at": func.now(),
        },
    ).returning(WechatConsent.remaining)
    return int((await session.execute(upsert)).scalar_one())


@dataclass(frozen=True, slots=True)
class ConsentBook:
    """The sender's side: spend one, give one back (the send failed), or none left (WeChat said 43101)."""

    sessionmaker: async_sessionmaker[AsyncSession]

    async def take(self, user_id: int, template_id: str) -> bool:
        return await self._change(user_id, template_id, WechatConsent.remaining - 1, only_if_left=True)

    async def give_back(self, user_id: int, template_id: str) -> None:
        await self._change(user_id, template_id, func.least(WechatConsent.remaining + 1, MAX_REMAINING))

    async def exhaust(self, user_id: int, template_id: str) -> None:
        await self._change(user_id, template_id, 0)

    async def _change(self, user_id: int, template_id: str, value: object, *, only_if_left: bool = False) -> bool:
        statement = update(WechatConsent).where(
            WechatConsent.user_id == user_id, WechatConsent.template_id == template_id
        )
        if only_if_left:
            statement = statement.where(WechatConsent.remaining > 0)
        async with self.sessionmaker() as session, session.begin():
            result = await session.execute(
                statement.values(remaining=value, updated_at=func.now()).returning(WechatConsent.user_id)
            )
            return result.first() is not None
