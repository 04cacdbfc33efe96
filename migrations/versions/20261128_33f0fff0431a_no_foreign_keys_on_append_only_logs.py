"""no foreign keys on the outbox, the pii access log and event actors

Every transition appends an outbox row and an event, and every transition by an admin a PII access
log row; their foreign keys cost a lookup and a ``FOR KEY SHARE`` row lock per reference on every
transition, for ids the same statement had just read (see the ``app.models`` docstring).

Revision ID: 33f0fff0431a
Revises: 2b4a4130baf1
Create Date: 2026-11-28 02:36:44.775925
"""

from collections.abc import Sequence

from alembic import op

revision: str = "33f0fff0431a"
down_revision: str | None = "2b4a4130baf1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (constraint, table, column, referenced table)
FOREIGN_KEYS = (
    ("fk_order_events_actor_id_users", "order_events", "actor_id", "users"),
    ("fk_outbox_messages_order_id_orders", "outbox_messages", "order_id", "orders"),
    ("fk_outbox_messages_recipient_user_id_users", "outbox_messages", "recipient_user_id", "users"),
    ("fk_outbox_messages_recipient_unit_id_org_units", "outbox_messages", "recipient_unit_id", "org_units"),
    ("fk_pii_access_log_order_id_orders", "pii_access_log", "order_id", "orders"),
    ("fk_pii_access_log_user_id_users", "pii_access_log", "user_id", "users"),
    ("fk_pii_access_log_volunteer_id_volunteers", "pii_access_log", "volunteer_id", "volunteers"),
)


def upgrade() -> None:
    for name, table, _, _ in FOREIGN_KEYS:
        op.drop_constraint(name, table, type_="foreignkey")


def downgrade() -> None:
    for name, table, column, referenced in FOREIGN_KEYS:
        op.create_foreign_key(name, table, referenced, [column], ["id"])
