"""``pulse demo``: the whole pipeline on simulated traffic, from a clean slate, then stopped.

The simulator's ground truth says what the pipeline must end with, so the summary puts
each figure next to the figure it must equal.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from devstack.ground_truth import expected_outcome, read_outcome
from devstack.stack import Log, down, up
from ops.consumer_lag import wait_pipeline_caught_up
from ops.progress import Progress
from producers import EventProducer, FileReport, publish_lines
from producers.simulator import Simulation, SimulationConfig, simulate
from pulse.settings import Settings

CATCH_UP_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class DemoSummary:
    published: FileReport
    expected: dict[str, int]
    found: dict[str, int]
    seconds: float

    def lines(self) -> list[str]:
        rows = [f"lines simulated:                  {self.published.lines}"]
        for name, found in self.found.items():
            verdict = "ok" if found == self.expected[name] else "MISMATCH"
            rows.append(f"{name + ' in ClickHouse:':33} {found:>8}  (ground truth {self.expected[name]}, {verdict})")
        rows.append(f"seconds, start to stop:           {self.seconds:.1f}")
        return rows

    @property
    def ok(self) -> bool:
        return self.found == self.expected


def run_demo(settings: Settings, config: SimulationConfig, log: Log = print) -> DemoSummary:
    """Start the stack in ``<data dir>/demo`` (wiped first), publish a simulation, wait, count, stop."""
    started = time.monotonic()
    demo_dir = settings.data_dir / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)
    settings = replace(settings, data_dir=demo_dir, clickhouse_dsn=_demo_dsn(settings, demo_dir))
    simulation = simulate(config)
    totals = simulation.truth.totals
    expected = expected_outcome(simulation.truth).counts()
    try:
        up(settings, log)
        progress = Progress(f"publishing {config.customers} simulated customers", total=totals["lines"], unit=" lines")
        published = _publish(settings, simulation, progress)
        progress.close(totals["lines"])
        log("waiting for the worker and the sink to catch up ...")
        wait_pipeline_caught_up(settings, CATCH_UP_TIMEOUT_S)
        found = read_outcome(settings).counts()
    finally:
        down(settings, log)
    return DemoSummary(published, expected, found, time.monotonic() - started)


def _publish(settings: Settings, simulation: Simulation, progress: Progress) -> FileReport:
    """Publish the simulation with a producer that is gone on return: none is left to retry the broker ``down`` stops."""
    with EventProducer.from_settings(settings) as producer:
        return publish_lines(simulation.lines(), "simulation", producer, progress.update)


def _demo_dsn(settings: Settings, demo_dir: Path) -> str:
    """The demo's own embedded database, unless a ClickHouse server was configured."""
    return f"chdb://{demo_dir / 'clickhouse'}" if settings.embedded_clickhouse else settings.clickhouse_dsn
