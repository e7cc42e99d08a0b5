"""The capacity search of ``pulse bench`` on a pretend pipeline: which rates it tries, when it stops, what it calls held."""

from __future__ import annotations

from typing import Any

import pytest

from bench.capacity import SearchPlan, next_rate, search, shortfall


def pipeline_holding_up_to(capacity: float) -> tuple[list[float], Any]:
    """A measure whose p99 is 1 s up to ``capacity`` events/s and 9 s above; the rates it was asked for."""
    asked: list[float] = []

    def measure(rate: float) -> dict[str, Any]:
        asked.append(rate)
        p99 = 1_000 if rate <= capacity else 9_000
        return {"p50": p99 / 2, "p95": p99, "p99": p99, "max": p99, "events": int(rate), "achieved_eps": rate}

    return asked, measure


def test_grows_then_bisects_to_the_capacity() -> None:
    asked, measure = pipeline_holding_up_to(11_000)
    curve = search(measure, 4_000, SearchPlan(max_points=10, resolution=0.05), log=lambda _line: None)
    assert asked[:3] == [4_000, 8_000, 16_000]  # doubles until a rate fails, then bisects
    assert asked[3] == 12_000
    assert 10_000 < curve["capacity_eps"] <= 11_000
    assert [p["held"] for p in curve["points"]] == [p["rate"] <= 11_000 for p in curve["points"]]
    assert len(curve["points"]) == len(asked) < 10  # stopped on the resolution, not the point limit


def test_shrinks_when_the_first_rate_fails() -> None:
    asked, measure = pipeline_holding_up_to(3_000)
    curve = search(measure, 10_000, SearchPlan(max_points=3), log=lambda _line: None)
    assert asked == [10_000, 5_000, 2_500]
    assert curve["capacity_eps"] == 2_500


def test_never_grows_past_the_backlog_rate() -> None:
    asked, measure = pipeline_holding_up_to(50_000)  # short points can pass above the pipeline's throughput
    curve = search(measure, 5_000, SearchPlan(), log=lambda _line: None, most_eps=12_000)
    assert asked == [5_000, 10_000, 12_000]
    assert curve["capacity_eps"] == curve["most_eps"] == 12_000


def test_no_rate_held_gives_no_capacity() -> None:
    _, measure = pipeline_holding_up_to(0)
    curve = search(measure, 1_000, SearchPlan(max_points=2), log=lambda _line: None)
    assert curve["capacity_eps"] is None and len(curve["points"]) == 2
    assert all(p["shortfall"] == "p99 over 5,000 ms" for p in curve["points"])


def test_a_spent_budget_still_measures_the_first_point() -> None:
    asked, measure = pipeline_holding_up_to(10_000)
    lines: list[str] = []
    curve = search(measure, 1_000, SearchPlan(budget_s=0), log=lines.append)
    assert asked == [1_000] and curve["capacity_eps"] == 1_000
    assert "budget" in lines[-1]


def test_a_rate_not_reached_or_failed_requests_do_not_hold() -> None:
    figures = {"p99": 100, "achieved_eps": 960.0}
    assert shortfall(1_000, figures, 5_000) is None
    assert shortfall(1_000, {**figures, "achieved_eps": 800.0}, 5_000) == "only 800 events/s sent"
    assert shortfall(1_000, {**figures, "failed": 3}, 5_000) == "3 requests failed"
    assert shortfall(1_000, {**figures, "p99": 5_001}, 5_000) == "p99 over 5,000 ms"


def test_next_rate_ignores_failures_below_the_highest_rate_held() -> None:
    points = [{"rate": 2_000, "held": False}, {"rate": 4_000, "held": True}, {"rate": 8_000, "held": False}]
    assert next_rate(points, SearchPlan()) == 6_000
    assert next_rate([*points, {"rate": 7_800, "held": True}], SearchPlan()) is None  # within 10%


def test_the_plan_refuses_a_search_that_cannot_move() -> None:
    with pytest.raises(ValueError, match="grows by more than 1"):
        SearchPlan(growth=1.0)
