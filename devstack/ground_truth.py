"""What ClickHouse holds next to what the simulator says it must hold, in one shape.

``pulse demo`` summarises the comparison in three figures and ``pulse soak`` checks it in
detail after every cycle of kills, so both read the pipeline and the ground truth through
:class:`Outcome` and compare with :func:`differences` / :meth:`Outcome.counts`.

Funnels and churn have their own expectations: :func:`expected_funnels` (users per step of
each funnel, as ``windowFunnel`` counts them) and :func:`expected_churn` (churned users by
reason at the window's end), with the per-user detail behind them in
:func:`expected_funnel_users` and :func:`expected_churned_users`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from ops.reader import run_query
from producers.simulator.devices import customer_of
from producers.simulator.truth import GroundTruth
from pulse.settings import Settings

EVENTS_BY_TYPE = "SELECT type, count() FROM events FINAL GROUP BY type"
LETTERS_BY_REASON = "SELECT reason, count() FROM dead_letters FINAL GROUP BY reason"
# The session figures the simulator knows exactly (start, end and counts per person), row for row.
SESSIONS = """
SELECT person_id, toUnixTimestamp64Milli(start), toUnixTimestamp64Milli(end), events, page_views, bounce
FROM sessions FINAL WHERE NOT deleted ORDER BY person_id, start
"""
SHOWN_ROWS = 3  # session rows quoted in a difference, so a failure says which users to look at

SessionRow = tuple[Any, ...]  # user_id, start ms, end ms, events, page views, bounce


@dataclass(frozen=True)
class Outcome:
    """Events by type, dead letters by reason and live sessions: found in ClickHouse or expected."""

    events_by_type: dict[str, int]
    letters_by_reason: dict[str, int]
    sessions: list[SessionRow]

    def counts(self) -> dict[str, int]:
        """The three headline figures, in the order the demo prints them."""
        return {
            "events": sum(self.events_by_type.values()),
            "dead letters": sum(self.letters_by_reason.values()),
            "sessions": len(self.sessions),
        }


def expected_outcome(truth: GroundTruth) -> Outcome:
    """What a correct pipeline ends with: the simulator's events, one letter per malformed line, its sessions.

    The emitter places a late line at most ``late_max_minutes`` (5) behind the stream, inside the
    worker's allowed lateness (10), so a correct run has no ``too_late`` letters: any that appear
    are a difference.
    """
    totals = truth.totals
    sessions = [
        (user_id, s.start, s.end, s.events, s.page_views, s.bounce)
        for user_id, user in truth.users.items()
        for s in user.sessions
    ]
    return Outcome(
        events_by_type=dict(totals["events_by_type"]),
        letters_by_reason={reason: count for reason, count in totals["malformed_lines"].items() if count},
        sessions=sorted(sessions),
    )


def expected_funnels(truth: GroundTruth) -> dict[str, list[int]]:
    """Per funnel, the users whose furthest step is at least step 1, 2, ...: ``{name: [users, ...]}``.

    The funnels are ``pricing_to_paid`` and ``signup_to_purchase`` (see ``producers.simulator.truth.FUNNELS``).
    """
    return {name: list(funnel["users_per_step"]) for name, funnel in truth.totals["funnels"].items()}


def expected_funnel_users(truth: GroundTruth, funnel: str) -> dict[str, dict[str, Any]]:
    """Each user who entered ``funnel``: ``{user_id: {"level": furthest step, "step_ts": [ms of each step]}}``."""
    return truth.totals["funnels"][funnel]["per_user"]


def expected_churn(truth: GroundTruth) -> dict[str, int]:
    """Churned users at the window's end, all and by reason: ``churned_users``, ``cancelled``, ``inactive``."""
    churn = truth.totals["churn"]
    return {key: churn[key] for key in ("churned_users", "cancelled", "inactive")}


def expected_churned_users(truth: GroundTruth) -> dict[str, dict[str, Any]]:
    """Each churned user: ``{user_id: {"churned_at_ms": ms, "reason": "cancelled" | "inactive"}}``."""
    return truth.totals["churn"]["per_user"]


def read_outcome(settings: Settings) -> Outcome:
    """What ClickHouse holds now (read with FINAL, so replays and resends count once).

    Sessions are the person's; a visitor who never signed up is a person known only by the
    browser's anonymous id, which names the customer (:func:`~producers.simulator.devices.customer_of`).
    """
    return Outcome(
        events_by_type={kind: count for kind, count in run_query(settings, EVENTS_BY_TYPE).rows},
        letters_by_reason={reason: count for reason, count in run_query(settings, LETTERS_BY_REASON).rows},
        sessions=[(customer_of(row[0]), *row[1:]) for row in run_query(settings, SESSIONS).rows],
    )


def differences(found: Outcome, expected: Outcome) -> list[str]:
    """One line per figure that differs, naming what was found and what was expected; [] when equal."""
    problems = [
        *_count_differences("events", found.events_by_type, expected.events_by_type),
        *_count_differences("dead letters", found.letters_by_reason, expected.letters_by_reason),
    ]
    session_problem = _session_difference(found.sessions, expected.sessions)
    return problems + ([session_problem] if session_problem else [])


def _count_differences(what: str, found: dict[str, int], expected: dict[str, int]) -> list[str]:
    """``events 14470 (expected 14473): page_view 5000 (expected 5003)``: the total, then each key off."""
    if found == expected:
        return []
    off = [
        f"{key} {found.get(key, 0)} (expected {expected.get(key, 0)})"
        for key in sorted(found.keys() | expected.keys())
        if found.get(key, 0) != expected.get(key, 0)
    ]
    return [f"{what} {sum(found.values())} (expected {sum(expected.values())}): {', '.join(off)}"]


def _session_difference(found: list[SessionRow], expected: list[SessionRow]) -> str | None:
    """Sessions compared as multisets of rows: how many are missing and how many should not be there."""
    missing = Counter(map(tuple, expected)) - Counter(map(tuple, found))
    unexpected = Counter(map(tuple, found)) - Counter(map(tuple, expected))
    if not missing and not unexpected:
        return None
    parts = [f"sessions {len(found)} (expected {len(expected)})"]
    for label, rows in (("missing", missing), ("unexpected", unexpected)):
        if rows:
            shown = ", ".join(map(str, sorted(rows.elements())[:SHOWN_ROWS]))
            parts.append(f"{sum(rows.values())} {label}, e.g. {shown}")
    return "; ".join(parts)
