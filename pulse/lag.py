"""The end-to-end lag histogram, shared by every stage so they report one metric.

Each stage observes ``now - event time`` when it handles an event, labelled by stage
(``worker`` when the worker publishes it, ``sink`` when rows become queryable in ClickHouse).

Stages observe whole batches (a record's events, a sink insert), so the histogram takes a
batch at once: ``prometheus_client.Histogram.observe`` takes its lock and searches its buckets
for every event, which cost the worker as much as de-duplicating them. The samples exposed are
those of a ``Histogram`` with the same buckets.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import REGISTRY
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

INF = float("inf")
LAG_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400, INF)


class BatchHistogram(Collector):
    """A histogram with one label, ``stage``, observed a batch of event times at a time."""

    def __init__(self, name: str, documentation: str, buckets_s: Sequence[float]) -> None:
        self.name = name
        self._documentation = documentation
        self._bounds_s = (*buckets_s, INF) if buckets_s[-1] != INF else tuple(buckets_s)  # +Inf last, as a Histogram
        self._bounds_ms = [bound * 1000 for bound in self._bounds_s[:-1]]  # a lag past all of them counts in +Inf
        self._lock = threading.Lock()  # a scrape reads from another thread
        self._counts: dict[str, list[int]] = {}  # per stage, per bucket (not cumulative)
        self._sums_s: dict[str, float] = {}

    def observe(self, stage: str, event_times_ms: Iterable[int], now_ms: float) -> None:
        """Observe ``now_ms - t`` in seconds for every event time ``t``."""
        bounds, find = self._bounds_ms, bisect_left
        added = [0] * len(self._bounds_s)
        total_ms = 0.0
        for ts in event_times_ms:
            lag_ms = now_ms - ts
            added[find(bounds, lag_ms)] += 1  # the first bucket whose bound the lag does not exceed
            total_ms += lag_ms
        with self._lock:
            counts = self._counts.setdefault(stage, [0] * len(added))
            for index, count in enumerate(added):
                counts[index] += count
            self._sums_s[stage] = self._sums_s.get(stage, 0.0) + total_ms / 1000

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self._documentation, labels=["stage"])
        with self._lock:
            stages = [(stage, list(counts), self._sums_s[stage]) for stage, counts in self._counts.items()]
        for stage, counts, sum_s in stages:
            cumulative, buckets = 0, []
            for bound, count in zip(self._bounds_s, counts, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric([stage], buckets, sum_s)
        yield family


EVENT_LAG = BatchHistogram(
    "pulse_event_lag_seconds", "Now minus event time when a stage handled an event (end-to-end lag).", LAG_BUCKETS_S
)
REGISTRY.register(EVENT_LAG)


def observe_lag(stage: str, event_times_ms: Iterable[int]) -> None:
    """Record the lag of events handled now by ``stage``."""
    EVENT_LAG.observe(stage, event_times_ms, time.time() * 1000)
