"""A dependency that is down, told once: the first error, a count per interval, then the recovery.

Client libraries retry an unreachable dependency for us, and many log every attempt: with
Kafka stopped for 25 s, aiokafka's reconnect loop wrote about 4,000 error lines a second into
the worker's log, burying everything else. Each process instead routes those reports to a
:class:`Dependency`, which logs

- the first error, as a warning: ``kafka unavailable: <what the client said>``;
- one line per ``interval_s`` while the errors go on, with their count and the latest;
- ``kafka available again after N s (M errors)`` once a positive signal arrives;

and sets ``pulse_dependency_up{process, dependency}`` to 0 while it is down, 1 otherwise.

A dependency counts as available again only on a positive signal (a client saying it is
connected, an insert that landed) received at least ``quiet_s`` after the last error: when
several clients report on the same dependency, one reconnecting first while another still
fails must not make the outage end and start again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from prometheus_client import Gauge

log = logging.getLogger(__name__)

SUMMARY_INTERVAL_S = 10.0

DEPENDENCY_UP = Gauge(
    "pulse_dependency_up",
    "1 while this process reaches the dependency, 0 while its requests fail (the log says why).",
    ["process", "dependency"],
)


class OutageLog:
    """The log lines of one dependency's outages, from its error reports and positive signals.

    Pure: the caller passes the time and logs the lines returned, so the rules are testable
    without a clock or a logger.
    """

    def __init__(self, dependency: str, interval_s: float = SUMMARY_INTERVAL_S, quiet_s: float = 0.0) -> None:
        self.dependency = dependency
        self._interval_s = interval_s
        self._quiet_s = quiet_s
        self._down_since: float | None = None
        self._last_error = -math.inf
        self._summarised_at = 0.0
        self._errors = 0  # in this outage
        self._unsummarised = 0  # errors since the last line

    @property
    def up(self) -> bool:
        return self._down_since is None

    def failed(self, detail: str, now: float) -> str | None:
        """An error: the line to log, if this one starts an outage or an interval is over."""
        self._last_error = now
        if self._down_since is None:
            self._down_since = self._summarised_at = now
            self._errors, self._unsummarised = 1, 0
            return f"{self.dependency} unavailable: {detail}"
        self._errors += 1
        self._unsummarised += 1
        if now - self._summarised_at < self._interval_s:
            return None
        line = (
            f"{self.dependency} still unavailable after {now - self._down_since:.0f} s: "
            f"{self._unsummarised} more errors in the last {now - self._summarised_at:.0f} s, latest: {detail}"
        )
        self._summarised_at, self._unsummarised = now, 0
        return line

    def reachable(self, now: float) -> str | None:
        """A positive signal: the line to log if it ends an outage."""
        if self._down_since is None or now - self._last_error < self._quiet_s:
            return None
        errors = f"{self._errors} error" + ("s" if self._errors > 1 else "")
        line = f"{self.dependency} available again after {now - self._down_since:.1f} s ({errors})"
        self._down_since = None
        return line


class Dependency:
    """One dependency of this process: its outages summarised in the log and its state in ``pulse_dependency_up``.

    Thread-safe: client libraries report from their own threads (aiokafka under Faust runs
    its consumer in one, librdkafka callbacks come from whichever thread polls).
    """

    def __init__(
        self,
        process: str,
        name: str,
        *,
        interval_s: float = SUMMARY_INTERVAL_S,
        quiet_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outages = OutageLog(name, interval_s, quiet_s)
        self._gauge = DEPENDENCY_UP.labels(process, name)
        self._gauge.set(1)
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def up(self) -> bool:
        return self._outages.up

    def failed(self, detail: str) -> None:
        """A request to the dependency failed (the client will retry)."""
        with self._lock:
            line = self._outages.failed(detail, self._clock())
            self._gauge.set(0)
            if line:  # logged under the lock, so the lines of one outage keep their order
                log.warning(line)

    def reachable(self) -> None:
        """The dependency answered."""
        with self._lock:
            line = self._outages.reachable(self._clock())
            if line:
                self._gauge.set(1)
                log.info(line)


class Divert(logging.Filter):
    """A logger filter that takes the records ``is_failure`` recognises out of the log and reports them to ``dependency``.

    Attach it to the loggers that emit the records (a logger's filters do not see records of
    its children). Records below WARNING pass untouched.
    """

    def __init__(self, dependency: Dependency, is_failure: Callable[[logging.LogRecord], bool]) -> None:
        super().__init__()
        self._dependency = dependency
        self._is_failure = is_failure

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not self._is_failure(record):
            return True
        self._dependency.failed(record.getMessage())
        return False
