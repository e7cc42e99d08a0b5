"""The customer-journey simulator: reproducible, contract-valid, and its truth is the stream's.

The truth is checked against the emitted lines alone: decode them, drop the malformed ones
and the resent ids, then recompute the figures (sessions with the plain 30-minute / 24-hour
rule) and compare exactly.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.simulator import Imperfections, Rates, Simulation, SimulationConfig, simulate
from pulse.contract import STANDARD_TYPES, Event, Invalid, validate

MINUTE = 60_000
SESSION_GAP_MS = 30 * MINUTE
SESSION_MAX_MS = 24 * 60 * MINUTE

SMALL = SimulationConfig(customers=300, days=14, seed=7)
# Rates pushed up so that every standard event type shows up in a small run.
BUSY = SimulationConfig(
    customers=300,
    days=40,
    seed=11,
    rates=Rates(
        signup=0.6, onboarding_completion=0.8, trial_days=3.0, trial_to_paid=0.8, annual_churn=0.95,
        plan_change_per_month=0.9, payment_failure=0.5, payment_recovery=0.5, refund=0.3,
        ticket_per_visit=0.3, reopen=0.5, addon_per_visit=0.2,
    ),  # fmt: skip
    imperfections=Imperfections(late_share=0.05, duplicate_share=0.03, malformed_share=0.02),
)


@dataclass
class Decoded:
    """The emitted lines as a consumer sees them."""

    events: list[Event] = field(default_factory=list)  # valid, first occurrence of each id, emission order
    valid_lines: set[bytes] = field(default_factory=set)
    duplicates: int = 0
    invalid: Counter[str] = field(default_factory=Counter)  # reason -> lines


def decode(simulation: Simulation, config: SimulationConfig) -> Decoded:
    decoded, seen = Decoded(), set()
    for line in simulation.lines():
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            decoded.invalid["bad_json"] += 1
            continue
        result = validate(obj, not_after_ms=config.end_ms)
        if isinstance(result, Invalid):
            decoded.invalid[result.reason] += 1
        elif result.event_id in seen:
            decoded.duplicates += 1
        else:
            seen.add(result.event_id)
            decoded.events.append(result)
            decoded.valid_lines.add(line)
    return decoded


Run = tuple[SimulationConfig, Simulation, Decoded]


def plain_sessions(events: list[Event]) -> list[list[Event]]:
    """One user's sessions: a new one after a gap over 30 minutes or once 24 hours have passed."""
    sessions: list[list[Event]] = []
    for event in sorted(events, key=lambda e: e.ts):
        current = sessions[-1] if sessions else None
        if current and event.ts - current[-1].ts <= SESSION_GAP_MS and event.ts - current[0].ts <= SESSION_MAX_MS:
            current.append(event)
        else:
            sessions.append([event])
    return sessions


def session_figures(session: list[Event]) -> tuple[int, int, int, int, bool]:
    page_views = sum(e.type == "page_view" for e in session)
    return session[0].ts, session[-1].ts, len(session), page_views, page_views == 1 and len(session) == 1


def cents(amount: float) -> int:
    return round(amount * 100)


def revenue_cents(events: list[Event]) -> int:
    """Purchases minus refunds."""
    sign = {"purchase": 1, "refund": -1}
    return sum(sign[e.type] * cents(e.props["amount"]) for e in events if e.type in sign)


def mean(values: list[int]) -> object:
    """The mean as pytest.approx, or None for no values (as the truth reports it)."""
    return pytest.approx(sum(values) / len(values)) if values else None


@pytest.fixture(scope="module", params=[SMALL, BUSY], ids=["small", "busy"])
def run(request: pytest.FixtureRequest) -> Run:
    config = request.param
    simulation = simulate(config)
    return config, simulation, decode(simulation, config)


def test_same_seed_gives_the_same_bytes_and_truth() -> None:
    config = SimulationConfig(customers=120, days=7, seed=3)
    first, second = simulate(config), simulate(config)
    assert list(first.lines()) == list(second.lines())
    assert orjson.dumps(first.truth.to_dict()) == orjson.dumps(second.truth.to_dict())
    other = simulate(replace(config, seed=4))
    assert list(other.lines()) != list(first.lines())


def test_lines_follow_the_contract_and_their_counts_are_the_truths(run: Run) -> None:
    config, simulation, decoded = run
    totals = simulation.truth.totals
    assert totals["lines"] == sum(1 for _ in simulation.lines())
    assert len(decoded.events) == totals["events"]
    assert decoded.duplicates == totals["duplicate_lines"] > 0
    assert decoded.invalid == Counter({kind: n for kind, n in totals["malformed_lines"].items() if n})
    assert set(totals["malformed_lines"]) == {"bad_json", "missing_field", "wrong_type", "future_timestamp"}
    assert all(totals["malformed_lines"].values())
    assert len(decoded.events) + decoded.duplicates + sum(decoded.invalid.values()) == totals["lines"]
    assert all(config.start_ms <= e.ts < config.end_ms for e in decoded.events)


def test_every_standard_event_type_is_simulated() -> None:
    assert set(simulate(BUSY).truth.totals["events_by_type"]) == set(STANDARD_TYPES)


def test_truth_totals_match_the_events(run: Run) -> None:
    _, simulation, decoded = run
    totals, events = simulation.truth.totals, decoded.events
    assert totals["events_by_type"] == dict(Counter(e.type for e in events))
    assert totals["users"] == len({e.user_id for e in events})
    assert cents(totals["revenue"]) == revenue_cents(events)
    assert totals["signups"] == sum(e.type == "signup" for e in events)
    assert totals["paying_customers"] == len({e.user_id for e in events if e.type == "purchase"})
    assert totals["churned_customers"] == len({e.user_id for e in events if e.type == "subscription_cancelled"})
    spend: Counter[str] = Counter()
    for e in events:
        if e.type == "marketing_spend":
            spend[e.props["channel"]] += cents(e.props["amount"])
    assert {channel: cents(amount) for channel, amount in totals["marketing_spend"].items()} == spend
    scores = defaultdict(list)
    for e in events:
        if e.type == "survey_response":
            scores[e.props["kind"]].append(e.props["score"])
    nps, csat, ces = scores["nps"], scores["csat"], scores["ces"]
    assert totals["nps"] == mean([100 * (s >= 9) - 100 * (s <= 6) for s in nps])
    assert totals["csat"] == mean([100 * (s >= 4) for s in csat])
    assert totals["ces"] == mean(ces)
    for kind in ("opened", "resolved", "reopened"):
        assert totals[f"tickets_{kind}"] == sum(e.type == f"ticket_{kind}" for e in events)


def test_truth_sessions_funnels_and_revenue_per_user_match_the_events(run: Run) -> None:
    _, simulation, decoded = run
    by_user: dict[str, list[Event]] = defaultdict(list)
    for event in decoded.events:
        by_user[event.user_id].append(event)
    users = simulation.truth.users
    assert set(users) == set(by_user)
    sessions = visits = bounces = mrr_cents = 0
    for user_id, events in by_user.items():
        truth = users[user_id]
        expected = [session_figures(s) for s in plain_sessions(events)]
        assert [(s.start, s.end, s.events, s.page_views, s.bounce) for s in truth.sessions] == expected, user_id
        first: dict[str, int] = {}
        mrr = 0
        for event in sorted(events, key=lambda e: e.ts):
            first.setdefault(event.type, event.ts)
            if event.type in ("subscription_started", "subscription_changed"):
                mrr = cents(event.props["mrr"])
            elif event.type == "subscription_cancelled":
                mrr = 0
        steps = ("signup", "onboarding_completed", "trial_started", "subscription_started")
        assert truth.funnel == {step: first[step] for step in steps if step in first}
        assert truth.churned_at == first.get("subscription_cancelled")
        assert truth.revenue_cents == revenue_cents(events)
        sessions += len(expected)
        visits += sum(figures[3] > 0 for figures in expected)
        bounces += sum(figures[4] for figures in expected)
        mrr_cents += mrr
    totals = simulation.truth.totals
    assert (totals["sessions"], totals["visits"], totals["bounces"]) == (sessions, visits, bounces)
    assert cents(totals["mrr"]) == mrr_cents
    assert len(simulation.truth.users["system"].sessions) == simulation.truth.config.days


def test_the_stream_never_goes_back_further_than_the_allowed_lateness(run: Run) -> None:
    config, simulation, _ = run
    late_max_ms = config.imperfections.late_max_minutes * MINUTE
    newest, seen, behind = 0, set(), 0
    for line in simulation.lines():
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        ts = obj.get("ts")
        if not isinstance(ts, int) or ts >= config.end_ms:
            continue
        assert ts >= newest - late_max_ms
        behind += ts < newest and obj.get("event_id") not in seen  # only a late line can be behind
        seen.add(obj.get("event_id"))
        newest = max(newest, ts)
    assert 0 < behind <= simulation.truth.totals["late_lines"]


def test_without_imperfections_the_stream_is_exactly_the_valid_events_in_order() -> None:
    clean = simulate(replace(SMALL, imperfections=Imperfections.none()))
    totals = clean.truth.totals
    assert totals["duplicate_lines"] == totals["late_lines"] == sum(totals["malformed_lines"].values()) == 0
    assert totals["lines"] == totals["events"]
    stamps = [orjson.loads(line)["ts"] for line in clean.lines()]
    assert stamps == sorted(stamps)
    # Imperfections are drawn apart from the model: the same customers do the same things.
    noisy = simulate(SMALL)
    assert set(clean.lines()) == decode(noisy, SMALL).valid_lines
    assert clean.truth.to_dict()["users"] == noisy.truth.to_dict()["users"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**31))
def test_sessions_are_exact_for_any_seed(seed: int) -> None:
    config = SimulationConfig(customers=60, days=10, seed=seed)
    simulation = simulate(config)
    by_user: dict[str, list[Event]] = defaultdict(list)
    for event in decode(simulation, config).events:
        by_user[event.user_id].append(event)
    for user_id, events in by_user.items():
        expected = [session_figures(s) for s in plain_sessions(events)]
        truth = simulation.truth.users[user_id].sessions
        assert [(s.start, s.end, s.events, s.page_views, s.bounce) for s in truth] == expected


def test_truth_is_json_and_names_each_sessions_source() -> None:
    simulation = simulate(SimulationConfig(customers=50, days=5, seed=5))
    truth = orjson.loads(orjson.dumps(simulation.truth.to_dict()))
    assert set(truth) == {"config", "totals", "users"}
    assert truth["config"]["customers"] == 50 and truth["config"]["imperfections"]["late_max_minutes"] == 5.0
    sources = {user["first_touch"]["utm_medium"] for user in truth["users"].values()}
    assert {"cpc", "email", None} <= sources
    assert any(user["first_touch"]["referrer"] for user in truth["users"].values())


def test_lateness_beyond_the_pipelines_allowance_is_refused() -> None:
    with pytest.raises(ValueError, match="late_max_minutes"):
        Imperfections(late_max_minutes=10.0)
