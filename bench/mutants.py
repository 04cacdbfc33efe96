"""One-line mutants over the lines that carry a promise: does the test suite notice each one broken?

    python -m bench.mutants [--only NAME] [--list]

Each mutant replaces one exact text in one file (the run fails loudly if that text is gone, so the list
cannot rot silently), runs the tests that guard that promise (stopping at the first failure) against
``SIDAN_TEST_DATABASE_URL`` or the embedded PostgreSQL, and restores the file. A mutant the tests
pass with *survived*: a promise nothing checks. Prints one line a mutant and the score.
On demand, never in CI (a run takes several minutes).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    original: str
    mutated: str
    tests: tuple[str, ...]


RACES = ("tests/test_concurrency.py",)
GUARDS = ("tests/test_state_machine.py", "tests/test_authz_matrix.py", "tests/test_authorization.py")
SCOPE = ("tests/test_scope.py", "tests/test_authz_matrix.py", "tests/test_authorization.py")
SWEEPER = ("tests/test_dispatch_engine.py",)

MUTANTS = (
    Mutant(
        "compare-and-set: the write ignores the version read",
        "app/services/statements.py",
        '.where(_ORDERS.c.id == order_id, _ORDERS.c.version == bindparam("transition_from_version", type_=BigInteger))',
        ".where(_ORDERS.c.id == order_id)",
        RACES,
    ),
    Mutant(
        "a lost race is not read again",
        "app/services/applying.py",
        "            continue  # lost the race: read the new state and decide again",
        "            raise Busy()",
        RACES,
    ),
    Mutant(
        "guard TARGET holds for everyone",
        "app/services/guards.py",
        "            if actor.volunteer_id is None or not actor.volunteer_active:\n                return False",
        "            return True",
        GUARDS,
    ),
    Mutant(
        "guard ASSIGNEE holds for everyone",
        "app/services/guards.py",
        "            return actor.volunteer_id is not None and order.assignee_volunteer_id == actor.volunteer_id",
        "            return True",
        GUARDS,
    ),
    Mutant(
        "guard RATER holds for everyone",
        "app/services/guards.py",
        "            return is_orderer(actor, order) and not held",
        "            return True",
        GUARDS,
    ),
    # Not listed: "guard ADMIN_IN_SCOPE holds for every admin". It is the scope check itself (an admin sees
    # exactly the orders of their subtree, ``scope.VISIBLE``), so no test can tell it broken: an
    # equivalent mutant. The scope mutants below stand for it.
    Mutant(
        "guard POOL_ELIGIBLE holds for every volunteer",
        "app/services/guards.py",
        "        case Guard.POOL_ELIGIBLE:\n            return in_region(actor, order)",
        "        case Guard.POOL_ELIGIBLE:\n            return True",
        GUARDS,
    ),
    Mutant(
        "a role outside the action's roles is let through",
        "app/services/applying.py",
        "    if actor.role not in spec.roles:",
        "    if False:",
        GUARDS,
    ),
    Mutant(
        "the transition's read finds every order (no scope)",
        "app/services/scope.py",
        "    if published_region:\n        visible = or_(visible, and_(region, WAS_PUBLISHED))\n    return visible",
        "    return true()",
        SCOPE,
    ),
    Mutant(
        "an admin's scope is the whole deployment",
        "app/services/scope.py",
        "        Role.ADMIN: Order.unit_path.like(admin_subtree),",
        "        Role.ADMIN: true(),",
        SCOPE,
    ),
    Mutant(
        "sweepers wait on rows another holds (no SKIP LOCKED)",
        "app/services/sweeper.py",
        ".with_for_update(skip_locked=True)",
        ".with_for_update()",
        SWEEPER,
    ),
    Mutant(
        "a timer fires before its deadline",
        "app/services/applying.py",
        "    return order.deadline_at is not None and order.deadline_at <= now",
        "    return True",
        (*SWEEPER, "tests/test_state_machine.py"),
    ),
    Mutant(
        "the idempotency record is not written",
        "app/services/statements.py",
        "    if idempotent:\n        ctes.append(",
        "    if False:\n        ctes.append(",
        ("tests/test_idempotency.py",),
    ),
    Mutant(
        "the volunteer holding an order may rate it",
        "app/services/guards.py",
        "            return is_orderer(actor, order) and not held",
        "            return is_orderer(actor, order)",
        ("tests/test_ledger.py", *GUARDS),
    ),
    Mutant(
        "a participant of the round may rate it",
        "app/services/effects.py",
        "        if await _SERVED_THE_ROUND.fetchrow(change.db, params) is not None:",
        "        if False:",
        ("tests/test_ledger.py", *GUARDS),
    ),
    Mutant(
        "anyone in the county may be credited as a participant",
        "app/services/effects.py",
        '    found = {row["id"] for row in await _PARTICIPANTS.fetch(change.db, params)}',
        "    found = set(ids)",
        ("tests/test_ledger.py",),
    ),
    Mutant(
        "an hours correction for a volunteer outside the admin's scope",
        "app/services/ledger_admin.py",
        "        await _volunteer_in_scope(session, actor, body.volunteer_id, lock=True)",
        "        await ledger.lock_volunteer(session, body.volunteer_id)",
        ("tests/test_ledger.py",),
    ),
    Mutant(
        "an hours correction beyond the service window",
        "app/services/ledger_admin.py",
        "        if body.hours > window:",
        "        if False:",
        ("tests/test_ledger.py",),
    ),
    Mutant(
        "the database lets a grab pass the volunteer's limit",
        "migrations/versions/20261203_5e1f0c2a7b9d_grab_within_the_volunteers_limit.py",
        "AND NEW.status = 'accepted' AND",
        "AND NEW.status = 'never' AND",
        RACES,
    ),
    Mutant(
        "hours beyond the check-in span are credited",
        "app/services/ledger.py",
        "    over = [p.volunteer_id for p in participants if p.hours > allowed]",
        "    over: list[int] = []",
        ("tests/test_ledger.py",),
    ),
    Mutant(
        "one more order an hour than the limit",
        "app/services/ordering.py",
        "        .offset(limit - 1)",
        "        .offset(limit)",
        ("tests/test_limits.py", "tests/test_limits_concurrency.py"),
    ),
    Mutant(
        "concurrent orders by one resident are not serialised",
        "app/services/ordering.py",
        "    await session.execute(select(func.pg_advisory_xact_lock(lock_key)))",
        "    pass",
        ("tests/test_limits_concurrency.py",),
    ),
    Mutant(
        "a login attempt over the limit is let through",
        "app/services/throttle.py",
        "    if hits > limit:",
        "    if hits > limit + 1:",
        ("tests/test_limits.py", "tests/test_limits_concurrency.py"),
    ),
    Mutant(
        "a password change is not counted",
        "app/services/accounts.py",
        "        await throttle.password_attempt(session, user_id)",
        "        pass",
        ("tests/test_limits_concurrency.py",),
    ),
    Mutant(
        "a qualification valid on some other order's day counts",
        "app/services/qualifications.py",
        "        .correlate_except(VolunteerQualification)\n",
        "",
        ("tests/test_qualifications.py",),
    ),
    Mutant(
        "the transition's read never gives the policy and the spec's reads (its state gate shut)",
        "app/services/statements.py",
        "    applies = _ORDERS.c.status == any_(array(sorted(state.value for state in leaves))) if leaves else false()",
        "    applies = false()",
        ("tests/test_state_machine.py", "tests/test_presence.py", "tests/test_qualifications.py"),
    ),
    Mutant(
        "grab and accept are offered to a volunteer lacking the qualification",
        "app/services/offers.py",
        "    if actor.volunteer_id is None:\n        return frozenset()",
        "    if True:\n        return frozenset()",
        ("tests/test_qualifications.py",),
    ),
    Mutant(
        "a sign-up trusts the activity's status read before waiting for the slot",
        "app/services/activity_signups.py",
        "        status = await session.scalar(select(Activity.status).where(Activity.id == activity.id))",
        "        status = activity.status",
        ("tests/test_activities.py",),
    ),
    Mutant(
        "a refused action leaves a reference cycle for the garbage collector",
        "app/routers/orders.py",
        "        del applying",
        "        pass",
        ("tests/test_lane.py",),
    ),
    Mutant(
        "the reliability counter is not written",
        "app/services/statements.py",
        "    if counter is not None:\n        reliability = (",
        "    if False:\n        reliability = (",
        ("tests/test_candidates.py", "tests/test_concurrency.py"),
    ),
    Mutant(
        "a WeChat login binds an account another WeChat already holds",
        "app/services/accounts.py",
        ".where(User.id == user_id, User.wechat_openid.is_(None), *open_to_binding)",
        ".where(User.id == user_id, *open_to_binding)",
        ("tests/test_wechat_channel.py",),
    ),
    Mutant(
        "a phone takes over an account with a password, or a stopped one",
        "app/services/accounts.py",
        "open_to_binding = (User.password_hash.is_(None), User.is_active.is_(True))",
        "open_to_binding = (User.id.is_not(None),)",
        ("tests/test_wechat_channel.py",),
    ),
    Mutant(
        "a staff account with a volunteer profile is found by phone",
        "app/services/accounts.py",
        "User.role == Role.VOLUNTEER.value, *open_to_binding",
        "*open_to_binding",
        ("tests/test_wechat_channel.py",),
    ),
    Mutant(
        "a used resident is retired for a phone login",
        "app/services/accounts.py",
        "    if await session.scalar(select(used)):",
        "    if False:",
        ("tests/test_wechat_channel.py",),
    ),
    Mutant(
        "retiring a resident does not wait for an order being written for it",
        "app/services/accounts.py",
        "User.wechat_openid == openid).with_for_update())",
        "User.wechat_openid == openid))",
        ("tests/test_wechat_channel.py",),
    ),
    Mutant(
        "a resident's order does not hold the account",
        "app/services/ordering.py",
        "            await hold_account(session, actor.user_id)\n",
        "",
        ("tests/test_wechat_channel.py",),
    ),
    Mutant(
        "a change of capacity does not wait for the slot's sign-ups",
        "app/services/activity_edits.py",
        "select(ActivitySlot).where(ActivitySlot.id == slot_id).with_for_update()",
        "select(ActivitySlot).where(ActivitySlot.id == slot_id)",
        ("tests/test_activities.py",),
    ),
    Mutant(
        "a check-in does not hold its slot first",
        "app/services/activity_presence.py",
        "where(ActivitySlot.id == slot_of).with_for_update(read=True))",
        "where(ActivitySlot.id == slot_of))",
        ("tests/test_activities.py",),
    ),
    Mutant(
        "a cancelled activity's volunteers are not told",
        "app/services/activities.py",
        "[signup_id for signup_id, slot_id in cancelled if slot_id in to_come]",
        "[]",
        ("tests/test_activities.py",),
    ),
)


def run(mutant: Mutant) -> tuple[bool, float]:
    """(killed, seconds): apply the mutant, run its tests, restore the file whatever happens."""
    path = ROOT / mutant.path
    source = path.read_text()
    if source.count(mutant.original) != 1:
        raise SystemExit(f"{mutant.name}: the text to mutate is not in {mutant.path} exactly once; update the list")
    started = time.monotonic()
    try:
        path.write_text(source.replace(mutant.original, mutant.mutated))
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        path.write_text(source)
    return result.returncode != 0, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run the mutants whose name contains this text")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if args.only is None or args.only in m.name]
    if args.list:
        for mutant in chosen:
            print(f"{mutant.path}: {mutant.name}")
        return
    killed = 0
    for mutant in chosen:
        dead, seconds = run(mutant)
        killed += dead
        print(f"{'killed  ' if dead else 'SURVIVED'} {seconds:6.1f} s  {mutant.path}: {mutant.name}", flush=True)
    print(f"score: {killed}/{len(chosen)} mutants killed")


if __name__ == "__main__":
    main()
