"""Watching a pipeline through a dependency's outage: its processes' ``pulse_dependency_up`` and their logs."""

from __future__ import annotations

import threading
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

Series = tuple[str, str]  # (process, dependency)


def dependency_up(url: str) -> dict[Series, float]:
    """The ``pulse_dependency_up`` samples a ``/metrics`` page serves now."""
    with urllib.request.urlopen(url, timeout=2) as response:
        text = response.read().decode()
    return {
        (sample.labels["process"], sample.labels["dependency"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "pulse_dependency_up"
        for sample in family.samples
    }


@contextmanager
def watch_dependencies(*urls: str, every_s: float = 0.2) -> Iterator[dict[Series, list[float]]]:
    """Scrape ``urls`` until the block ends: every value each series took, in order (repeats folded)."""
    seen: dict[Series, list[float]] = defaultdict(list)
    stop = threading.Event()

    def scrape() -> None:
        for url in urls:
            try:
                samples = dependency_up(url)
            except OSError:  # a process busy for a moment: the next scrape will do
                continue
            for series, value in samples.items():
                if not seen[series] or seen[series][-1] != value:
                    seen[series].append(value)

    def keep_scraping() -> None:
        while not stop.wait(every_s):
            scrape()

    scrape()  # the values before the block
    thread = threading.Thread(target=keep_scraping, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def lines_after(path: Path, offset: int) -> list[str]:
    """The lines a log got after it was ``offset`` bytes long."""
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace").splitlines()
