"""statistics covering indexes

Indexes only, for ``GET /admin/stats`` and the CSV exports (``app.services.stats`` / ``exports``):
a subtree's orders of a period are read index-only from ``ix_orders_stats_cohort``, and every other
table is reached per order through a covering ``order_id`` index, so a county's year at a million
orders answers in a few hundred milliseconds instead of seconds of sequential scans (``bench/scale.py``).
``ix_order_events_counted`` holds only the events statistics count (上报, 超时, 取消); ``ix_hours_entries_honor``
only 荣誉时长.

Built ``CONCURRENTLY`` (outside the migration's transaction) so a live deployment keeps taking orders
while they build.

Revision ID: ae7284936eae
Revises: a40f32874031
Create Date: 2026-11-23 14:10:51.903782
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ae7284936eae"
down_revision: str | None = "a40f32874031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_orders_stats_cohort",
            "orders",
            ["unit_path", "created_at"],
            unique=False,
            postgresql_ops={"unit_path": "text_pattern_ops"},
            postgresql_include=["id", "status", "category_id", "accepted_at", "completed_at"],
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_order_events_counted",
            "order_events",
            ["order_id", "action"],
            unique=False,
            postgresql_include=["from_status"],
            postgresql_where=sa.text("action IN ('escalate', 'expire', 'cancel')"),
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_service_records_order_id_covering",
            "service_records",
            ["order_id"],
            unique=False,
            postgresql_include=["id", "served_count"],
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_ratings_order_id_covering",
            "ratings",
            ["order_id"],
            unique=False,
            postgresql_include=["stars"],
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_hours_entries_order_id_covering",
            "hours_entries",
            ["order_id"],
            unique=False,
            postgresql_include=["kind", "hours", "volunteer_id"],
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_hours_entries_honor",
            "hours_entries",
            ["volunteer_id", "created_at"],
            unique=False,
            postgresql_include=["hours"],
            postgresql_where=sa.text("kind = 'honor'"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table in (
            ("ix_hours_entries_honor", "hours_entries"),
            ("ix_hours_entries_order_id_covering", "hours_entries"),
            ("ix_ratings_order_id_covering", "ratings"),
            ("ix_service_records_order_id_covering", "service_records"),
            ("ix_order_events_counted", "order_events"),
            ("ix_orders_stats_cohort", "orders"),
        ):
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
