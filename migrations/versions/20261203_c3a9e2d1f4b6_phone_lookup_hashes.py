"""Phones get a lookup hash (盲索引) so imports can find a volunteer or resident by phone: one
volunteer profile per phone, one resident per phone.

Existing rows are hashed here (decrypted with ``SIDAN_DATA_KEYS``, hashed with ``SIDAN_LOOKUP_KEY`` or
the key derived from the last data key). Where several volunteers, or several residents, already share
a phone, only the oldest keeps the hash (the others are listed on stderr for a human to merge): the
unique indexes can then be built, and an import updates the oldest.

Revision ID: c3a9e2d1f4b6
Revises: b7e1c0a5d3f2
Create Date: 2026-12-03
"""

from __future__ import annotations

import sys

import sqlalchemy as sa
from alembic import op

from app import crypto
from app.config import get_settings

revision: str = "c3a9e2d1f4b6"
down_revision: str | None = "b7e1c0a5d3f2"
branch_labels = None
depends_on = None


def _backfill(table: str, only_residents: bool) -> None:
    bind = op.get_bind()
    where = "phone IS NOT NULL" + (" AND role = 'resident'" if only_residents else "")
    seen: set[bytes] = set()
    skipped: list[int] = []
    rows = bind.execute(sa.text(f"SELECT id, phone FROM {table} WHERE {where} ORDER BY id")).all()
    updates = []
    for row_id, stored in rows:
        digest = crypto.lookup_hash(crypto.decrypt(stored))
        assert digest is not None
        if digest in seen:
            skipped.append(row_id)
            continue
        seen.add(digest)
        updates.append({"id": row_id, "h": digest})
    if updates:
        bind.execute(sa.text(f"UPDATE {table} SET phone_hash = :h WHERE id = :id"), updates)
    if skipped:
        print(f"{table}: phone shared with an older row, left without a lookup hash: ids {skipped}", file=sys.stderr)


def upgrade() -> None:
    settings = get_settings()
    crypto.configure(settings.data_key_list, settings.lookup_key)
    op.add_column("users", sa.Column("phone_hash", sa.LargeBinary(length=32), nullable=True))
    op.add_column("volunteers", sa.Column("phone_hash", sa.LargeBinary(length=32), nullable=True))
    _backfill("volunteers", only_residents=False)
    _backfill("users", only_residents=True)
    # Logins of volunteers and admins carry the hash too (not unique: roles apart).
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, phone FROM users WHERE phone IS NOT NULL AND role <> 'resident'")).all()
    if rows:
        bind.execute(
            sa.text("UPDATE users SET phone_hash = :h WHERE id = :id"),
            [{"id": i, "h": crypto.lookup_hash(crypto.decrypt(p))} for i, p in rows],
        )
    op.create_unique_constraint(op.f("uq_volunteers_phone_hash"), "volunteers", ["phone_hash"])
    op.create_index(
        "uq_users_resident_phone_hash",
        "users",
        ["phone_hash"],
        unique=True,
        postgresql_where=sa.text("role = 'resident'"),
    )


def downgrade() -> None:
    op.drop_index("uq_users_resident_phone_hash", table_name="users", postgresql_where=sa.text("role = 'resident'"))
    op.drop_constraint(op.f("uq_volunteers_phone_hash"), "volunteers", type_="unique")
    op.drop_column("volunteers", "phone_hash")
    op.drop_column("users", "phone_hash")
