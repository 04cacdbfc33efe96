"""drop indexes covered by the statistics indexes

``ix_hours_entries_order_id`` is a prefix of ``ix_hours_entries_order_id_covering`` and
``ix_orders_unit_path_pattern`` of ``ix_orders_stats_cohort`` (both ``unit_path text_pattern_ops``
first): the same lookups, one index less to maintain on every write (an order transition is not a
HOT update, so it touched every index of ``orders``).

Revision ID: f4ed6f0fe542
Revises: 27831fa11a2e
Create Date: 2026-11-23 18:01:25.183505
"""

from collections.abc import Sequence

from alembic import op

revision: str = "f4ed6f0fe542"
down_revision: str | None = "27831fa11a2e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_hours_entries_order_id", table_name="hours_entries")
    op.drop_index("ix_orders_unit_path_pattern", table_name="orders")


def downgrade() -> None:
    op.create_index(
        "ix_orders_unit_path_pattern", "orders", ["unit_path"], postgresql_ops={"unit_path": "text_pattern_ops"}
    )
    op.create_index("ix_hours_entries_order_id", "hours_entries", ["order_id"])
