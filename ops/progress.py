"""A progress line for long jobs: redrawn in place on a terminal, a line every few seconds in logs."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Shows ``done/total`` (or a count when the total is unknown), the rate and the ETA."""

    def __init__(self, label: str, total: float | None = None, unit: str = "", stream: TextIO = sys.stderr) -> None:
        self._label = label
        self._total = total
        self._unit = unit
        self._stream = stream
        self._tty = stream.isatty()
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._last_done: float | None = None

    def update(self, done: float, note: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < (0.2 if self._tty else 5.0):
            return
        self._last_draw = now
        self._last_done = done
        elapsed = max(now - self._started, 1e-9)
        text = f"{self._label}: {_human(done)}{self._unit}"
        if self._total:
            share = min(done / self._total, 1.0)
            bar = "#" * int(share * 20)
            remaining = elapsed / share - elapsed if share > 0 else 0.0
            text = f"{self._label}: [{bar:<20}] {share:6.1%} ({_human(done)}/{_human(self._total)}{self._unit}) ETA {remaining:4.0f}s"
        text += f" {_human(done / elapsed)}{self._unit}/s {note}".rstrip()
        if self._tty:
            self._stream.write("\r\x1b[2K" + text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def close(self, done: float, note: str = "") -> None:
        if done != self._last_done:
            self.update(done, note, force=True)
        if self._tty:
            self._stream.write("\n")


def _human(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"
