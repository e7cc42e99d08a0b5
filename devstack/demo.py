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
from ops.funnel_queries import retroactive_users_per_step, streamed_users_per_step
from ops.reader import run_query
from ops.progress import Progress
from producers import EventProducer, FileReport, publish_lines
from producers.simulator import Simulation, SimulationConfig, simulate
from pulse.settings import Settings
from stream_jobs.funnels import load_funnels

CATCH_UP_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class DemoSummary:
    published: FileReport
    expected: dict[str, int]
    found: dict[str, int]
    jobs: list[str]  # funnel and churn figures next to the ground truth, already in words
    seconds: float

    def lines(self) -> list[str]:
        rows = [f"lines simulated:                  {self.published.lines}"]
        for name, found in self.found.items():
            verdict = "ok" if found == self.expected[name] else "MISMATCH"
            rows.append(f"{name + ' in ClickHouse:':33} {found:>8}  (ground truth {self.expected[name]}, {verdict})")
        rows += self.jobs
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
        jobs = _job_figures(settings, simulation)
    finally:
        down(settings, log)
    return DemoSummary(published, expected, found, jobs, time.monotonic() - started)


def _job_figures(settings: Settings, simulation: Simulation) -> list[str]:
    """Users per funnel step (streamed, by windowFunnel over the events, and true) and churn, in lines.

    Funnel steps are streamed once event time passes them by the allowed lateness, so the
    newest minutes of the window may still be on their way when the demo reads.
    """
    truth = simulation.truth.totals
    rows = []
    for funnel in load_funnels(settings.funnels.definitions_path):
        rows.append(f"funnel {funnel.name}, users per step:")
        for label, users in (("streamed (funnel_steps)", streamed_users_per_step(settings, funnel)),
                             ("windowFunnel over events", retroactive_users_per_step(settings, funnel)),
                             ("ground truth", truth["funnels"].get(funnel.name, {}).get("users_per_step", []))):  # fmt: skip
            rows.append(f"  {label + ':':31} {' > '.join(map(str, users))}")
    lateness = settings.sessions.allowed_lateness_minutes
    rows.append(f"  (a step is streamed once event time is {lateness:g} minutes past it: the newest may still wait)")
    churned = run_query(settings, "SELECT count() FROM churn_scores FINAL WHERE tier = 'churned'").scalar()
    churn = truth["churn"]
    rows.append(f"churned users in ClickHouse:      {churned:>8}  (ground truth {churn['churned_users']}: "
                f"{churn['cancelled']} cancelled, {churn['inactive']} inactive)")  # fmt: skip
    alerts = run_query(settings, "SELECT new_tier, count() FROM churn_alerts FINAL GROUP BY new_tier ORDER BY new_tier")
    rows.append(f"churn alerts raised:              {sum(n for _, n in alerts.rows):>8}  "
                f"({', '.join(f'{tier} {n}' for tier, n in alerts.rows) or 'none'})")  # fmt: skip
    return rows


def _publish(settings: Settings, simulation: Simulation, progress: Progress) -> FileReport:
    """Publish the simulation with a producer that is gone on return: none is left to retry the broker ``down`` stops."""
    with EventProducer.from_settings(settings) as producer:
        return publish_lines(simulation.lines(), "simulation", producer, progress.update)


def _demo_dsn(settings: Settings, demo_dir: Path) -> str:
    """The demo's own embedded database, unless a ClickHouse server was configured."""
    return f"chdb://{demo_dir / 'clickhouse'}" if settings.embedded_clickhouse else settings.clickhouse_dsn
