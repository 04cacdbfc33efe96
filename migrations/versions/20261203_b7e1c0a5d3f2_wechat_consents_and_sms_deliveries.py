"""WeChat subscription consents (one message per consent), SMS deliveries and the per-phone daily cap.

Revision ID: b7e1c0a5d3f2
Revises: 5e1f0c2a7b9d
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7e1c0a5d3f2"
down_revision: str | None = "5e1f0c2a7b9d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sms_daily_counts",
        sa.Column("phone_key", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.CheckConstraint("sent >= 0", name=op.f("ck_sms_daily_counts_sent")),
        sa.PrimaryKeyConstraint("phone_key", "day", name=op.f("pk_sms_daily_counts")),
    )
    op.create_table(
        "sms_deliveries",
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("phone", sa.String(length=255), nullable=False),
        sa.Column("phone_masked", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("template_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("provider_serial", sa.String(length=128), nullable=True),
        sa.Column("error_code", sa.String(length=128), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "state IN ('queued', 'sent', 'failed', 'deferred', 'capped')", name=op.f("ck_sms_deliveries_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_deliveries")),
        sa.UniqueConstraint("outbox_id", name=op.f("uq_sms_deliveries_outbox_id")),
    )
    op.create_index("ix_sms_deliveries_created_at", "sms_deliveries", ["created_at"], unique=False)
    op.create_table(
        "wechat_consents",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("template_id", sa.String(length=128), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("remaining >= 0", name=op.f("ck_wechat_consents_remaining")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_wechat_consents_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", "template_id", name=op.f("pk_wechat_consents")),
    )


def downgrade() -> None:
    op.drop_table("wechat_consents")
    op.drop_index("ix_sms_deliveries_created_at", table_name="sms_deliveries")
    op.drop_table("sms_deliveries")
    op.drop_table("sms_daily_counts")
