"""Settings: one pydantic-settings class, read from the environment (prefix ``SIDAN_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from cryptography.fernet import Fernet
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.crypto import DEV_DATA_KEY

DEFAULT_TOKEN_SECRET = "sidan-dev-secret-change-me-0123456789abcdef"


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

    token_secret: str = DEFAULT_TOKEN_SECRET
    token_ttl_minutes: int = 12 * 60
    # The dev/test token endpoint (POST /api/v1/auth/dev-token); never mounted in production.
    enable_dev_token: bool = False

    wechat_base_url: str = "https://api.weixin.qq.com"
    wechat_appid: str = "wx-demo-appid"
    wechat_secret: str = "wx-demo-secret"
    wechat_timeout_seconds: float = 5.0

    # ``POST /orders/{id}/{action}`` parsed below FastAPI's routing (``app.lane``: transport only, the
    # same parsing and ``apply``); off: every request goes through FastAPI's endpoint.
    action_lane: bool = True

    # The background worker (deadline sweeper + notification sender) inside ``sidan serve``.
    run_worker: bool = True
    worker_interval_seconds: float = 5.0
    wechat_template_id: str = "sidan-order-status"

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
