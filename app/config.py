"""Settings: one pydantic-settings class, read from the environment (prefix ``SIDAN_``)."""

from __future__ import annotations

from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.fernet import Fernet
from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.crypto import DEV_DATA_KEY

DEFAULT_TOKEN_SECRET = "sidan-dev-secret-change-me-0123456789abcdef"


# What a notification template may name (``app.services.channels.message_fields``).
NOTIFICATION_FIELDS = frozenset({"code", "title", "status", "status_label", "action", "order_id", "activity_id"})


def _known_fields(names: list[str], setting: str) -> None:
    unknown = sorted(set(names) - NOTIFICATION_FIELDS)
    if unknown:
        raise ValueError(f"{setting}: unknown field(s) {unknown}; known: {sorted(NOTIFICATION_FIELDS)}")


class SmsTemplate(BaseModel):
    """One SMS template (短信模板) approved in the Tencent Cloud console: its id, the notification fields
    filling its ``{1}``, ``{2}`` … in order, and whether it may be sent during the quiet hours."""

    template_id: str = Field(min_length=1)
    params: list[str] = []
    urgent: bool = False

    @field_validator("params")
    @classmethod
    def _known_params(cls, value: list[str]) -> list[str]:
        _known_fields(value, "SIDAN_SMS_TEMPLATES")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIDAN_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    # ``DATABASE_URL`` (the conventional name) or ``SIDAN_DATABASE_URL``; empty = embedded PostgreSQL.
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("SIDAN_DATABASE_URL", "DATABASE_URL"))
    # Statistics and exports read here when set (a streaming replica; read-only is fine), else the main one.
    read_database_url: str | None = None
    data_dir: Path = Path(".sidan")
    # A fixed pool: SQLAlchemy closes an overflow connection as soon as it is returned, so under a
    # burst every request past the pool size paid for a new connection (connect, TLS attempt, type
    # introspection, every statement prepared again): throughput fell by more than half.
    db_pool_size: int = 10
    db_max_overflow: int = 0
    db_statement_timeout_ms: int = 15_000
    db_lock_timeout_ms: int = 5_000

    # ``json``: one JSON object per line (request id, user id, order id; for log collectors);
    # ``text``: for a human at a terminal. Phone numbers are masked either way.
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"

    # Abuse limits: request bodies, logins (per account and per client address), orders per resident.
    max_body_bytes: int = 1_048_576
    login_failures_per_account: int = 5
    login_attempts_per_address: int = 30
    login_window_seconds: int = 15 * 60
    resident_orders_per_hour: int = Field(default=10, ge=1)

    # Fernet keys for personal data at rest, comma-separated; the first encrypts, all decrypt (rotation).
    data_keys: str = DEV_DATA_KEY
    # Key of the phones' lookup hash (a Fernet-format key); unset: derived from the last data key.
    lookup_key: str | None = None

    # Roster imports (导入): the upload's size (instead of max_body_bytes, on the import routes only)
    # and its data rows.
    import_max_bytes: int = Field(default=10 * 1_048_576, ge=1)
    import_max_rows: int = Field(default=20_000, ge=1)

    token_secret: str = DEFAULT_TOKEN_SECRET
    token_ttl_minutes: int = 12 * 60
    # The dev/test token endpoint (POST /api/v1/auth/dev-token); never mounted in production.
    enable_dev_token: bool = False

    wechat_base_url: str = "https://api.weixin.qq.com"
    wechat_appid: str = "wx-demo-appid"
    wechat_secret: str = "wx-demo-secret"
    wechat_timeout_seconds: float = 5.0

    # 签到码 (app.services.presence): the length of a code's time window; a code is valid in its own
    # window and the next, so for 1–2 windows after it is shown.
    presence_code_seconds: int = Field(default=120, ge=30, le=3600)
    # 签到码 a volunteer may submit per order (or activity sign-up) in 15 minutes, then 429: 10⁶ codes.
    presence_code_attempts: int = Field(default=5, ge=1, le=100)

    # ``POST /orders/{id}/{action}`` parsed below FastAPI's routing (``app.lane``: transport only, the
    # same parsing and ``apply``); off: every request goes through FastAPI's endpoint.
    action_lane: bool = True

    # The background worker (deadline sweeper + notification sender) inside ``sidan serve``.
    run_worker: bool = True
    worker_interval_seconds: float = 5.0
    wechat_template_id: str = "sidan-order-status"
    # The subscribe message's keywords (as the template in the WeChat console names them) → the
    # notification's field (``code``, ``title``, ``status_label``, ``action``, ``order_id``), and the
    # mini-program page it opens (``{order_id}`` is filled in).
    wechat_template_fields: dict[str, str] = {
        "character_string1": "code",
        "thing2": "title",
        "phrase3": "status_label",
    }
    wechat_page: str = "pages/order/detail?id={order_id}"
    # The page an activity's notification (活动取消, 候补转正) opens (``{activity_id}`` is filled in).
    wechat_activity_page: str = "pages/activity/detail?id={activity_id}"
    # Count subscription consents (POST /me/wechat/subscriptions) and send only while one is left.
    wechat_count_consents: bool = True

    # 短信 (Tencent Cloud SMS, API 3.0) when WeChat cannot reach someone; off by default. See README
    # "Notifications: WeChat and SMS".
    sms_enabled: bool = False
    sms_endpoint: str = "https://sms.tencentcloudapi.com"
    sms_region: str = "ap-guangzhou"
    sms_secret_id: str = ""
    sms_secret_key: str = ""
    sms_sdk_app_id: str = ""
    sms_sign_name: str = ""
    sms_timeout_seconds: float = 5.0
    # kind (outbox topic, e.g. ``order.accept``) → {"template_id", "params": [field, ...], "urgent"};
    # a kind not listed is never sent by SMS.
    sms_templates: dict[str, SmsTemplate] = {}
    sms_daily_cap_per_phone: int = Field(default=5, ge=1)
    # 免打扰: non-urgent kinds wait for the end of the quiet hours (local time in ``sms_timezone``).
    sms_quiet_start: time = time(21, 0)
    sms_quiet_end: time = time(8, 0)
    sms_timezone: str = "Asia/Shanghai"

    # 常态化服务: each occurrence of a standing order is placed this long before it (a standing order may
    # set its own lead time).
    standing_order_lead_hours: int = Field(default=24, ge=0, le=14 * 24)
    # 时长证明: the public address printed on certificates (where the verification page is reached), and
    # how many verification-code checks one client address may make per window (guessing is throttled).
    public_base_url: str = "http://127.0.0.1:8000"
    certificate_checks_per_address: int = Field(default=30, ge=1)
    certificate_check_window_seconds: int = Field(default=15 * 60, ge=1)

    @field_validator("data_keys")
    @classmethod
    def _valid_fernet_keys(cls, value: str) -> str:
        keys = [k.strip() for k in value.split(",") if k.strip()]
        if not keys:
            raise ValueError("SIDAN_DATA_KEYS needs at least one key")
        for key in keys:
            try:
                Fernet(key)
            except ValueError as exc:
                raise ValueError("SIDAN_DATA_KEYS: each key must be a Fernet key (Fernet.generate_key())") from exc
        return value

    @field_validator("wechat_template_fields")
    @classmethod
    def _known_keyword_sources(cls, value: dict[str, str]) -> dict[str, str]:
        _known_fields(list(value.values()), "SIDAN_WECHAT_TEMPLATE_FIELDS")
        return value

    @field_validator("sms_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"SIDAN_SMS_TIMEZONE: unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _sms_needs_credentials(self) -> Settings:
        if self.sms_enabled and not (self.sms_secret_id and self.sms_secret_key and self.sms_sdk_app_id):
            raise ValueError(
                "SIDAN_SMS_ENABLED needs SIDAN_SMS_SECRET_ID, SIDAN_SMS_SECRET_KEY and SIDAN_SMS_SDK_APP_ID"
            )
        return self

    @field_validator("lookup_key")
    @classmethod
    def _valid_lookup_key(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            try:
                Fernet(value.strip())
            except ValueError as exc:
                raise ValueError("SIDAN_LOOKUP_KEY must be a Fernet key (Fernet.generate_key())") from exc
        return value

    @property
    def data_key_list(self) -> list[str]:
        return [k.strip() for k in self.data_keys.split(",") if k.strip()]

    @model_validator(mode="after")
    def _refuse_default_secret_in_production(self) -> Settings:
        if self.environment == "production":
            if self.token_secret == DEFAULT_TOKEN_SECRET or len(self.token_secret) < 32:
                raise ValueError("SIDAN_TOKEN_SECRET must be set to a random value of 32+ characters in production")
            if self.data_keys == DEV_DATA_KEY:
                raise ValueError("SIDAN_DATA_KEYS must be set to your own Fernet key(s) in production")
            if self.enable_dev_token:
                raise ValueError("SIDAN_ENABLE_DEV_TOKEN is not allowed in production")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
