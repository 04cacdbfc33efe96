"""pii access log: volunteer phones

Admins' reads of a volunteer's phone (the volunteer directory) are logged like their reads of an
order's contact phone: a row names either the order or the volunteer.

Revision ID: 2b4a4130baf1
Revises: f4ed6f0fe542
Create Date: 2026-11-23 18:14:29.472117
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2b4a4130baf1"
down_revision: str | None = "f4ed6f0fe542"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("pii_access_log", sa.Column("volunteer_id", sa.BigInteger(), nullable=True))
    op.alter_column("pii_access_log", "order_id", existing_type=sa.BIGINT(), nullable=True)
    op.create_index("ix_pii_access_log_volunteer_id", "pii_access_log", ["volunteer_id"])
    op.create_foreign_key(
        "fk_pii_access_log_volunteer_id_volunteers", "pii_access_log", "volunteers", ["volunteer_id"], ["id"]
    )
    op.create_check_constraint("subject", "pii_access_log", "(order_id IS NULL) <> (volunteer_id IS NULL)")


def downgrade() -> None:
    op.execute("DELETE FROM pii_access_log WHERE order_id IS NULL")
    op.drop_constraint(op.f("ck_pii_access_log_subject"), "pii_access_log", type_="check")
    op.drop_constraint("fk_pii_access_log_volunteer_id_volunteers", "pii_access_log", type_="foreignkey")
    op.drop_index("ix_pii_access_log_volunteer_id", table_name="pii_access_log")
    op.alter_column("pii_access_log", "order_id", existing_type=sa.BIGINT(), nullable=False)
    op.drop_column("pii_access_log", "volunteer_id")
