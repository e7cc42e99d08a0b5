"""The collector's write keys: who may send, under which name and source, and how fast.

Keys come from ``PULSE_WRITE_KEYS`` (plain, the demo's way, unchanged) and from the YAML file
``PULSE_WRITE_KEYS_FILE`` (names, sources, per-key limits, and only each key's SHA-256; see
:func:`pulse.settings.read_write_keys`). Both APIs of the collector, ``/v1/events`` and Segment's
(hence the module's name), take the same keys; with none configured the collector is open.

Rotation without a restart: the collector looks at the file's modification time at most once a
second and re-reads it when it changed; add the new key, move the senders over, remove the old
one. A file that cannot be read or has a mistake leaves the keys as they were (logged and
counted in ``pulse_collector_key_reloads_total{outcome="refused"}``), so a bad edit never opens
or closes the door; at start it stops the collector instead.

Each key has a token bucket of events (``events_per_s`` refilled, up to ``burst``): a request
takes one token per event, and one that finds too few is answered 429 with the seconds to wait.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import Counter

from pulse.settings import (
    CollectorTuning,
    Settings,
    SettingsError,
    WriteKey,
    env_write_keys,
    hash_write_key,
    read_write_keys,
)

log = logging.getLogger(__name__)

RELOADS = Counter("pulse_collector_key_reloads_total", "Re-reads of the write-keys file, by outcome.", ["outcome"])
CHECK_EVERY_S = 1.0  # how often the keys file's modification time is looked at


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; the caller passes the time (monotonic seconds)."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._updated = now

    def take(self, cost: int, now: float) -> float:
        """Take ``cost`` tokens and return 0.0, or return the seconds until there will be enough.

        A request larger than the whole bucket is let through once the bucket is full, and the
        bucket goes into debt for the rest: otherwise it could never pass.
        """
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        needed = min(cost, self.burst)
        if self._tokens >= needed:
            self._tokens -= cost
            return 0.0
        return (needed - self._tokens) / self.rate


class KeyRing:
    """The write keys by hash, re-read from the keys file when it changes, with a bucket per key name."""

    def __init__(
        self,
        fixed: Iterable[WriteKey],
        path: Path | None,
        tuning: CollectorTuning,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``fixed`` keys are always there (``PULSE_WRITE_KEYS``); ``path`` is read now, and a
        mistake in it raises :class:`~pulse.settings.SettingsError`."""
        self._fixed = tuple(fixed)
        self._path = path
        self._tuning = tuning
        self._clock = clock
        self._by_hash: dict[str, WriteKey] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked_at = clock()
        self._stamp = _stamp(path) if path else None
        self._install(read_write_keys(path) if path else ())

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(env_write_keys(settings.write_keys), settings.write_keys_file, settings.collector)

    @property
    def required(self) -> bool:
        """Whether requests need a key: once any is configured."""
        self._reload_if_changed()
        return bool(self._by_hash)

    def find(self, presented: str | None) -> WriteKey | None:
        """The key a request presented, None when it presented none or an unknown one."""
        if not presented:
            return None
        self._reload_if_changed()
        return self._by_hash.get(hash_write_key(presented.strip()))

    def admit(self, key: WriteKey, events: int) -> int:
        """0 when ``key`` may send ``events`` events now (they are counted), else the whole seconds to wait."""
        bucket = self._buckets.get(key.name)
        if bucket is None:
            return 0
        wait = bucket.take(events, self._clock())
        return math.ceil(wait) if wait else 0

    def _reload_if_changed(self) -> None:
        now = self._clock()
        if self._path is None or now - self._checked_at < CHECK_EVERY_S:
            return
        self._checked_at = now
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._install(read_write_keys(self._path))
        except SettingsError as exc:
            RELOADS.labels("refused").inc()
            log.error("write keys unchanged, the keys file was refused: %s", exc)
            return
        RELOADS.labels("loaded").inc()
        log.info("write keys re-read from %s: %d keys", self._path, len(self._by_hash))

    def _install(self, from_file: tuple[WriteKey, ...]) -> None:
        keys = (*self._fixed, *from_file)
        self._by_hash = {key.sha256: key for key in keys}
        buckets: dict[str, TokenBucket] = {}
        for key in keys:
            rate = self._tuning.key_events_per_s if key.events_per_s is None else key.events_per_s
            burst = self._tuning.key_burst if key.burst is None else key.burst
            if rate <= 0:
                continue
            bucket = self._buckets.get(key.name)  # a re-read keeps what each key has used
            if bucket is None or (bucket.rate, bucket.burst) != (rate, burst):
                bucket = TokenBucket(rate, burst, self._clock())
            buckets[key.name] = bucket
        self._buckets = buckets


def _stamp(path: Path) -> tuple[int, int, int]:
    """What changes when the file is rewritten or replaced: its mtime, size and inode (0s when absent)."""
    try:
        found = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (found.st_mtime_ns, found.st_size, found.st_ino)
