"""Units, menu, teams, volunteers and admins as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.domain import UnitLevel
from app.schemas.common import Address, Code, Id, LongText, Name, Phone, Schema, Tag, Title


class UnitOut(Schema):
    id: int
    parent_id: int | None
    level: UnitLevel
    name: str
    code: str
    depth: int
    address: str | None
    is_active: bool


class CategoryOut(Schema):
    id: int
    name: str
    code: str
    sort_order: int


class ItemOut(Schema):
    id: int
    unit_id: int
    category_id: int
    name: str
    description: str
    auto_approve: bool
    is_active: bool
    required_skills: list[str] = Field(default_factory=list)
    required_qualifications: list[str] = Field(default_factory=list)


class MenuSection(Schema):
    category: CategoryOut
    items: list[ItemOut]


class MenuOut(Schema):
    unit_id: int
    sections: list[MenuSection]


# --- Admin directory (管理后台: 单位, 菜单, 服务队, 志愿者, 管理员) ---------------------------------

UnitName = Annotated[Title, Field(max_length=100)]
UnitAddress = Annotated[Address, Field(max_length=200)]
CategoryName = Annotated[Title, Field(max_length=50)]
ItemName = Annotated[Title, Field(max_length=100)]
TeamName = Annotated[Title, Field(max_length=100)]
Description = Annotated[LongText, Field(max_length=1000)]
SortOrder = Annotated[int, Field(ge=0, le=1_000_000)]
# Login names: ASCII letters, digits and ``_ . @ -`` so they survive every keyboard and never look alike.
Username = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.@-]{2,64}$")]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]
Skills = Annotated[list[Tag], Field(max_length=20)]
MaxOpenOrders = Annotated[int, Field(ge=0, le=100, description="接单上限: orders held at once")]
CategoryIds = Annotated[list[Id], Field(max_length=50)]
VolunteerStatus = Literal["active", "suspended"]


class Patch(BaseModel):
    """A PATCH body: absent fields stay as they are; only nullable fields accept ``null``."""

    model_config = ConfigDict(extra="forbid")

    nullable_fields: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Self:
        for name in sorted(self.model_fields_set):
            if getattr(self, name) is None and name not in self.nullable_fields:
                raise ValueError(f"{name} 不能为 null")
        return self


class UnitCreate(BaseModel):
    parent_id: Id
    level: UnitLevel
    name: UnitName
    code: Code
    address: UnitAddress | None = None


class UnitUpdate(Patch):
    nullable_fields = frozenset({"address"})

    name: UnitName | None = None
    code: Code | None = None
    address: UnitAddress | None = None
    is_active: bool | None = None


class CategoryCreate(BaseModel):
    name: CategoryName
    code: Code
    sort_order: SortOrder = 0


class CategoryUpdate(Patch):
    name: CategoryName | None = None
    code: Code | None = None
    sort_order: SortOrder | None = None


class ItemCreate(BaseModel):
    unit_id: Id
    category_id: Id
    name: ItemName
    description: Description = ""
    auto_approve: bool = False


class ItemUpdate(Patch):
    category_id: Id | None = None
    name: ItemName | None = None
    description: Description | None = None
    auto_approve: bool | None = None
    is_active: bool | None = None


class TeamCreate(BaseModel):
    unit_id: Id
    name: TeamName
    leader_volunteer_id: Id | None = Field(default=None, description="队长; also made a member")
    category_ids: CategoryIds = []


class TeamUpdate(Patch):
    nullable_fields = frozenset({"leader_volunteer_id"})

    name: TeamName | None = None
    leader_volunteer_id: Id | None = Field(default=None, description="队长; also made a member; null: none")
    category_ids: CategoryIds | None = Field(default=None, description="replaces the categories served")
    is_active: bool | None = None


class TeamMembersIn(BaseModel):
    volunteer_ids: Annotated[list[Id], Field(max_length=1000, description="the whole member list")]


class TeamOut(Schema):
    id: int
    unit_id: int
    name: str
    leader_volunteer_id: int | None
    is_active: bool
    member_ids: list[int]
    category_ids: list[int]


class VolunteerCreate(BaseModel):
    username: Username
    password: Password
    real_name: Name
    phone: Phone
    home_unit_id: Id
    skills: Skills = []
    max_open_orders: MaxOpenOrders = 3


class VolunteerUpdate(Patch):
    real_name: Name | None = None
    phone: Phone | None = None
    skills: Skills | None = None
    status: VolunteerStatus | None = Field(default=None, description="suspended: no new orders, can still log in")
    max_open_orders: MaxOpenOrders | None = None
    home_unit_id: Id | None = None
    password: Password | None = Field(default=None, description="重置密码; voids the volunteer's tokens")


class VolunteerOut(Schema):
    id: int
    user_id: int
    username: str | None
    real_name: str
    phone: str = Field(description="unmasked: only admins in scope read this")
    skills: list[str]
    home_unit_id: int
    status: VolunteerStatus
    max_open_orders: int
    created_at: datetime


class AdminCreate(BaseModel):
    username: Username
    password: Password
    unit_id: Id
    display_name: Name | None = None


class AdminUpdate(Patch):
    display_name: Name | None = None
    is_active: bool | None = Field(default=None, description="false: disabled, its tokens void at once")
    password: Password | None = Field(default=None, description="new password; voids existing tokens")


class AdminOut(Schema):
    id: int
    username: str | None
    unit_id: int | None
    display_name: str
    is_active: bool
    created_at: datetime
