"""The rows an effect adds to a transition's write statement (``effects.Change.add_write``): each
built from the condition "the order was written", so it is written only if the order is."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, Numeric, String, Text, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.dml import Insert

from app.models import HoursEntry, PointsEntry, Rating, ServiceParticipant, ServiceRecord
from app.models.base import table_of


def _param(name: str, type_: Any) -> Any:
    return bindparam(name, type_=type_)


def _participants() -> Any:
    """The participants of the record being written, one row each: volunteer id, hours, points."""
    return func.unnest(
        _param("record_volunteer_ids", ARRAY(BigInteger)),
        _param("record_hours", ARRAY(Numeric(5, 1))),
        _param("record_points", ARRAY(Integer)),
        _param("record_points_reasons", ARRAY(Text)),
    ).table_valued("volunteer_id", "hours", "points", "reason", name="participant")


def service_record_rows(written: ColumnElement[bool]) -> Insert:
    """The completion's rows, written only if the order is: the service record, its participants,
    and each participant's 信用时长 and 积分 entries (the ledgers; points only where there are any)."""
    record = (
        insert(table_of(ServiceRecord))
        .from_select(
            ["id", "order_id", "round", "summary", "served_count", "photos", "submitted_by_id", "presence_proof"],
            select(
                _param("record_id", BigInteger),
                _param("record_order_id", BigInteger),
                _param("record_round", Integer),
                _param("record_summary", Text),
                _param("record_served_count", Integer),
                _param("record_photos", ARRAY(Text)),
                _param("record_actor_id", BigInteger),
                _param("record_presence_proof", String),
            ).where(written),
        )
        .returning(table_of(ServiceRecord).c.id)
        .cte("record")
    )
    p = _participants().render_derived()
    participants = (
        insert(table_of(ServiceParticipant))
        .from_select(["record_id", "volunteer_id", "hours"], select(record.c.id, p.c.volunteer_id, p.c.hours))
        .cte("participants")
    )
    hours = (
        insert(table_of(HoursEntry))
        .from_select(
            ["volunteer_id", "kind", "hours", "order_id", "record_id", "actor_id", "created_at", "verified"],
            select(
                p.c.volunteer_id,
                _param("record_kind_service", String),
                p.c.hours,
                _param("record_order_id", BigInteger),
                record.c.id,
                _param("record_actor_id", BigInteger),
                _param("record_now", table_of(HoursEntry).c.created_at.type),
                _param("record_verified", table_of(HoursEntry).c.verified.type),
            ),
        )
        .cte("hours")
    )
    return (
        insert(table_of(PointsEntry))
        .from_select(
            ["volunteer_id", "kind", "delta", "reason", "order_id", "created_at"],
            select(
                p.c.volunteer_id,
                _param("record_kind_earned", String),
                p.c.points,
                p.c.reason,
                _param("record_order_id", BigInteger),
                _param("record_now", table_of(PointsEntry).c.created_at.type),
            )
            .select_from(record)
            .where(p.c.points > 0),
        )
        .add_cte(participants, hours)
    )


def rating_row(written: ColumnElement[bool]) -> Insert:
    return insert(table_of(Rating)).from_select(
        ["order_id", "round", "stars", "tags", "comment", "rated_by_id", "by_proxy"],
        select(
            _param("rating_order_id", BigInteger),
            _param("rating_round", Integer),
            _param("rating_stars", Integer),
            _param("rating_tags", ARRAY(String)),
            _param("rating_comment", Text),
            _param("rating_by_id", BigInteger),
            _param("rating_by_proxy", table_of(Rating).c.by_proxy.type),
        ).where(written),
    )
