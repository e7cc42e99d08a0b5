"""When the sink calls itself stalled: the rule alone, fed with timestamps and lag (no clock, no Kafka).

A sink is *stalled* when it holds partitions with lag (records not yet durable in ClickHouse)
and has made no progress, no record consumed and no rows inserted, for ``stall_seconds``. A
sink without lag is healthy however long it idles; a sink retrying a batch through a
ClickHouse outage makes no progress and says so. The stall clock starts at the later of the
last progress and the moment lag appeared, so records arriving at a sink idle for an hour do
not make it stalled before it had a chance to read them.

The sink's loop writes and the HTTP thread reads; every update is one attribute assignment,
atomic under the GIL, so a reader sees each value at most one update old.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Health:
    """What ``/healthz`` answers."""

    stalled: bool
    seconds_since_progress: float
    lag: int

    def body(self) -> dict[str, object]:
        return {
            "status": "stalled" if self.stalled else "ok",
            "seconds_since_progress": round(self.seconds_since_progress, 3),
            "lag": self.lag,
        }


class Liveness:
    """The stall rule over the sink's progress and lag; times are seconds of one monotonic clock."""

    def __init__(self, stall_seconds: float, now: float) -> None:
        self._stall_seconds = stall_seconds
        self._progress_at = now
        self._lagging_since = now
        self._lag = 0

    def progressed(self, now: float) -> None:
        """A record was consumed or rows were inserted."""
        self._progress_at = now

    def record_lag(self, lag: int, now: float) -> None:
        """Records in the sink's partitions not yet durable in ClickHouse, as of ``now``."""
        if lag > 0 and self._lag <= 0:
            self._lagging_since = now
        self._lag = lag

    def seconds_since_progress(self, now: float) -> float:
        return now - self._progress_at

    def health(self, now: float) -> Health:
        waiting = now - max(self._progress_at, self._lagging_since)
        return Health(self._lag > 0 and waiting >= self._stall_seconds, self.seconds_since_progress(now), self._lag)
