"""rate limit counters shared by all instances

Login attempts per account and per client address were counted in each process's memory: N instances
allowed N times the limit, and concurrent attempts all passed the check before any was counted. One
counter row per key, counted and checked by one upsert (``app.services.throttle``).

Revision ID: a1dc0a42a66e
Revises: ba057f0c4549
Create Date: 2026-12-03 18:32:58.570463
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a1dc0a42a66e"
down_revision: str | None = "ba057f0c4549"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_counters",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limit_counters")),
    )
    op.create_index("ix_rate_limit_counters_expires_at", "rate_limit_counters", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_rate_limit_counters_expires_at", table_name="rate_limit_counters")
    op.drop_table("rate_limit_counters")
