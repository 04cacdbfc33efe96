"""Edge values a client can send, as Hypothesis strategies: datetimes at the ends of the calendar with
extreme offsets, ids beyond bigint, tampered keyset cursors, token subjects that are no user id.

One source for the property tests (``tests/test_edge_input.py``) and the Schemathesis run
(``tests/test_fuzz.py``), so both keep reaching the values that used to answer 500.
"""

from __future__ import annotations

import base64
from datetime import date, datetime, timedelta, timezone

from hypothesis import strategies as st

from app.schemas.common import EARLIEST, LATEST, MAX_BIGINT

# Minutes east of UTC: real zones span -12:00 … +14:00; ISO 8601 and Python allow up to ±23:59.
EDGE_OFFSETS = (0, 14 * 60, -14 * 60, 23 * 60 + 59, -(23 * 60 + 59))
offsets = st.one_of(st.sampled_from(EDGE_OFFSETS), st.integers(-(24 * 60 - 1), 24 * 60 - 1)).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)

_FIRST, _LAST = EARLIEST.replace(tzinfo=None), LATEST.replace(tzinfo=None)
_TICK = timedelta(microseconds=1)
# Wall-clock times at the ends of Python's calendar and around the ends of the API's.
CALENDAR_EDGES = (datetime.min, datetime.max, _FIRST, _FIRST - _TICK, _LAST, _LAST - _TICK)
naive_datetimes = st.one_of(st.sampled_from(CALENDAR_EDGES), st.datetimes())
aware_datetimes = st.builds(lambda wall, zone: wall.replace(tzinfo=zone), naive_datetimes, offsets)
# Well inside the API's calendar whatever the offset: values an endpoint should take.
usual_datetimes = st.builds(
    lambda wall, zone: wall.replace(tzinfo=zone),
    st.datetimes(min_value=_FIRST + timedelta(days=1), max_value=_LAST - timedelta(days=1)),
    offsets,
)

# RFC 3339 ``date-time`` strings: a third from the whole calendar (its ends often), usual times otherwise.
datetime_texts = st.one_of(
    aware_datetimes.map(datetime.isoformat),
    usual_datetimes.map(datetime.isoformat),
    usual_datetimes.map(datetime.isoformat),
)
EDGE_DAYS = (
    date.min,
    date.max,
    _FIRST.date(),
    _FIRST.date() - timedelta(days=1),
    _LAST.date(),
    _LAST.date() - timedelta(days=1),
)
# RFC 3339 ``full-date`` strings, likewise.
day_texts = st.one_of(
    st.sampled_from(EDGE_DAYS), st.dates(), st.dates(min_value=_FIRST.date(), max_value=_LAST.date())
).map(date.isoformat)

EDGE_IDS = (0, -1, 1, MAX_BIGINT, MAX_BIGINT + 1, 2**64, -(2**63) - 1, 10**40)
ids = st.one_of(st.sampled_from(EDGE_IDS), st.integers())


def cursor_of(created_at: str, row_id: object) -> str:
    """A cursor in the form the API issues (``base64url("<created_at>|<id>")``), of any two parts."""
    return base64.urlsafe_b64encode(f"{created_at}|{row_id}".encode()).decode()


# What a client may hand back as ``cursor``: well-formed ones with parts out of range (a time at the
# calendar's edges, naive or not a time at all; an id beyond bigint, zero or negative), and junk.
tampered_cursors = st.one_of(
    st.builds(
        cursor_of,
        st.one_of(
            aware_datetimes.map(datetime.isoformat), naive_datetimes.map(datetime.isoformat), st.text(max_size=40)
        ),
        st.one_of(ids, st.text(max_size=20)),
    ),
    st.binary(max_size=80).map(lambda raw: base64.urlsafe_b64encode(raw).decode()),
    st.text(max_size=80),
)

# ``sub`` claims of a correctly signed token that name no user id ``issue_token`` could write.
BAD_SUBJECTS = (
    str(MAX_BIGINT + 1),
    str(2**64),
    "-1",
    "0",
    "007",
    "abc",
    "1.5",
    "1e3",
    " 1",
    "1\n",
    "+1",
    "1_0",
    "١",  # an Arabic-Indic digit one: int() reads it
    "",
)
subjects = st.one_of(st.sampled_from(BAD_SUBJECTS), ids.map(str), st.text(max_size=24))
