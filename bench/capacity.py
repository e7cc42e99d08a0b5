"""The live capacity of a way into the pipeline: the highest steady rate whose p99 event-to-queryable holds.

A backlog rate says how fast the pipeline empties a queue, not how fast traffic may arrive
while every event still becomes queryable in time: latency grows long before throughput
runs out (batches fill slower, commits and flushes wait on timers). So the capacity is
searched on the running pipeline, a point per rate, each measured the same way by the
caller's ``measure(rate)``: warm-up traffic at the rate, then the measured seconds, then a
wait until every event is queryable and the pipeline has drained, so no point inherits the
backlog of the one before.

The search grows the rate by ``growth`` while every point holds, shrinks it while none
does, then bisects between the highest rate that held and the lowest above it that did
not, until they are within ``resolution`` of each other, ``max_points`` were measured or
the next point would end after ``budget_s``. Every point is kept: the curve is the report.

It never grows past ``most_eps``, the rate the pipeline empties a backlog at when the run
measured it: no steady rate above its throughput holds, yet a short point above it can
pass, the queue it builds in a few seconds still draining within the target.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# A point's traffic must arrive at close to the rate asked for: a load generator that falls
# behind offers less than the rate, and the latency it sees says nothing about that rate.
ACHIEVED_SHARE = 0.95

Measure = Callable[[float], dict[str, Any]]
"""rate -> figures of one point: p50, p95, p99, max (ms), events, achieved_eps, failed (requests, if any)."""


@dataclass(frozen=True)
class SearchPlan:
    """How a capacity search spends its time."""

    target_p99_ms: float = 5_000.0
    point_s: float = 8.0  # measured seconds of each point, after its warm-up
    warmup_s: float = 3.0  # uncounted traffic at the point's rate first: batches and timers in their steady state
    max_points: int = 6
    budget_s: float = 90.0  # no point starts that would (judging by the longest so far) end after this
    growth: float = 2.0
    resolution: float = 0.1  # stop once the highest rate held is within 10% of the lowest above it that failed

    def __post_init__(self) -> None:
        if self.target_p99_ms <= 0 or self.point_s <= 0 or self.warmup_s < 0 or self.budget_s < 0:
            raise ValueError("the target and the point's seconds must be positive, warm-up and budget not negative")
        if self.max_points < 1 or self.growth <= 1 or self.resolution <= 0:
            raise ValueError("a search measures at least one point, grows by more than 1 and needs a resolution")


def shortfall(rate: float, figures: dict[str, Any], target_p99_ms: float) -> str | None:
    """Why the point at ``rate`` did not hold (None if it did): failed requests, a rate not reached, or p99."""
    if failed := figures.get("failed"):
        return f"{failed:,} requests failed"
    if figures["achieved_eps"] < rate * ACHIEVED_SHARE:
        return f"only {figures['achieved_eps']:,.0f} events/s sent"
    if figures["p99"] > target_p99_ms:
        return f"p99 over {target_p99_ms:,.0f} ms"
    return None


def next_rate(points: Sequence[dict[str, Any]], plan: SearchPlan, most_eps: float | None = None) -> float | None:
    """The rate to measure after ``points`` (each with ``rate`` and ``held``), or None when the search is done."""
    held = max((p["rate"] for p in points if p["held"]), default=None)
    failed = min((p["rate"] for p in points if not p["held"] and (held is None or p["rate"] > held)), default=None)
    if held is None:
        return failed / plan.growth if failed is not None else None
    if failed is None:
        if most_eps is None:
            return held * plan.growth
        return min(held * plan.growth, most_eps) if held < most_eps else None
    return (held + failed) / 2 if failed / held - 1 > plan.resolution else None


def search(measure: Measure, first_rate: float, plan: SearchPlan, log: Callable[[str], None],
           most_eps: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Measure points from ``first_rate`` on, none grown past ``most_eps`` (see the module); the curve and the
    capacity (None if no rate held)."""
    if first_rate <= 0:
        raise ValueError(f"the first rate of a capacity search must be positive, not {first_rate}")
    started = time.monotonic()
    points: list[dict[str, Any]] = []
    rate: float | None = first_rate
    while rate is not None and len(points) < plan.max_points:
        longest = max((p["seconds"] for p in points), default=0.0)
        if points and time.monotonic() - started + longest > plan.budget_s:
            log(f"  the next point ({rate:,.0f} events/s) would end after the {plan.budget_s:.0f}s budget: done")
            break
        point_started = time.monotonic()
        figures = measure(rate)
        why = shortfall(rate, figures, plan.target_p99_ms)
        points.append({"rate": rate, **figures, "held": why is None, "shortfall": why,
                       "seconds": time.monotonic() - point_started})  # fmt: skip
        log(f"  {rate:,.0f} events/s ({figures['achieved_eps']:,.0f} sent, {figures['events']:,} measured): "
            f"p50 {figures['p50']:,.0f} ms, p95 {figures['p95']:,.0f} ms, p99 {figures['p99']:,.0f} ms, "
            f"max {figures['max']:,.0f} ms: {'held' if why is None else why} ({points[-1]['seconds']:.0f}s)")  # fmt: skip
        rate = next_rate(points, plan, most_eps)
    return {
        "target_p99_ms": plan.target_p99_ms,
        "first_rate_eps": first_rate,
        "most_eps": most_eps,
        "capacity_eps": max((p["rate"] for p in points if p["held"]), default=None),
        "points": points,
        "seconds": time.monotonic() - started,
    }
