from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

TemplateId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Answer = Annotated[str, StringConstraints(max_length=64)]


class SubscriptionsIn(BaseModel):
    """``wx.requestSubscribeMessage``'s success result, as the mini-program received it: each template
    id → ``accept`` / ``reject`` / ``ban`` / ``filter`` (``errMsg`` and other keys are ignored)."""

    model_config = ConfigDict(extra="forbid")

    results: Annotated[dict[TemplateId, Answer], Field(max_length=20)]


class SubscriptionOut(BaseModel):
    template_id: str
    remaining: int = Field(description="subscribe messages the user still allows for this template")
