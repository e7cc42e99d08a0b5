"""``pulse soak``: the pipeline killed again and again, each time checked against the ground truth.

The README promises exactly-once results in ClickHouse after a worker or sink is killed at
any moment. One kill in a test proves little about "any moment", so a soak runs many
cycles, each on a fresh stack of its own (topic prefix, app id, data directory, ports) on
one broker shared by the whole soak:

1. ``up``, then publish a simulation with late, resent and malformed lines, spread over
   ``publish_seconds`` in a background thread, so kills land while lines still arrive;
2. SIGKILL the worker, the sink or both at one or two moments drawn from the seed, each
   followed by ``up`` (which restarts what is gone) -- the last quarter of the window falls
   after the last line, while the worker may still be catching up;
3. wait until the worker's and the sink's groups committed everything (a *stall* is a group
   still behind after ``stall_timeout_s``), then compare events by type, dead letters by
   reason and sessions row for row with the simulator's ground truth, and funnel steps and churn
   alerts with one calm in-process run of the same jobs over the same lines
   (:mod:`devstack.reference_run`);
4. ``down``, delete the cycle's topics and data directory (a failed cycle's logs are kept).

Everything random comes from ``--seed``, so a failing soak can be run again as it was.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from random import Random

from devstack.ground_truth import differences, expected_outcome, read_outcome
from devstack.reference_run import job_output_differences, reference_run
from devstack.ports import free_ports
from devstack.processes import alive, read_pid
from devstack.stack import Log, down, local_kafka, status, up
from ops.consumer_lag import wait_pipeline_caught_up
from ops.topics import delete_topics
from producers import EventProducer, FileReport, publish_lines
from producers.pacing import paced
from producers.simulator import Simulation, SimulationConfig, simulate
from pulse.errors import PulseError
from pulse.settings import Settings, load_settings

KILL_MODES = ("random", "worker", "sink", "both", "none")
TARGETS = {"worker": ("worker",), "sink": ("sink",), "both": ("worker", "sink")}
KILL_WINDOW = 1.25  # kill moments fall within this share of publish_seconds: some after the last line
DEATH_TIMEOUT_S = 10.0


class SoakError(PulseError, ValueError):
    """The soak was asked for something it cannot run (no cycles, an unknown kill mode, ...)."""


@dataclass(frozen=True)
class SoakConfig:
    """What ``pulse soak`` runs; the defaults keep a cycle to about half a minute."""

    cycles: int = 30
    customers: int = 1_500
    days: int = 7
    seed: int = 1
    kill: str = "random"  # one of KILL_MODES
    publish_seconds: float = 10.0
    stall_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.kill not in KILL_MODES:
            raise SoakError(f"--kill must be one of {', '.join(KILL_MODES)}, got {self.kill!r}")
        if min(self.cycles, self.customers, self.days) < 1:
            raise SoakError("--cycles, --customers and --days must be at least 1")
        if self.publish_seconds <= 0 or self.stall_timeout_s <= 0:
            raise SoakError("--publish-seconds and --stall-timeout must be positive")


@dataclass(frozen=True)
class CyclePlan:
    """What one cycle does, drawn from the soak's seed and the cycle's number alone."""

    number: int
    simulation_seed: int
    targets: tuple[str, ...]  # the services killed at each moment; () for no kills
    kill_at_s: tuple[float, ...]  # seconds after publishing began, ascending


def plan_cycle(config: SoakConfig, number: int) -> CyclePlan:
    """The plan of cycle ``number``: the same seed and number always give the same plan.

    The simulation's seed is drawn first, so every kill mode (``none`` included, the control)
    runs the same traffic in cycle ``number`` of a soak with the same seed.
    """
    rng = Random(f"soak/{config.seed}/{number}")
    simulation_seed = rng.randrange(2**31)
    if config.kill == "none":
        return CyclePlan(number, simulation_seed, (), ())
    mode = rng.choice(sorted(TARGETS)) if config.kill == "random" else config.kill
    window = KILL_WINDOW * config.publish_seconds
    moments = sorted(round(rng.uniform(0.05, 1.0) * window, 1) for _ in range(rng.randint(1, 2)))
    return CyclePlan(number, simulation_seed, TARGETS[mode], tuple(moments))


@dataclass(frozen=True)
class CycleResult:
    """How one cycle went: the kills as they happened, its length and every difference found."""

    plan: CyclePlan
    kills_at_s: tuple[float, ...]  # when the kills actually happened (a restart can delay the next one)
    seconds: float
    problems: tuple[str, ...]
    stalled: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self, cycles: int) -> str:
        """One progress line: ``cycle 3/30  killed worker at 2.4s, 9.1s  31.2s  ok``."""
        if self.plan.targets:
            moments = ", ".join(f"{at:.1f}s" for at in self.kills_at_s)
            killed = f"killed {'+'.join(self.plan.targets)} at {moments}"
        else:
            killed = "no kills"
        verdict = "ok" if self.ok else "; ".join(self.problems)
        return f"cycle {self.plan.number}/{cycles}  {killed}  {self.seconds:.1f}s  {verdict}"


@dataclass(frozen=True)
class SoakSummary:
    """Every cycle's result, for the closing lines and the exit status."""

    results: tuple[CycleResult, ...]
    seconds: float
    failed_logs: Path  # where the logs of failed cycles are kept

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    def lines(self) -> list[str]:
        failed = [result for result in self.results if not result.ok]
        stalled = sum(result.stalled for result in failed)
        rows = [
            f"soak: {len(self.results) - len(failed)} of {len(self.results)} cycles ok, "
            f"{len(failed)} failed ({stalled} stalled), {self.seconds:.0f}s"
        ]
        if failed:
            rows.append(f"failed cycles: {', '.join(str(result.plan.number) for result in failed)}; "
                        f"their logs are in {self.failed_logs}")  # fmt: skip
        return rows


def run_soak(settings: Settings, config: SoakConfig, log: Log = print) -> SoakSummary:
    """Run every cycle on one broker (ours, or ``KAFKA_BOOTSTRAP``'s); ``log`` gets a line per cycle."""
    started = time.monotonic()
    soak_dir = settings.data_dir / "soak"
    shutil.rmtree(soak_dir, ignore_errors=True)  # the previous soak's failed logs included
    run_id = uuid.uuid4().hex[:6]  # pipelines of two soaks on one broker never share a name
    results: list[CycleResult] = []
    with soak_broker(settings, soak_dir, log) as bootstrap:
        log(f"soak: {config.cycles} cycles of {config.customers} customers over {config.days} days, "
            f"kill {config.kill}, seed {config.seed}, broker {bootstrap}")  # fmt: skip
        for number in range(1, config.cycles + 1):
            name = f"soak-{run_id}-{number:03d}"
            pipeline = cycle_settings(settings, bootstrap, soak_dir / f"cycle-{number:03d}", name)
            result = run_cycle(pipeline, config, plan_cycle(config, number), soak_dir / "failed")
            log(result.line(config.cycles))
            results.append(result)
    return SoakSummary(tuple(results), time.monotonic() - started, soak_dir / "failed")


@contextmanager
def soak_broker(settings: Settings, soak_dir: Path, log: Log) -> Iterator[str]:
    """The bootstrap of ``KAFKA_BOOTSTRAP``, or of a local broker of the soak's own on free ports.

    Its own, rather than the one ``pulse up`` runs, so a soak neither needs nor stops a stack
    someone is using; its data goes with it.
    """
    if not settings.uses_local_kafka:
        yield settings.bootstrap
        return
    port, controller_port = free_ports(2)
    broker = local_kafka(replace(settings, data_dir=soak_dir, kafka_port=port, kafka_controller_port=controller_port))
    broker.start(log=log)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
        shutil.rmtree(broker.config.data_dir, ignore_errors=True)


def cycle_settings(settings: Settings, bootstrap: str, data_dir: Path, name: str) -> Settings:
    """The soak's settings for one cycle's pipeline: its own topics, groups, ports and embedded ClickHouse.

    Tuning, partitions and the state store stay as configured; ClickHouse is always the
    cycle's own embedded engine, since a shared server would mix the cycles' rows.
    """
    worker_port, sink_port, collector_port = free_ports(3)
    env = {key: value for key, value in settings.to_env().items() if key != "CLICKHOUSE_DSN"}
    return load_settings(
        {
            **env,
            "KAFKA_BOOTSTRAP": bootstrap,
            "PULSE_DATA_DIR": str(data_dir),
            "PULSE_TOPIC_PREFIX": f"{name}.",
            "PULSE_APP_ID": name,
            "PULSE_WORKER_METRICS_PORT": str(worker_port),
            "PULSE_SINK_PORT": str(sink_port),
            "PULSE_COLLECTOR_PORT": str(collector_port),
        }
    )


def run_cycle(settings: Settings, config: SoakConfig, plan: CyclePlan, failed_logs: Path) -> CycleResult:
    """One cycle on the pipeline ``settings`` describes (see the module docstring); never raises an Exception."""
    started = time.monotonic()
    simulation = simulate(SimulationConfig(customers=config.customers, days=config.days, seed=plan.simulation_seed))
    calm = reference_run(settings, list(simulation.lines()))
    kills_at: list[float] = []
    problems: list[str] = []
    stalled = False
    publisher = Publisher(settings, simulation, config.publish_seconds)
    try:
        up(settings, log=_quiet)
        publisher.start()
        _kill_on_schedule(settings, plan, publisher.started_at, kills_at, problems)
        problems += publisher.finish()
        try:
            wait_pipeline_caught_up(settings, config.stall_timeout_s)
        except TimeoutError as exc:
            stalled = True
            problems.append(f"stalled: {exc} ({_process_states(settings)})")
        else:
            problems += differences(read_outcome(settings), expected_outcome(simulation.truth))
            lateness_ms = round(settings.sessions.allowed_lateness_minutes * 60_000)
            problems += job_output_differences(settings, calm, calm.settled_before(lateness_ms))
    except Exception as exc:  # a failed start or restart is a finding of this cycle, not the end of the soak
        problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        publisher.stop()
        problems += _tear_down(settings)
    if problems:
        _keep_logs(settings, failed_logs / settings.data_dir.name)
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    return CycleResult(plan, tuple(kills_at), time.monotonic() - started, tuple(problems), stalled)


class Publisher:
    """The simulation's lines published by a background thread, spread evenly over ``seconds``."""

    def __init__(self, settings: Settings, simulation: Simulation, seconds: float) -> None:
        self._settings = settings
        self._simulation = simulation
        self._rate = simulation.truth.totals["lines"] / seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._publish, name="soak-publisher", daemon=True)
        self._report: FileReport | None = None
        self._error: Exception | None = None
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._thread.start()

    def finish(self) -> list[str]:
        """Wait for the last line; what went wrong publishing, if anything."""
        self._thread.join()
        if self._error is not None:
            return [f"publishing failed: {type(self._error).__name__}: {self._error}"]
        delivery = self._report.delivery if self._report else None
        if delivery is None or not delivery.ok:
            errors = "; ".join(delivery.errors[:3]) if delivery else "no report"
            return [f"publishing: not every record confirmed by Kafka: {errors}"]
        return []

    def stop(self) -> None:
        """Stop early (a failed cycle) and wait for the thread; a no-op once it finished."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _publish(self) -> None:
        lines = itertools.takewhile(lambda _: not self._stopping.is_set(), paced(self._simulation.lines(), self._rate))
        try:
            with EventProducer.from_settings(self._settings) as producer:
                self._report = publish_lines(lines, "simulation", producer)
        except Exception as exc:  # reported by finish(), in the cycle's verdict
            self._error = exc


def _kill_on_schedule(
    settings: Settings, plan: CyclePlan, since: float, kills_at: list[float], problems: list[str]
) -> None:
    """SIGKILL the plan's targets at each moment, then ``up`` again.

    The moment of each kill and any service found already dead go into ``kills_at`` and
    ``problems`` as they happen, so a restart that raises leaves the cycle's account intact.
    """
    for moment in plan.kill_at_s:
        time.sleep(max(0.0, since + moment - time.monotonic()))
        kills_at.append(time.monotonic() - since)
        for name in plan.targets:
            if not _sigkill(settings, name):
                problems.append(f"{name} was not running at {kills_at[-1]:.1f}s")
        up(settings, log=_quiet)


def _sigkill(settings: Settings, name: str) -> bool:
    """SIGKILL the service ``up`` started and wait until it is gone; False if it was not running.

    The pid file is enough: ``up`` spawned the service from this process, so its pid cannot
    be handed to another process before we reap it.
    """
    pid = read_pid(settings.run_dir / f"{name}.pid")
    if pid is None or not alive(pid):
        return False
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + DEATH_TIMEOUT_S
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return True


def _process_states(settings: Settings) -> str:
    """``worker pid 12, ready; sink pid 13, ready``: whether a stall is a dead process or a stuck one."""
    states = status(settings)
    return "; ".join(f"{name} {states[name]}" for name in ("worker", "sink"))


def _tear_down(settings: Settings) -> list[str]:
    """Stop the cycle's stack and delete its topics; a failure to do so is one more problem."""
    try:
        down(settings, log=_quiet)
        delete_topics(settings)
    except Exception as exc:  # the next cycle has its own names, so the soak can go on
        return [f"tear-down failed: {type(exc).__name__}: {exc}"]
    return []


def _keep_logs(settings: Settings, target: Path) -> None:
    """Keep a failed cycle's process logs, since its data directory is deleted."""
    if settings.log_dir.is_dir():
        shutil.copytree(settings.log_dir, target, dirs_exist_ok=True)


def _quiet(_line: str) -> None:
    """``up``'s and ``down``'s per-service lines would drown the one line per cycle."""

