"""Measures of the running pipeline: throughput per stage, event-to-queryable latency, worker memory.

The functions here read the pipeline only from outside (Kafka offsets, the worker's status
page, the sink's ``/query``), so they measure any version of the worker the same way.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ops.consumer_lag import wait_caught_up, wait_pipeline_caught_up
from ops.reader import QueryError, run_query
from producers import EventProducer
from pulse.contract import Invalid
from pulse.settings import Settings
from pulse.topics import Topics

CATCH_UP_S = 900.0
READY_TIMEOUT_S = 120.0
QUERYABLE_TIMEOUT_S = 180.0


# --- the worker's status page ----------------------------------------------------------


def _get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def worker_ready(port: int) -> bool:
    """Whether the worker on ``port`` says it is ready.

    ``/readyz`` answers 200 ``{"status": "ready"}`` once it joined its group and restored its
    state. A worker from before ``/readyz`` serves its metrics on every path: it counts as
    ready once they show ``pulse_worker_started 1.0`` (agents started; it may still be
    joining its group, which the probe after it waits out).
    """
    try:
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
    except OSError:
        return False
    if "pulse_worker_started" in body:  # the old worker: metrics on every path, no /readyz
        return "pulse_worker_started 1.0" in body
    return status == 200 and '"ready"' in body


def wait_worker_ready(port: int, timeout: float = READY_TIMEOUT_S) -> float:
    """Block until the worker on ``port`` is ready; the seconds it took."""
    started = time.monotonic()
    while not worker_ready(port):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the worker on port {port} was not ready after {timeout:.0f}s")
        time.sleep(0.05)
    return time.monotonic() - started


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def worker_metrics(port: int) -> dict[str, float]:
    """The worker's Prometheus samples (``name{labels}`` -> value); empty if it does not answer."""
    try:
        status, body = _get(f"http://127.0.0.1:{port}/metrics")
    except OSError:
        return {}
    samples: dict[str, float] = {}
    for line in body.splitlines() if status == 200 else ():
        if (match := _SAMPLE.match(line)) is not None:
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


# --- backlog ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CatchUp:
    """Seconds from the start of the clock (the worker ready) to each point of a backlog run."""

    worker_s: float  # the worker committed everything
    sink_s: float  # then the sink committed everything
    steady_eps: float | None  # the worker's own rate, from its event counter between 10% and 90% of the backlog
    steady_cpu: float | None  # the worker's CPU over the same span, in cores (1.0: one core busy all the time)


class _CounterSampler(threading.Thread):
    """Reads the worker's event counter and CPU time every ``period`` s: (seconds since ``started``, events, CPU s).

    The CPU time is the worker's own ``process_cpu_seconds_total`` (None if it exports none).
    """

    def __init__(self, port: int, started: float, period: float = 0.25) -> None:
        super().__init__(name="counter-sampler", daemon=True)
        self.port, self.started, self.period = port, started, period
        self.samples: list[tuple[float, float, float | None]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            samples = worker_metrics(self.port)
            value = samples.get("pulse_events_in_total")
            if value is not None:
                cpu = samples.get("process_cpu_seconds_total")
                self.samples.append((time.perf_counter() - self.started, value, cpu))
            self.done.wait(self.period)

    def left_zero(self) -> float:
        """When the counter was last read at 0 (0.0, the start, if never): just before the first event."""
        return max((t for t, value, _ in self.samples if value == 0), default=0.0)

    def steady_eps(self, low: float = 0.1, high: float = 0.9) -> float | None:
        """Events a second between the moments the counter passed ``low`` and ``high`` of its last value
        (None when the samples do not show both: a backlog too short, or mostly done before the clock)."""
        span = self._steady_span(low, high)
        return None if span is None else self.samples[-1][1] * (high - low) / (span[1] - span[0])

    def steady_cpu(self, low: float = 0.1, high: float = 0.9) -> float | None:
        """The worker's CPU seconds a second over the span of :meth:`steady_eps`: the share of a core it used."""
        span = self._steady_span(low, high)
        if span is None:
            return None
        cpu = [(t, seconds) for t, _, seconds in self.samples if seconds is not None]
        start, end = _interpolate(cpu, span[0]), _interpolate(cpu, span[1])
        return None if start is None or end is None else (end - start) / (span[1] - span[0])

    def _steady_span(self, low: float, high: float) -> tuple[float, float] | None:
        """When the counter passed ``low`` and when ``high`` of its last value, if the samples show both."""
        final = self.samples[-1][1] if self.samples else 0.0
        by_count = [(value, t) for t, value, _ in self.samples]
        start, end = _interpolate(by_count, final * low), _interpolate(by_count, final * high)
        return (start, end) if start is not None and end is not None and end > start else None


def _interpolate(points: Sequence[tuple[float, float]], x: float) -> float | None:
    """y at ``x`` on the line through ``points`` (x rising), from the first pair of points around it; None outside."""
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 <= x <= x1 and x1 > x0:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def timed_catch_up(settings: Settings, starting: Callable[[], None] | None = None) -> CatchUp:
    """Times until the worker, then the sink, have committed everything produced so far; the worker's steady rate.

    ``starting``: brings the pipeline up on a backlog already published. The clock then starts
    at the worker's first event (its last counter reading at 0), not when ``starting`` returns:
    a worker reads its backlog while the rest boots (collector, readiness), and validating alone
    (45,000 events/s) it was past a tenth of the backlog before a later clock, which then
    overstated the rate and left no steady one. Without ``starting`` (the worker already at
    work) the clock starts with the call.
    """
    topics = Topics.with_prefix(settings.topic_prefix)
    started = time.perf_counter()
    sampler = _CounterSampler(settings.worker_metrics_port, started)
    sampler.start()
    try:
        if starting is not None:
            starting()
        wait_caught_up(settings.bootstrap, settings.worker_group, [topics.events], CATCH_UP_S, poll_s=0.1)
        worker_done = time.perf_counter() - started
    finally:
        sampler.done.set()
        sampler.join()
    wait_caught_up(settings.bootstrap, settings.sink_group, topics.sink_inputs(), CATCH_UP_S, poll_s=0.1)
    origin = sampler.left_zero() if starting is not None else 0.0
    sink_done = time.perf_counter() - started
    return CatchUp(worker_done - origin, sink_done - origin, sampler.steady_eps(), sampler.steady_cpu())


# --- event to queryable ----------------------------------------------------------------


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def count_queryable(settings: Settings, id_prefix: str) -> int:
    """Distinct events whose id starts with ``id_prefix`` that a query sees now."""
    try:
        return int(
            run_query(
                settings, f"SELECT uniqExact(event_id) FROM events WHERE startsWith(event_id, {_quote(id_prefix)})"
            ).scalar()
        )
    except QueryError:
        return 0


def wait_queryable(settings: Settings, id_prefix: str, expected: int, timeout: float = QUERYABLE_TIMEOUT_S) -> float:
    """Block until ``expected`` events with ids starting ``id_prefix`` are queryable; the seconds it took."""
    started = time.monotonic()
    while (seen := count_queryable(settings, id_prefix)) < expected:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{seen} of {expected} events {id_prefix}* queryable after {timeout:.0f}s")
        time.sleep(0.05)
    return time.monotonic() - started


def probe(settings: Settings, timeout: float = QUERYABLE_TIMEOUT_S) -> float:
    """Produce one event and wait until a query sees it; the seconds from produce to queryable."""
    event_id = f"probe-{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    with EventProducer.from_settings(settings) as producer:
        producer.send(
            {"event_id": event_id, "type": "login", "user_id": "bench-probe", "ts": time.time_ns() // 1_000_000}
        )
    wait_queryable(settings, event_id, 1, timeout)
    return time.monotonic() - started


def live_templates(lines: Sequence[bytes]) -> list[dict[str, Any]]:
    """Decoded simulated lines to replay as live traffic (the mix of types, props and users of the simulator)."""
    templates = []
    for line in lines:
        event = orjson.loads(line)
        event.pop("server_received_at", None)
        templates.append(event)
    return templates


def live_event(count: int, prefix: str, run: str, templates: Sequence[dict[str, Any]] | None = None,
               alert: bool = False) -> dict:  # fmt: skip
    """The ``count``-th event of the live run ``run``, id ``<prefix>-<run>-<count>``, stamped now.

    ``ts`` (the event time) is the wall-clock millisecond the event is made, just before it is
    sent, so ``inserted_at - ts`` in ClickHouse is its send-to-queryable time. The events are
    the ``templates`` in turn (simulated traffic; each run's users are its own), or page views
    of 5,000 users without them. With ``alert``, the event is a cancellation by a new user
    ``alert-<run>-<count>``: their tier rises to churned at once, so it raises one alert.
    """
    if alert:
        event = {"type": "subscription_cancelled", "user_id": f"alert-{run}-{count}"}
    elif templates:
        event = dict(templates[count % len(templates)])
        event["user_id"] = f"{run}-{event['user_id']}"
    else:
        event = {"type": "page_view", "user_id": f"lat-user-{count % 5000}", "context": {"path": "/"}}
    event["event_id"] = f"{prefix}-{run}-{count}"
    event["ts"] = time.time_ns() // 1_000_000
    return event


def live_events(rate: float, seconds: float, templates: Sequence[dict[str, Any]] | None = None,
                run: str | None = None, warmup_s: float = 0.0, alert_every: int = 0) -> Iterator[dict]:  # fmt: skip
    """Events (:func:`live_event`) at ``rate`` a second for ``warmup_s`` + ``seconds``.

    Ids are ``warm-<run>-N`` during the warm-up and ``lat-<run>-N`` after it; with
    ``alert_every``, every so many measured events is one that raises a churn alert. The
    caller polls the producer in between: this generator sleeps only when it is ahead of the rate.
    """
    run = run or uuid.uuid4().hex[:8]
    started = time.monotonic()
    count = 0
    while (elapsed := time.monotonic() - started) < warmup_s + seconds:
        due = int(elapsed * rate)
        while count < due:
            warm = time.monotonic() - started < warmup_s
            alert = not warm and alert_every > 0 and count % alert_every == 0
            yield live_event(count, "warm" if warm else "lat", run, templates, alert)
            count += 1
        yield {}  # a turn for the caller to poll the producer


def latency_quantiles(settings: Settings, id_prefix: str) -> dict[str, float]:
    """p50/p95/p99/max of ``inserted_at - ts`` in ms over the events with ids starting ``id_prefix``."""
    row = run_query(
        settings,
        "SELECT quantilesExact(0.5, 0.95, 0.99)(ms), max(ms), count() FROM (SELECT event_id, "
        "min(toUnixTimestamp64Milli(inserted_at)) - any(toUnixTimestamp64Milli(ts)) AS ms FROM events "
        f"WHERE startsWith(event_id, {_quote(id_prefix)}) GROUP BY event_id)",
    ).rows[0]
    p50, p95, p99 = row[0]
    return {"p50": p50, "p95": p95, "p99": p99, "max": row[1], "events": row[2]}


def settle(settings: Settings, id_prefix: str, expected: int) -> dict[str, Any]:
    """Wait until the ``expected`` events ``id_prefix``* are queryable and the pipeline has drained; their latency.

    Drained: the worker has committed every event and the sink every output, so whatever is
    measured next starts on an idle pipeline instead of behind this run's backlog.
    ``queryable_s`` and ``drained_s`` count from the call (just after the last event was sent).
    """
    started = time.monotonic()
    wait_queryable(settings, id_prefix, expected)
    queryable_s = time.monotonic() - started
    wait_pipeline_caught_up(settings, CATCH_UP_S, poll_s=0.1)
    figures: dict[str, Any] = latency_quantiles(settings, id_prefix)
    figures.update(sent=expected, queryable_s=queryable_s, drained_s=time.monotonic() - started)
    return figures


def live_point(settings: Settings, rate: float, seconds: float, templates: Sequence[dict[str, Any]] | None = None,
               warmup_s: float = 3.0, alert_every: int = 0) -> dict[str, Any]:  # fmt: skip
    """Events produced straight to Kafka at a steady ``rate`` -> rows queryable: p50/p95/p99/max in ms.

    The worker must be ready and the whole path proven (a :func:`probe`) before the first
    point. ``warmup_s`` of traffic at the rate is not counted; the ``seconds`` after it are.
    Events go through :class:`EventProducer` with its normal linger, so records are as small
    as live traffic makes them. Ends when the pipeline has drained (:func:`settle`). With
    ``alert_every``, one measured event in so many raises a churn alert: ``alerts`` gives how
    long each took from the event's sending to leaving the worker (:func:`alert_latencies`).
    """
    wait_worker_ready(settings.worker_metrics_port)
    run = uuid.uuid4().hex[:8]
    measured = alerts_sent = 0
    first_ms = last_ms = 0
    with EventProducer.from_settings(settings) as producer:
        for event in live_events(rate, seconds, templates, run, warmup_s, alert_every):
            if not event:  # nothing due: serve callbacks, send batches past their linger
                producer.poll(0.002)
                continue
            if isinstance(checked := producer.send(event), Invalid):
                raise ValueError(f"latency run: a template event is invalid ({checked.reason}): {event}")  # noqa: TRY004
            if event["event_id"].startswith("lat-"):
                measured += 1
                alerts_sent += event["user_id"].startswith("alert-")
                last_ms = event["ts"]
                first_ms = first_ms or last_ms
            producer.poll()
    if not producer.report.ok:
        raise RuntimeError(f"latency run: events not delivered: {producer.report.errors}")
    figures = settle(settings, f"lat-{run}-", measured)
    figures["achieved_eps"] = achieved_eps(measured, first_ms, last_ms)
    if alert_every:
        figures["alerts"] = {**alert_latencies(settings, f"alert-{run}-"), "sent": alerts_sent}
    return figures


def alert_latencies(settings: Settings, user_prefix: str) -> dict[str, float]:
    """p50/p99/max in ms from sending an alert's triggering event to the worker emitting the alert, and to it
    being queryable; over the alerts of users ``user_prefix``* (their event time is the sending time)."""
    row = run_query(
        settings,
        "SELECT quantilesExact(0.5, 0.99)(emitted), max(emitted), quantilesExact(0.5, 0.99)(queryable), count() "
        "FROM (SELECT any(toUnixTimestamp64Milli(emitted_at) - toUnixTimestamp64Milli(ts)) AS emitted, "
        "min(toUnixTimestamp64Milli(inserted_at)) - any(toUnixTimestamp64Milli(ts)) AS queryable FROM churn_alerts "
        f"WHERE startsWith(user_id, {_quote(user_prefix)}) GROUP BY alert_id)",
    ).rows[0]
    (p50, p99), (queryable_p50, queryable_p99) = row[0], row[2]
    return {"p50": p50, "p99": p99, "max": row[1], "queryable_p50": queryable_p50, "queryable_p99": queryable_p99,
            "alerts": row[3]}  # fmt: skip


def achieved_eps(events: int, first_ms: int, last_ms: int) -> float:
    """The rate ``events`` were sent at, the first at ``first_ms`` and the last at ``last_ms``."""
    return events / max((last_ms - first_ms) / 1000, 1e-3)


# --- memory ----------------------------------------------------------------------------


def users_events(first: int, count: int) -> Iterator[dict]:
    """One login each for users ``first`` .. ``first + count``, all now: every one keeps an open session."""
    now = time.time_ns() // 1_000_000
    for n in range(first, first + count):
        yield {"event_id": f"mem-{n}", "type": "login", "user_id": f"mem-user-{n}", "ts": now}


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # the name, in (), may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime and stime, fields 14 and 15


def publish(settings: Settings, events: Iterator[dict]) -> None:
    with EventProducer.from_settings(settings) as producer:
        for count, event in enumerate(events):
            producer.send(event)
            if count % 10_000 == 0:
                producer.poll()
