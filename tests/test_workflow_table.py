"""The transition table itself: shape, reachability, and the README diagram generated from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from app.domain import Action, Role, Status
from app.models import Order, OrderRow
from app.schemas.orders import ReasonBody
from app.workflow import ACTIONS, TERMINAL_STATES, TRANSITIONS, USER_ACTIONS, mermaid

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_state_is_reachable_from_place() -> None:
    reached: set[Status] = set()
    frontier = [rule.to for (frm, _), rule in TRANSITIONS.items() if frm is None]
    while frontier:
        status = frontier.pop()
        if status is None or status in reached:
            continue
        reached.add(status)
        frontier.extend(rule.to or frm for (frm, _), rule in TRANSITIONS.items() if frm is status)
    assert reached == set(Status)


def test_terminal_states_have_no_exits_and_are_exactly_rejected_and_cancelled() -> None:
    assert {Status.REJECTED, Status.CANCELLED} == TERMINAL_STATES
    for (frm, _), _rule in TRANSITIONS.items():
        assert frm not in TERMINAL_STATES


def test_every_action_appears_in_the_table() -> None:
    assert {act for _, act in TRANSITIONS} == set(Action)


def test_system_only_actions_have_no_endpoint_and_user_actions_do() -> None:
    assert Action.EXPIRE not in USER_ACTIONS
    assert Action.AUTO_CLOSE not in USER_ACTIONS
    for (_, act), rule in TRANSITIONS.items():
        if rule.actors == {Role.SYSTEM}:
            assert act not in USER_ACTIONS


def test_reason_required_exactly_where_the_table_says() -> None:
    for (_, act), rule in TRANSITIONS.items():
        if rule.reason_required:
            assert ACTIONS[act].body is ReasonBody, act


def test_readme_state_diagram_is_generated_from_the_table() -> None:
    text = README.read_text(encoding="utf-8")
    assert f"```mermaid\n{mermaid()}\n```" in text, (
        "README state diagram is stale: paste the output of `python -m app.workflow`"
    )


def test_a_transitions_order_row_holds_exactly_the_orders_columns() -> None:
    """``OrderRow`` (what ``apply`` reads an order into) cannot drift from the ``orders`` table."""
    columns = {column.key: column for column in Order.__table__.columns}
    fields = {field.name for field in dataclasses.fields(OrderRow)}
    assert fields == set(columns)
