"""Holding a stream of lines to a rate, for load tests (``pulse simulate --rate``)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def paced(items: Iterable[T], per_second: float) -> Iterator[T]:
    """Yield ``items`` no faster than ``per_second`` on average (sleeping in 10 ms steps)."""
    started = time.monotonic()
    for count, item in enumerate(items):
        ahead = count / per_second - (time.monotonic() - started)
        if ahead > 0.01:
            time.sleep(ahead)
        yield item
