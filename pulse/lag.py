"""The end-to-end lag histogram, shared by every stage so they report one metric.

Each stage observes ``now - event time`` when it handles an event, labelled by stage
(``validator`` in the worker, ``sink`` when rows become queryable in ClickHouse).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import Histogram

EVENT_LAG = Histogram(
    "pulse_event_lag_seconds",
    "Now minus event time when a stage handled an event (end-to-end lag).",
    ["stage"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400, float("inf")),
)


def observe_lag(stage: str, event_times_ms: Iterable[int]) -> None:
    """Record the lag of events handled now by ``stage``."""
    histogram = EVENT_LAG.labels(stage)
    now_ms = time.time() * 1000
    for ts in event_times_ms:
        histogram.observe((now_ms - ts) / 1000)
