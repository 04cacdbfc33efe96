"""Activities can be cancelled by staff: who, when and why.

Revision ID: f6d3b8a2c4e1
Revises: e5c2a7d3b1f8
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "f6d3b8a2c4e1"
down_revision: str | None = "e5c2a7d3b1f8"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("activities", sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("activities", sa.Column("cancelled_by_id", sa.BigInteger(), nullable=True))
    op.add_column("activities", sa.Column("cancel_reason", sa.Text(), nullable=True))
    op.create_foreign_key(
        op.f("fk_activities_cancelled_by_id_users"), "activities", "users", ["cancelled_by_id"], ["id"]
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_activities_cancelled_by_id_users"), "activities", type_="foreignkey")
    op.drop_column("activities", "cancel_reason")
    op.drop_column("activities", "cancelled_by_id")
    op.drop_column("activities", "cancelled_at")
