"""outbox messages: no index on order id

Nothing looks notifications up by order; every transition's notifications took an entry in it.

Revision ID: ba057f0c4549
Revises: d36f1a1b14da
Create Date: 2026-11-28 04:40:32.998573
"""

from collections.abc import Sequence

from alembic import op

revision: str = "ba057f0c4549"
down_revision: str | None = "d36f1a1b14da"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_outbox_messages_order_id", table_name="outbox_messages")


def downgrade() -> None:
    op.create_index("ix_outbox_messages_order_id", "outbox_messages", ["order_id"], unique=False)
