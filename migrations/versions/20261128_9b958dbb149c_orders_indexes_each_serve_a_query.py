"""orders: no index on status, unit or category alone; partial pii access log indexes

Every transition rewrites its order's row without a HOT update, adding an entry to every index of
``orders``; no query reads orders by status, unit id or category alone (see ``Order``). A PII access
log row names an order or a volunteer, so each of those two indexes only needs the rows naming one.

Revision ID: 9b958dbb149c
Revises: 33f0fff0431a
Create Date: 2026-11-28 03:12:03.404839
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9b958dbb149c"
down_revision: str | None = "33f0fff0431a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORDER_INDEXES = (
    ("ix_orders_category_id", "category_id"),
    ("ix_orders_status", "status"),
    ("ix_orders_unit_id", "unit_id"),
)
PII_INDEXES = (("ix_pii_access_log_order_id", "order_id"), ("ix_pii_access_log_volunteer_id", "volunteer_id"))


def upgrade() -> None:
    for name, _ in ORDER_INDEXES:
        op.drop_index(name, table_name="orders")
    for name, column in PII_INDEXES:
        op.drop_index(name, table_name="pii_access_log")
        op.create_index(name, "pii_access_log", [column], postgresql_where=sa.text(f"{column} IS NOT NULL"))


def downgrade() -> None:
    for name, column in PII_INDEXES:
        op.drop_index(name, table_name="pii_access_log")
        op.create_index(name, "pii_access_log", [column])
    for name, column in ORDER_INDEXES:
        op.create_index(name, "orders", [column])
