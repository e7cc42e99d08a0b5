"""Comparing what ClickHouse holds with the simulator's ground truth (devstack.ground_truth), without a broker."""

from __future__ import annotations

from devstack.ground_truth import Outcome, differences, expected_outcome
from producers.simulator import SimulationConfig, simulate

SESSION_A = ("u1", 1_000, 5_000, 3, 2, False)
SESSION_B = ("u2", 2_000, 2_000, 1, 1, True)


def outcome(**changes: object) -> Outcome:
    fields = {
        "events_by_type": {"login": 10, "page_view": 30},
        "letters_by_reason": {"bad_json": 2, "missing_field": 1},
        "sessions": [SESSION_A, SESSION_B],
        **changes,
    }
    return Outcome(**fields)  # type: ignore[arg-type]


def test_the_same_outcome_has_no_differences() -> None:
    assert differences(outcome(), outcome()) == []
    assert outcome().counts() == {"events": 40, "dead letters": 3, "sessions": 2}


def test_counts_name_the_total_and_every_key_that_is_off() -> None:
    found = outcome(events_by_type={"login": 9, "page_view": 30, "signup": 1}, letters_by_reason={"bad_json": 2})
    assert differences(found, outcome()) == [
        "events 40 (expected 40): login 9 (expected 10), signup 1 (expected 0)",
        "dead letters 2 (expected 3): missing_field 0 (expected 1)",
    ]


def test_too_late_letters_are_a_difference() -> None:
    found = outcome(letters_by_reason={"bad_json": 2, "missing_field": 1, "too_late": 4})
    assert differences(found, outcome()) == ["dead letters 7 (expected 3): too_late 4 (expected 0)"]


def test_sessions_are_compared_row_for_row_as_rows_of_any_sequence_type() -> None:
    moved = ("u2", 2_000, 3_000, 2, 1, False)
    found = outcome(sessions=[list(SESSION_A), moved, moved])
    assert differences(found, outcome()) == [
        f"sessions 3 (expected 2); 1 missing, e.g. {SESSION_B}; 2 unexpected, e.g. {moved}, {moved}"
    ]
    assert differences(outcome(sessions=[list(SESSION_B), list(SESSION_A)]), outcome()) == []


def test_a_bounce_read_as_a_number_equals_the_truths_boolean() -> None:
    """The sink's query answers over JSON; 0/1 and false/true must compare the same."""
    as_numbers = [("u1", 1_000, 5_000, 3, 2, 0), ("u2", 2_000, 2_000, 1, 1, 1)]
    assert differences(outcome(sessions=as_numbers), outcome()) == []


def test_the_expected_outcome_is_the_simulators_truth() -> None:
    truth = simulate(SimulationConfig(customers=200, days=3, seed=4)).truth
    expected = expected_outcome(truth)
    assert expected.counts() == {
        "events": truth.totals["events"],
        "dead letters": sum(truth.totals["malformed_lines"].values()),
        "sessions": truth.totals["sessions"],
    }
    assert expected.events_by_type == truth.totals["events_by_type"]
    assert 0 not in expected.letters_by_reason.values()
    assert expected.sessions == sorted(expected.sessions)
    user_id, user = next(iter(truth.users.items()))
    first = user.sessions[0]
    assert (user_id, first.start, first.end, first.events, first.page_views, first.bounce) in expected.sessions
