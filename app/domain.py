"""Domain vocabulary shared by models, services and schemas (see the glossary in the README)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    RESIDENT = "resident"  # 群众
    VOLUNTEER = "volunteer"  # 志愿者
    ADMIN = "admin"  # 中心/所/站 工作人员
    SYSTEM = "system"  # 系统 (timers, sweeper); never a login role


LOGIN_ROLES = (Role.RESIDENT, Role.VOLUNTEER, Role.ADMIN)


class UnitLevel(StrEnum):
    PROVINCE = "province"  # 省
    CITY = "city"  # 市
    CENTER = "center"  # 新时代文明实践中心 (县/区)
    INSTITUTE = "institute"  # 新时代文明实践所 (乡镇/街道)
    STATION = "station"  # 新时代文明实践站 (村/社区)
    POINT = "point"  # 实践点
    BASE = "base"  # 实践基地


class Status(StrEnum):
    SUBMITTED = "submitted"  # 待受理
    APPROVED = "approved"  # 待派单
    DISPATCHED = "dispatched"  # 待接单
    POOLED = "pooled"  # 抢单中
    ACCEPTED = "accepted"  # 已接单
    IN_SERVICE = "in_service"  # 服务中
    COMPLETED = "completed"  # 待评价
    RATED = "rated"  # 已评价
    CLOSED = "closed"  # 已关闭 (completed, never rated)
    REJECTED = "rejected"  # 已驳回
    CANCELLED = "cancelled"  # 已取消


STATUS_LABELS: dict[Status, str] = {
    Status.SUBMITTED: "待受理",
    Status.APPROVED: "待派单",
    Status.DISPATCHED: "待接单",
    Status.POOLED: "抢单中",
    Status.ACCEPTED: "已接单",
    Status.IN_SERVICE: "服务中",
    Status.COMPLETED: "待评价",
    Status.RATED: "已评价",
    Status.CLOSED: "已关闭",
    Status.REJECTED: "已驳回",
    Status.CANCELLED: "已取消",
}


class Action(StrEnum):
    PLACE = "place"  # 点单
    APPROVE = "approve"  # 审核通过
    REJECT = "reject"  # 驳回
    ESCALATE = "escalate"  # 上报
    TRANSFER = "transfer"  # 层层派单 (下转)
    DISPATCH = "dispatch"  # 指令性派单
    PUBLISH = "publish"  # 发布抢单
    ACCEPT = "accept"  # 接单
    DECLINE = "decline"  # 退单
    GRAB = "grab"  # 抢单
    WITHDRAW = "withdraw"  # 撤回改派
    EXPIRE = "expire"  # 超时
    RELEASE = "release"  # 放弃
    CHECK_IN = "check_in"  # 签到
    CONFIRM_PRESENCE = "confirm_presence"  # 管理员确认到场 (代签到, 或核验未核验的签到)
    COMPLETE = "complete"  # 完成
    RATE = "rate"  # 评单
    AUTO_CLOSE = "auto_close"  # 超期未评, 自动关闭
    REOPEN = "reopen"  # 返工
    CANCEL = "cancel"  # 取消

    @property
    def path(self) -> str:
        """The URL segment of the action endpoint: ``check_in`` → ``check-in``."""
        return self.value.replace("_", "-")


class ActionPath(StrEnum):
    """An action as a client names it: the URL segment of ``POST /orders/{id}/{segment}``. Responses
    list the actions a caller may take (``allowed_actions``) in this spelling, ready for the URL; the
    timeline (``OrderEvent.action``) keeps the state machine's names (``check_in``)."""

    APPROVE = "approve"
    REJECT = "reject"
    ESCALATE = "escalate"
    TRANSFER = "transfer"
    DISPATCH = "dispatch"
    PUBLISH = "publish"
    ACCEPT = "accept"
    DECLINE = "decline"
    GRAB = "grab"
    WITHDRAW = "withdraw"
    RELEASE = "release"
    CHECK_IN = "check-in"
    CONFIRM_PRESENCE = "confirm-presence"
    COMPLETE = "complete"
    RATE = "rate"
    REOPEN = "reopen"
    CANCEL = "cancel"


_ENDPOINTS = {path.value: path for path in ActionPath}


def action_paths(actions: list[Action]) -> list[ActionPath]:
    """The URL segments of ``actions`` that have an endpoint (system actions have none)."""
    return [_ENDPOINTS[action.path] for action in actions if action.path in _ENDPOINTS]


class TimelineNote(StrEnum):
    """Timeline entries that are not state-machine transitions (the status stays as it is)."""

    ADJUST_HOURS = "adjust_hours"  # 时长更正
    FOLLOWUP = "followup"  # 回访


class Channel(StrEnum):
    MINIPROGRAM = "miniprogram"  # 微信小程序
    KIOSK = "kiosk"  # 点单机
    HOTLINE = "hotline"  # 热线
    OFFLINE = "offline"  # 线下
    APP = "app"  # 志愿者 App / 管理后台


class Guard(StrEnum):
    """The relation the actor must have to the order, beyond holding an allowed role."""

    NONE = "none"  # system actions; place (scope checked by the ordering service)
    ADMIN_IN_SCOPE = "admin_in_scope"  # the order's unit lies in the admin's subtree
    TARGET = "target"  # the dispatched volunteer, or a member of the dispatched team
    POOL_ELIGIBLE = "pool_eligible"  # active volunteer whose home unit lies under the order's unit
    ASSIGNEE = "assignee"  # the volunteer holding the order
    RATER = "rater"  # the resident served, or whoever placed it for them (代点单), unless they served it
    ORDERER_OR_ADMIN = "orderer_or_admin"  # cancel: the orderer, or an admin in scope


class Notify(StrEnum):
    """Who hears of a transition (an outbox row each, written in the same statement)."""

    UNIT_ADMINS = "unit_admins"  # admins of the owning unit (after the transition)
    TARGET = "target"  # the assigned volunteer or team
    RESIDENT = "resident"  # the resident and the proxy who placed the order
