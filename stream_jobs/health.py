"""Is the worker ready, and is it alive? Pure rules over what the Faust wiring observes.

**Ready**: it joined its group, holds its partitions, restored their state (Faust's
recovery completed and no rebalance is under way) and rebuilt their timers, each
partition's followed by a tick in Kafka that fires what came due meanwhile. ``pulse up``,
the tests and the benchmark wait for this before they produce, so they never race a
worker still joining, and a check after the input is committed sees the timers' rows.

**Alive** (``/healthz``): a worker can look busy and be stuck. It is *stalled* when

- it holds partitions with records waiting, yet has processed nothing for
  ``stall_seconds`` (counted from the later of its last progress and the moment records
  started waiting, so records reaching a worker idle for an hour do not make it stalled); or
- a partition's committed offset has not moved for ``stall_seconds`` although records after
  it were processed: the ack bookkeeping is waiting on a hole (see
  :mod:`stream_jobs.faust_fixes`), and a restart is the way out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class PartitionProgress:
    """One input partition: last offset processed, committed offset, since when processing is ahead of the commit."""

    processed: int = -1
    committed: int | None = None
    ahead_since: float | None = None  # the commit has not moved since records past it were processed

    def is_ahead(self) -> bool:
        return self.processed >= 0 and (self.committed is None or self.processed + 1 > self.committed)


@dataclass(frozen=True)
class Verdict:
    alive: bool
    reason: str
    seconds_since_progress: float


@dataclass
class WorkerHealth:
    """Readiness and liveness of one worker, fed with monotonic times."""

    stall_seconds: float
    started_at: float
    ready: bool = False
    last_progress: float | None = None
    partitions: dict[int, PartitionProgress] = field(default_factory=dict)
    lag: dict[int, int] = field(default_factory=dict)
    waiting_since: float | None = None  # when records started waiting (lag went from none to some)

    def processed(self, partition: int, offset: int, now: float) -> None:
        """A record of ``partition`` was handled."""
        progress = self.partitions.setdefault(partition, PartitionProgress())
        progress.processed = offset
        if progress.ahead_since is None and progress.is_ahead():
            progress.ahead_since = now
        self.last_progress = now

    def observe(self, now: float, ready: bool, committed: Mapping[int, int | None], highwaters: Mapping[int, int]) -> None:
        """The periodic look at the consumer: readiness, committed offsets and end offsets of the partitions held."""
        self.ready = ready
        for partition in list(self.partitions):
            if partition not in committed:
                del self.partitions[partition]  # revoked
        for partition, offset in committed.items():
            progress = self.partitions.setdefault(partition, PartitionProgress(committed=offset))
            if progress.committed != offset:  # the commit moved: the clock starts again, if still behind
                progress.committed = offset
                progress.ahead_since = now if progress.is_ahead() else None
        self.lag = {
            p: max(0, end - max(self.partitions[p].processed + 1, self.partitions[p].committed or 0))
            for p, end in highwaters.items()
            if p in self.partitions
        }
        if not any(self.lag.values()):
            self.waiting_since = None
        elif self.waiting_since is None:
            self.waiting_since = now

    def verdict(self, now: float) -> Verdict:
        since = now - (self.last_progress if self.last_progress is not None else self.started_at)
        waiting = sum(self.lag.values())
        if waiting and now - max(now - since, self.waiting_since or now) > self.stall_seconds:
            return Verdict(False, f"{waiting} records waiting, none processed for {since:.0f}s", since)
        for partition, progress in sorted(self.partitions.items()):
            if progress.ahead_since is not None and now - progress.ahead_since > self.stall_seconds:
                return Verdict(
                    False,
                    f"partition {partition}: commit stuck at {progress.committed} for {now - progress.ahead_since:.0f}s "
                    f"while records up to {progress.processed} were processed",
                    since,
                )
        return Verdict(True, "ok", since)
