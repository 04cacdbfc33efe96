from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from app.domain import Role
from app.schemas.common import Schema

# What a login names: no control characters (PostgreSQL text cannot even hold NUL).
LoginName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]


class LoginIn(BaseModel):
    username: LoginName
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class WechatLoginIn(BaseModel):
    code: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[\x21-\x7e]+$")] = Field(
        description="``wx.login()``'s code"
    )
    phone_code: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[\x21-\x7e]+$")] | None = (
        Field(
            default=None,
            description="``getPhoneNumber``'s code (手机号快速验证): on a first login (or while this WeChat has "
            "only the unused resident its first login created), the volunteer or resident account registered "
            "with that phone is bound to this WeChat (409 if another WeChat holds it)",
        )
    )


class UserOut(Schema):
    id: int
    username: str | None
    role: Role
    unit_id: int | None


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    user: UserOut


class MeOut(BaseModel):
    id: int
    username: str | None
    role: Role
    unit_id: int | None
    volunteer_id: int | None = Field(default=None, description="set for volunteers")


class PasswordChangeIn(BaseModel):
    old_password: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    new_password: Annotated[str, StringConstraints(min_length=8, max_length=256)]
