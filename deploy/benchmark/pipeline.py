"""Measures of the running pipeline: throughput per stage, event-to-queryable latency, worker memory."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from deploy.consumer_lag import wait_caught_up
from deploy.reader import run_query
from producers import EventProducer
from pulse.settings import Settings
from pulse.topics import Topics

CATCH_UP_S = 900.0


def timed_catch_up(settings: Settings) -> tuple[float, float]:
    """Seconds until the worker, then the sink, have committed everything produced so far."""
    topics = Topics.with_prefix(settings.topic_prefix)
    started = time.perf_counter()
    wait_caught_up(settings.bootstrap, settings.worker_group, [topics.events], CATCH_UP_S, poll_s=0.1)
    worker_done = time.perf_counter() - started
    wait_caught_up(settings.bootstrap, settings.sink_group, topics.sink_inputs(), CATCH_UP_S, poll_s=0.1)
    return worker_done, time.perf_counter() - started


def live_events(rate: float, seconds: float) -> Iterator[dict]:
    """Fresh page views stamped with the time they are made, at ``rate`` a second."""
    run = uuid.uuid4().hex[:8]
    started = time.monotonic()
    count = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate)
        while count < due:
            yield {"event_id": f"lat-{run}-{count}", "type": "page_view", "user_id": f"lat-user-{count % 5000}",
                   "ts": time.time_ns() // 1_000_000, "context": {"path": "/"}}  # fmt: skip
            count += 1
        time.sleep(0.002)


def latency_ms(settings: Settings, rate: float, seconds: float) -> dict[str, float]:
    """Event produced -> row in ClickHouse, p50/p95/p99 in ms, at ``rate`` events a second."""
    with EventProducer.from_settings(settings) as producer:
        for event in live_events(rate, seconds):
            producer.send(event)
            producer.poll()
    timed_catch_up(settings)
    quantiles = run_query(
        settings,
        "SELECT quantilesExact(0.5, 0.95, 0.99)(toUnixTimestamp64Milli(inserted_at) - toUnixTimestamp64Milli(ts)), "
        "count() FROM events WHERE startsWith(event_id, 'lat-')",
    ).rows[0]
    p50, p95, p99 = quantiles[0]
    return {"p50": p50, "p95": p95, "p99": p99, "events": quantiles[1]}


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


def publish(settings: Settings, events: Iterator[dict]) -> None:
    with EventProducer.from_settings(settings) as producer:
        for count, event in enumerate(events):
            producer.send(event)
            if count % 10_000 == 0:
                producer.poll()
