"""What the benchmark and a peer process agree on: the run it is given, and the stats it hands back.

A peer is started as ``python -m <its module> '<PeerRun as JSON>'``. It consumes the input
topic from the beginning in a consumer group of its own, emits a session row per event to
an output topic of its own and, once it has processed ``events`` events (the whole topic),
writes ``stats.json`` to its work directory; the benchmark then reads the output topic and
stops the process.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from stream_jobs.sessionizer import SessionRules


@dataclass(frozen=True)
class PeerRun:
    """One peer's run: where it reads and writes, the rules it applies, when it is done."""

    bootstrap: str
    input_topic: str
    output_topic: str
    group: str  # its consumer group (and Faust app id)
    partitions: int
    events: int  # the events in the input topic, one a record: done after this many
    timeout_ms: int
    max_length_ms: int
    work_dir: str  # its state directory and the stats file

    @property
    def rules(self) -> SessionRules:
        return SessionRules(self.timeout_ms, self.max_length_ms)

    @property
    def stats_path(self) -> Path:
        return Path(self.work_dir) / "stats.json"

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> PeerRun:
        return cls(**orjson.loads(text))


class Progress:
    """Counts the events a peer processed and times the first to the last.

    The clock runs from the end of the first event to the end of the last, so the rate is
    ``(events - 1) / seconds``: neither the start-up nor the wait for the first fetch counts.
    """

    def __init__(self, run: PeerRun) -> None:
        self._run = run
        self.count = 0
        self._first = self._last = 0.0

    def processed(self) -> None:
        """One more event done; the stats file is written with the last one."""
        self._last = time.perf_counter()
        self.count += 1
        if self.count == 1:
            self._first = self._last
        if self.count == self._run.events:
            self._write()

    def _write(self) -> None:
        seconds = self._last - self._first
        stats: dict[str, Any] = {"events": self.count, "seconds": seconds,
                                 "eps": (self.count - 1) / seconds if seconds > 0 else None}  # fmt: skip
        path = self._run.stats_path
        partial = path.with_suffix(".partial")
        partial.write_bytes(orjson.dumps(stats))
        os.replace(partial, path)  # the benchmark never reads a half-written file


def read_stats(path: Path) -> dict[str, Any] | None:
    """A peer's stats once it wrote them, else None."""
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
