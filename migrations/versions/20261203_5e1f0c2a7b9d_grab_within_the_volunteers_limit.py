"""A grab never takes a volunteer past their limit of orders in hand, whatever runs at the same time.

The grab effect refuses early with a clear message when the volunteer is at their limit, but two grabs
by one volunteer of two different orders each read the count before the other wrote. This trigger is
the guarantee: at the end of the statement that moves an order from the pool to a volunteer, it locks
the volunteer's row (so one volunteer's grabs take turns) and counts again with what has committed
since; over the limit, the statement fails with SQLSTATE SD001 and writes nothing (409).

Revision ID: 5e1f0c2a7b9d
Revises: a1dc0a42a66e
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision: str = "5e1f0c2a7b9d"
down_revision: str | None = "a1dc0a42a66e"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION orders_grab_within_limit() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            most integer;
            in_hand integer;
        BEGIN
            SELECT max_open_orders INTO most FROM volunteers WHERE id = NEW.assignee_volunteer_id FOR UPDATE;
            SELECT count(*) INTO in_hand FROM orders
                WHERE assignee_volunteer_id = NEW.assignee_volunteer_id
                  AND status IN ('dispatched', 'accepted', 'in_service');
            IF in_hand > most THEN
                RAISE EXCEPTION 'volunteer % holds % open orders, over the limit of %',
                    NEW.assignee_volunteer_id, in_hand, most
                    USING ERRCODE = 'SD001';
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER orders_grab_within_limit AFTER UPDATE OF status ON orders
        FOR EACH ROW WHEN (OLD.status = 'pooled' AND NEW.status = 'accepted' AND NEW.assignee_volunteer_id IS NOT NULL)
        EXECUTE FUNCTION orders_grab_within_limit()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER orders_grab_within_limit ON orders")
    op.execute("DROP FUNCTION orders_grab_within_limit()")
