"""通知: the WeChat subscription consents a user gives in the mini-program."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from app.auth import CurrentUser
from app.db import Session, transaction
from app.models import WechatConsent
from app.routers.deps import SettingsDep, errors
from app.schemas.notifications import SubscriptionOut, SubscriptionsIn
from app.services import consents

router = APIRouter(tags=["notifications"])


@router.post("/me/wechat/subscriptions", response_model=SubscriptionOut, responses=errors(401, 422))
async def record_subscriptions(
    body: SubscriptionsIn, actor: CurrentUser, session: Session, settings: SettingsDep
) -> SubscriptionOut:
    """订阅消息授权: pass what ``wx.requestSubscribeMessage`` answered. Each ``accept`` of the order
    status template allows one more message (WeChat's 一次性订阅); each message sent spends one, and
    with none left the notification goes by SMS (when switched on) instead."""
    template_id = settings.wechat_template_id
    async with transaction(session):
        if body.results.get(template_id) == "accept":
            remaining = await consents.grant(session, actor.user_id, template_id)
        else:
            remaining = (
                await session.scalar(
                    select(WechatConsent.remaining).where(
                        WechatConsent.user_id == actor.user_id, WechatConsent.template_id == template_id
                    )
                )
                or 0
            )
    return SubscriptionOut(template_id=template_id, remaining=remaining)
