"""The stream jobs run in process, uninterrupted, over the lines a pipeline was fed: what it must end with.

A killed and restarted worker, a rebalance or any packing of events into records must end
with the funnel steps, churn scores and alerts of one calm pass over the same lines. This
module is that calm pass: the same :class:`~stream_jobs.runner.JobRunner` and jobs, a dict
for the state store, each line its own record in the partition its user hashes to (the
outcome does not depend on packing), followed at once by the records the runner sends the
events topic for it (the steps of an identity merge), and at the end an idle tick far enough ahead that
every partition's event time follows the clock to ``end_ms``, as the running worker's
does once traffic stops.

It witnesses the streaming machinery (replays, kills, partitions), not the scoring: the
scoring and funnel rules have unit tests of their own, and the simulator's ground truth
checks what they compute.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ops.reader import run_query
from pulse.outputs import CHURN_ALERTS, CHURN_SCORES, FUNNEL_STEPS
from pulse.partitioning import partition_for
from pulse.settings import Settings
from stream_jobs.runner import JobRunner, Output


@dataclass
class ReferenceOutcome:
    """What the jobs publish, folded as ClickHouse reads it with FINAL."""

    funnel_steps: dict[str, dict[str, Any]] = field(default_factory=dict)  # by step_id
    churn_scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # the latest version by user
    churn_alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # by alert_id
    repeated_alerts: int = 0  # alert ids published more than once (none in a calm pass)
    newest: dict[int, int] = field(default_factory=dict)  # the newest event time of each partition

    def settled_before(self, lateness_ms: int) -> int:
        """An event time every partition's watermark has passed once the lines are in: rows stamped before
        it are final in any run, whenever its clock stopped."""
        return min(self.newest.values()) - lateness_ms

    def add(self, out: Output) -> None:
        for row in out.rows.get(FUNNEL_STEPS, []):
            self.funnel_steps[row["step_id"]] = row  # type: ignore[index]
        for row in out.rows.get(CHURN_SCORES, []):
            known = self.churn_scores.get(row["user_id"])  # type: ignore[index]
            if known is None or row["version"] >= known["version"]:  # type: ignore[index]
                self.churn_scores[row["user_id"]] = row  # type: ignore[index]
        for row in out.rows.get(CHURN_ALERTS, []):
            self.repeated_alerts += row["alert_id"] in self.churn_alerts  # type: ignore[index]
            self.churn_alerts[row["alert_id"]] = row  # type: ignore[index]


def reference_run(settings: Settings, lines: Iterable[bytes], end_ms: int | None = None) -> ReferenceOutcome:
    """Every line through one runner, then every partition's clock moved to ``end_ms`` (default: now)."""
    outcome = ReferenceOutcome()
    for partition, out in calm_pass(settings, lines, end_ms):
        outcome.add(out)
        if out.valid_times:
            outcome.newest[partition] = max(outcome.newest.get(partition, 0), *out.valid_times)
    return outcome


def calm_pass(settings: Settings, lines: Iterable[bytes], end_ms: int | None = None) -> Iterator[tuple[int, Output]]:
    """The output of each line (with its partition), then of each partition's idle tick at ``end_ms`` (default: now)."""
    store: dict[bytes, bytes] = {}
    runner = JobRunner(settings, store)
    offsets = [0] * settings.partitions
    for line in lines:
        try:
            user_id = orjson.loads(line).get("user_id")
        except (orjson.JSONDecodeError, AttributeError):
            user_id = None
        queued = deque([(user_id if isinstance(user_id, str) else "", line, {})])
        while queued:  # the line, then what the runner sent the events topic for it (identity stitching), in order
            key, value, headers = queued.popleft()
            partition = partition_for(key, settings.partitions) if key else 0
            out = runner.handle(value, "reference", partition, offsets[partition], key.encode(), headers)
            out.apply_writes(store)
            offsets[partition] += 1
            queued += [(reroute.user_id, reroute.value, dict(reroute.headers)) for reroute in out.reroutes]
            yield partition, out
    wall_ms = time.time_ns() // 1_000_000 if end_ms is None else end_ms
    idle_ms = int(settings.sessions.idle_close_seconds * 1000)
    for partition in range(settings.partitions):
        out = runner.tick(partition, wall_ms + idle_ms + 1)
        out.apply_writes(store)
        yield partition, out


FOUND_STEPS = "SELECT step_id, toUnixTimestamp64Milli(ts), event_id, since_entry_s FROM funnel_steps FINAL"
FOUND_ALERTS = "SELECT alert_id, user_id, old_tier, new_tier, toUnixTimestamp64Milli(ts) FROM churn_alerts FINAL"
SHOWN = 3  # ids quoted per difference


def job_output_differences(settings: Settings, expected: ReferenceOutcome, settled_before_ms: int) -> list[str]:
    """Funnel steps and alerts in ClickHouse next to a calm run's, up to event time ``settled_before_ms``.

    Rows stamped later are left out: the running worker and the calm run publish them once
    their own event time passes, which depends on when each saw its last event.
    """
    found_steps = {row[0]: tuple(row[1:]) for row in run_query(settings, FOUND_STEPS).rows if row[1] < settled_before_ms}
    steps = {step_id: (row["ts"], row["event_id"], row["since_entry_s"])
             for step_id, row in expected.funnel_steps.items() if row["ts"] < settled_before_ms}  # fmt: skip
    found_alerts = {row[0]: tuple(row[1:]) for row in run_query(settings, FOUND_ALERTS).rows if row[4] < settled_before_ms}
    alerts = {alert_id: (row["user_id"], row["old_tier"], row["new_tier"], row["ts"])
              for alert_id, row in expected.churn_alerts.items() if row["ts"] < settled_before_ms}  # fmt: skip
    return [*_differences("funnel steps", found_steps, steps), *_differences("churn alerts", found_alerts, alerts)]


def _differences(what: str, found: dict[str, tuple[Any, ...]], expected: dict[str, tuple[Any, ...]]) -> list[str]:
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    changed = sorted(key for key in found.keys() & expected.keys() if found[key] != expected[key])
    if not (missing or unexpected or changed):
        return []
    parts = [f"{len(ids)} {label}, e.g. {', '.join(ids[:SHOWN])}"
             for label, ids in (("missing", missing), ("unexpected", unexpected), ("different", changed)) if ids]  # fmt: skip
    return [f"{what} {len(found)} (expected {len(expected)}): {'; '.join(parts)}"]
