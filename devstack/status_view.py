"""What ``pulse status`` and ``pulse top`` show: each stage's health, lag and throughput at a glance.

Pure: a :class:`Snapshot` (what :mod:`devstack.status_probe` saw of the stack at one moment)
becomes a :class:`View` (a row per stage plus the pipeline's totals), rendered as a table or as
JSON. Rates and the latency window need two snapshots: ``status`` takes them a second apart and
``top`` uses consecutive refreshes, so both draw the same view the same way.

The event counters are chosen so the rows can be read along the pipeline: events the collector
put into Kafka, events the worker read from the events topic, events rows the sink made
queryable. A stage that restarted starts its counters at zero again; as in Prometheus, a counter
that went down counts from zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from pulse.outputs import VALID_EVENTS
from sinks.rows import REJECTED

Labels = frozenset[tuple[str, str]]

CLEAR_SCREEN = "\x1b[H\x1b[2J"

# The counter of events each stage handled: (sample name, labels it must carry).
EVENT_COUNTERS: Mapping[str, tuple[str, Mapping[str, str]]] = {
    "collector": ("pulse_collector_events_total", {"outcome": "accepted"}),
    "worker": ("pulse_events_in_total", {}),
    "sink": ("pulse_rows_inserted_total", {"table": VALID_EVENTS.table}),
}
# Dead letters the worker counts by reason; the others each have a counter of their own.
INVALID_EVENTS = "pulse_events_invalid_total"
DEAD_LETTER_COUNTERS: Sequence[tuple[str, Mapping[str, str], str]] = (
    ("pulse_late_events_total", {}, "too_late"),
    ("pulse_publish_rejected_total", {}, "publish_rejected"),
    ("pulse_rows_refused_total", {}, REJECTED),
    ("pulse_sink_unreadable_records_total", {}, "sink_unreadable"),  # sinks.sink.UNREADABLE, 0.2 s to import
    ("pulse_collector_events_total", {"outcome": "rejected"}, "refused_by_collector"),
)
LATENCY_HISTOGRAM = "pulse_event_lag_seconds_bucket"
LATENCY_STAGE = "sink"  # the lag observed when rows become queryable: event to queryable
OPEN_SESSIONS = "pulse_open_sessions"


@dataclass(frozen=True)
class Metrics:
    """The samples of one ``/metrics`` page: value by sample name, then by label set."""

    samples: Mapping[str, Mapping[Labels, float]]

    @classmethod
    def parse(cls, text: str) -> Metrics:
        """Read Prometheus' text format; ``ValueError`` if it is not."""
        samples: dict[str, dict[Labels, float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
        return cls(samples)

    def total(self, name: str, match: Mapping[str, str] | None = None) -> float:
        """The sum of ``name``'s samples whose labels include ``match`` (0 when there are none)."""
        wanted = frozenset((match or {}).items())
        return sum(value for labels, value in self.samples.get(name, {}).items() if wanted <= labels)

    def by_label(self, name: str, label: str, match: Mapping[str, str] | None = None) -> dict[str, float]:
        """``name``'s samples whose labels include ``match``, summed by the value of ``label``."""
        wanted = frozenset((match or {}).items())
        sums: dict[str, float] = {}
        for labels, value in self.samples.get(name, {}).items():
            key = dict(labels).get(label)
            if key is not None and wanted <= labels:
                sums[key] = sums.get(key, 0.0) + value
        return sums


@dataclass(frozen=True)
class Page:
    """One answer of a status page: its HTTP status and JSON body (a 503's body says why)."""

    status: int
    body: Mapping[str, Any]


@dataclass(frozen=True)
class StageProbe:
    """What one pipeline process answered; a page that did not answer is ``None``."""

    name: str  # collector, worker, worker-2, ..., sink
    kind: str  # collector, worker or sink
    address: str  # host:port of its status pages, "" when unknown (an extra worker that is gone)
    pid: int | None  # from its pid file, when ``pulse up`` started it and it runs
    health: Page | None = None
    ready: Page | None = None  # a worker's /readyz
    metrics: Metrics | None = None


@dataclass(frozen=True)
class BrokerProbe:
    bootstrap: str
    local: bool  # the project's own broker (KAFKA_BOOTSTRAP unset)
    pid: int | None
    answering: bool


@dataclass(frozen=True)
class GroupLag:
    """A consumer group's lag by (topic, partition); ``None`` when Kafka did not say."""

    stage: str  # worker or sink
    group: str
    partitions: Mapping[tuple[str, int], int] | None

    @property
    def total(self) -> int | None:
        return None if self.partitions is None else sum(self.partitions.values())


@dataclass(frozen=True)
class Snapshot:
    """The stack at one moment: ``at`` in seconds of a monotonic clock."""

    at: float
    broker: BrokerProbe
    stages: tuple[StageProbe, ...]
    groups: tuple[GroupLag, ...]


@dataclass(frozen=True)
class Row:
    """One stage as shown: ``state`` is up, starting, stalled or down, and ``note`` says where or why."""

    stage: str
    state: str
    pid: int | None
    lag: int | None
    events: int | None
    events_per_s: float | None
    note: str

    @property
    def healthy(self) -> bool:
        return self.state == "up"


@dataclass(frozen=True)
class Latency:
    """Event-to-queryable quantiles over the last ``window_s`` seconds, or since the sink started when ``None``."""

    p50_s: float | None
    p99_s: float | None
    window_s: float | None


@dataclass(frozen=True)
class View:
    """What ``pulse status`` prints: a row per stage, then the pipeline's totals."""

    rows: tuple[Row, ...]
    groups: tuple[GroupLag, ...]
    latency: Latency
    dead_letters: Mapping[str, int]
    open_sessions: int | None

    @property
    def healthy(self) -> bool:
        return all(row.healthy for row in self.rows)


def build_view(now: Snapshot, before: Snapshot | None = None) -> View:
    """The view of ``now``, with rates and latency since ``before`` (same stage names) when given."""
    earlier = {stage.name: stage for stage in before.stages} if before else {}
    seconds = now.at - before.at if before else 0.0
    lags = {group.stage: group for group in now.groups}
    rows = [_broker_row(now.broker)]
    rows += [_stage_row(stage, earlier.get(stage.name), seconds, lags.get(stage.kind)) for stage in now.stages]
    answered = [stage.metrics for stage in now.stages if stage.metrics is not None]
    sessions = [m.total(OPEN_SESSIONS) for stage in now.stages if stage.kind == "worker" and (m := stage.metrics)]
    return View(
        rows=tuple(rows),
        groups=now.groups,
        latency=_latency(now, before),
        dead_letters=_dead_letters(answered),
        open_sessions=int(sum(sessions)) if sessions else None,
    )


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``(le, count)`` buckets; ``None`` without observations.

    Linear within the bucket holding the rank; a rank in the +Inf bucket answers the highest
    finite bound, as Prometheus does.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def increase(now: float, before: float) -> float:
    """How much a counter grew; one that went down was reset by a restart and counts from zero."""
    return now if now < before else now - before


def render(view: View) -> str:
    """The view as aligned columns, then one line each for lag, latency, dead letters and sessions."""
    header = ("STAGE", "STATE", "PID", "LAG", "EVENTS/S", "EVENTS", "NOTE")
    cells = [
        (row.stage, row.state, _text(row.pid), _text(row.lag), _rate(row.events_per_s), _text(row.events), row.note)
        for row in view.rows
    ]
    letters = ", ".join(f"{reason} {count}" for reason, count in view.dead_letters.items()) or "none"
    groups = ", ".join(f"{group.stage} group {group.group} {_text(group.total)}" for group in view.groups)
    unhealthy = [f"{row.stage} {row.state}" for row in view.rows if not row.healthy]
    lines = [
        *_table([header, *cells], right_aligned={2, 3, 4, 5}),
        "",
        f"consumer lag:   {groups}",
        f"latency:        {_latency_text(view.latency)}",
        f"dead letters:   {letters}",
        f"open sessions:  {_text(view.open_sessions)}",
        "healthy" if view.healthy else f"unhealthy: {', '.join(unhealthy)}",
    ]
    return "\n".join(lines)


def top_screen(view: View, interval_s: float, clock: str) -> str:
    """A whole screen of ``pulse top``: clear, a title with the refresh interval and time, the view."""
    return f"{CLEAR_SCREEN}pulse top  {clock}  (every {interval_s:g}s, Ctrl-C to quit)\n\n{render(view)}\n"


def as_json(view: View) -> bytes:
    """The view for scripts: every number raw, ``null`` for what is unknown."""
    latency = view.latency
    return orjson.dumps(
        {
            "healthy": view.healthy,
            "stages": [
                {
                    "stage": row.stage,
                    "state": row.state,
                    "healthy": row.healthy,
                    "pid": row.pid,
                    "lag": row.lag,
                    "events": row.events,
                    "events_per_s": row.events_per_s,
                    "note": row.note,
                }
                for row in view.rows
            ],
            "consumer_groups": [{"stage": g.stage, "group": g.group, "lag": g.total} for g in view.groups],
            "latency_seconds": {"p50": latency.p50_s, "p99": latency.p99_s, "window": latency.window_s},
            "dead_letters": view.dead_letters,
            "open_sessions": view.open_sessions,
        },
        option=orjson.OPT_INDENT_2,
    )


def _broker_row(broker: BrokerProbe) -> Row:
    where = broker.bootstrap if broker.local else f"external {broker.bootstrap}"
    if not broker.answering:
        return Row("kafka", "down", broker.pid, None, None, None, f"{where} does not answer")
    return Row("kafka", "up", broker.pid, None, None, None, where)


def _stage_row(stage: StageProbe, before: StageProbe | None, seconds: float, group: GroupLag | None) -> Row:
    if stage.health is None:
        why = f"{stage.address} does not answer" if stage.address else "not running"
        return Row(stage.name, "down", stage.pid, None, None, None, why)
    state, why = _state(stage, stage.health)
    held = _partitions(stage)
    events, earlier = _events(stage), _events(before) if before else None
    rate = increase(events, earlier) / seconds if events is not None and earlier is not None and seconds > 0 else None
    partitions = f"partitions {','.join(map(str, held))}" if held else ""
    note = " ".join(part for part in (stage.address, why, partitions) if part)
    return Row(stage.name, state, stage.pid, _lag(stage, group), None if events is None else int(events), rate, note)


def _state(stage: StageProbe, health: Page) -> tuple[str, str]:
    """Up, stalled (/healthz 503) or starting (/readyz 503), and the reason the page gave."""
    if health.status != 200:
        body = health.body
        if "reason" in body:  # a worker says why
            return "stalled", str(body["reason"])
        if "lag" in body:  # the sink gives its numbers
            return (
                "stalled",
                f"{body['lag']} records behind, no progress for {body.get('seconds_since_progress', 0):.0f}s",
            )
        return "stalled", f"HTTP {health.status} {orjson.dumps(body).decode()}"
    if stage.ready is not None and stage.ready.status != 200:
        return "starting", "joining its group or restoring state"
    if stage.kind == "worker" and stage.ready is None:
        return "starting", "/readyz does not answer"
    return "up", ""


def _partitions(stage: StageProbe) -> list[int]:
    """The events partitions a worker holds, as its /readyz lists them."""
    return list(stage.ready.body.get("partitions") or ()) if stage.ready else []


def _lag(stage: StageProbe, group: GroupLag | None) -> int | None:
    """The group's lag on the partitions this process holds: a worker says which, the one sink holds them all."""
    if group is None or group.partitions is None:
        return None
    if stage.kind == "sink":
        return group.total
    held = set(_partitions(stage))
    return sum(lag for (_topic, partition), lag in group.partitions.items() if partition in held)


def _events(stage: StageProbe) -> float | None:
    counter = EVENT_COUNTERS.get(stage.kind)
    if counter is None or stage.metrics is None:
        return None
    name, match = counter
    return stage.metrics.total(name, match)


def _latency(now: Snapshot, before: Snapshot | None) -> Latency:
    """Quantiles of the events that became queryable since ``before``, or of all since the sink started if none did."""
    current = _sink_buckets(now)
    if before is not None and (earlier := _sink_buckets(before)):
        window = sorted((le, increase(count, earlier.get(le, 0.0))) for le, count in current.items())
        if window and window[-1][1] > 0:
            return Latency(quantile(0.5, window), quantile(0.99, window), now.at - before.at)
    cumulative = sorted(current.items())
    return Latency(quantile(0.5, cumulative), quantile(0.99, cumulative), None)


def _sink_buckets(snapshot: Snapshot) -> dict[float, float]:
    buckets: dict[float, float] = {}
    for stage in snapshot.stages:
        if stage.metrics is not None:
            for le, count in stage.metrics.by_label(LATENCY_HISTOGRAM, "le", {"stage": LATENCY_STAGE}).items():
                buckets[float(le)] = buckets.get(float(le), 0.0) + count
    return buckets


def _dead_letters(pages: Sequence[Metrics]) -> dict[str, int]:
    counts: dict[str, float] = {}
    for metrics in pages:
        for reason, count in metrics.by_label(INVALID_EVENTS, "reason").items():
            counts[reason] = counts.get(reason, 0.0) + count
        for name, match, reason in DEAD_LETTER_COUNTERS:
            counts[reason] = counts.get(reason, 0.0) + metrics.total(name, match)
    return {reason: int(count) for reason, count in sorted(counts.items()) if count > 0}


def _table(rows: Sequence[Sequence[str]], right_aligned: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(w) if i in right_aligned else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _text(value: int | None) -> str:
    return "-" if value is None else str(value)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _latency_text(latency: Latency) -> str:
    if latency.p50_s is None or latency.p99_s is None:
        return "no event queryable yet"
    window = "since the sink started" if latency.window_s is None else f"over the last {latency.window_s:.1f}s"
    return f"event to queryable p50 {latency.p50_s:.2f}s, p99 {latency.p99_s:.2f}s {window}"
