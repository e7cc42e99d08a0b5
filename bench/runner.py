"""The benchmark run: one local broker, a scenario per measure, the report at the end.

Phases, in order (``BenchConfig.phases`` picks some; ``pulse bench --only live``):

- ``producer``: ``EventProducer`` throughput on the simulated events;
- ``ceilings``: the bare clients on the same data (confluent-kafka producer, aiokafka
  consumer + orjson, clickhouse-connect columnar insert), and the worker's jobs alone in
  process, without Kafka or Faust;
- ``validate``, ``backlog``: the worker with validation alone, then with every job, on the
  events already in Kafka (a backlog), and the sink behind it;
- ``live``: the live capacity of events produced straight to Kafka: the highest steady rate whose
  p99 event-to-queryable stays under the target, found by search (``capacity``), and the curve;
  then one point at half that capacity in which some events raise churn alerts: how long from
  an event's sending until its alert leaves the worker;
- ``collector``: the same search through the HTTP collector, many clients posting small batches
  (``collector_load``);
- ``memory``: worker RSS with ``memory_users`` active users;
- ``rebuild`` (only when named): the timer rebuild after an assignment, in process, with
  ``rebalance_users`` users' state: the longest the event loop is blocked by one step, and the total;
- ``peers`` (run last): ``peer_events`` events one a record, sessionized by our worker, by the
  most direct Faust code and by Quix Streams, side by side; their rates and whether they agree;
- ``rebalance``: the pipeline of ``memory``, with ``rebalance_users`` users in state, a second
  worker joins, then leaves; the pause traffic sees, and how long each worker took to read
  the partitions handed to it back from the changelog.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from bench import capacity, ceilings, collector_load, pipeline
from bench.report import write_report
from devstack.kafka_broker import BrokerConfig, LocalKafka
from devstack.ports import free_ports
from devstack.stack import down, up
from ops.topics import ensure_topics
from producers import EventProducer, publish_lines
from producers.simulator import Imperfections, SimulationConfig, simulate
from pulse.contract import Event, validate
from pulse.partitioning import partition_for
from pulse.settings import Settings, load_settings
from pulse.topics import Topics
from pulse.wire import encode_events

Log = Callable[[str], None]

PHASES = ("producer", "ceilings", "validate", "backlog", "live", "collector", "memory", "rebuild", "peers", "rebalance")
ALERTS_PER_S = 20  # alerts raised in the alert-latency point, among the live traffic
# the rebalance phase times the real restore and rebuild on running workers: the in-process rebuild is asked for by name
DEFAULT_PHASES = tuple(phase for phase in PHASES if phase != "rebuild")
DEFAULT_LIVE_RATE = 2_000.0  # first point of the live search when no backlog rate was measured in the same run
LIVE_TEMPLATES = 100_000  # simulated lines replayed (in turn) as live traffic


@dataclass(frozen=True)
class BenchConfig:
    events: int = 500_000
    memory_users: tuple[int, ...] = (100_000, 1_000_000)
    rebalance_users: int = 1_000_000
    search: capacity.SearchPlan = field(default_factory=capacity.SearchPlan)  # of the live and collector phases
    live_rate: float | None = None  # first point; default: half the all-jobs rate through the sink, measured first
    collector_rate: float | None = None  # first point; default: the live capacity, measured first
    collector_clients: int = 128  # each waits for its answer: at 50 ms, 128 x 10 events / 0.05 s = 25,600 events/s
    collector_batch: int = 10
    out_dir: Path = Path("bench/results")
    profile_seconds: float = 10.0  # py-spy of the worker during the all-jobs run; 0 skips it
    peer_events: int = 25_000  # of the peers phase, one a record: about a minute in all (direct Faust: ~1,500 a second)
    phases: tuple[str, ...] = DEFAULT_PHASES

    def __post_init__(self) -> None:
        unknown = set(self.phases) - set(PHASES)
        if unknown or not self.phases:
            raise ValueError(f"unknown phases {sorted(unknown)}; choose from {', '.join(PHASES)}")
        if self.collector_clients < 1 or self.collector_batch < 1:
            raise ValueError("the collector phase needs at least one client and one event a request")

    def runs(self, phase: str) -> bool:
        return phase in self.phases


def run_benchmark(settings: Settings, config: BenchConfig, command: str, log: Log = print) -> dict[str, Any]:
    """Measure the chosen phases and write ``bench.json`` and ``bench.md`` under ``config.out_dir``."""
    root = settings.data_dir / "bench"
    shutil.rmtree(root, ignore_errors=True)
    port, controller_port = free_ports(2)
    broker = LocalKafka(BrokerConfig(root / "kafka", settings.cache_dir / "kafka-3.9.1", port, controller_port))
    broker.start(log=log)
    started = time.perf_counter()
    try:
        results = _measure(settings, broker.bootstrap, root, config, log)
    finally:
        broker.stop()
    results["seconds"] = round(time.perf_counter() - started, 1)
    write_report(results, config.out_dir, command)
    return results


def _measure(base: Settings, bootstrap: str, root: Path, config: BenchConfig, log: Log) -> dict[str, Any]:
    results: dict[str, Any] = {"phases": list(config.phases)}
    clock = time.perf_counter()

    def done(phase: str) -> None:
        nonlocal clock
        log(f"[{phase}] done in {time.perf_counter() - clock:.0f}s")
        clock = time.perf_counter()

    lines: list[bytes] = []
    n = 0
    if any(config.runs(phase) for phase in ("producer", "ceilings", "validate", "backlog")):
        log(f"[simulate] {config.events:,} events ...")
        lines = _lines(config.events)
        events = [e for e in (validate(orjson.loads(line)) for line in lines) if isinstance(e, Event)]
        n = len(events)
        results["events"] = n
        done("simulate")

    if config.runs("producer") or config.runs("ceilings"):
        produced = _scenario(base, bootstrap, root, "producer")
        ensure_topics(produced)
        started = time.perf_counter()
        with EventProducer.from_settings(produced) as producer:
            publish_lines(lines[:n], "bench", producer)
        results["producer_eps"] = n / (time.perf_counter() - started)
        log(f"[producer] EventProducer: {results['producer_eps']:,.0f} events/s")
        done("producer")
        if config.runs("ceilings"):
            records = _records(events, produced.partitions)
            raw_topic = f"{produced.topic_prefix}raw"
            ensure_topics(replace(produced, topic_prefix=raw_topic + "."))
            results["raw_producer_eps"] = n / ceilings.raw_confluent_producer(bootstrap, f"{raw_topic}.events", records)
            results["raw_consumer_eps"] = n / ceilings.raw_aiokafka_consumer(
                bootstrap, Topics.with_prefix(produced.topic_prefix).events, produced.partitions, n
            )
            results["raw_insert_eps"] = n / ceilings.bare_clickhouse_insert(
                str(root / "insert-ceiling"), [v for _, v in records]
            )
            results["jobs_in_process_eps"] = n / ceilings.jobs_in_process(records)
            log(f"[ceilings] producer {results['raw_producer_eps']:,.0f}, consumer {results['raw_consumer_eps']:,.0f}, "
                f"insert {results['raw_insert_eps']:,.0f}, the jobs in process {results['jobs_in_process_eps']:,.0f} "
                "events/s")  # fmt: skip
            done("ceilings")

    for phase, job, jobs_on in (("validate", "validate", False), ("backlog", "all", True)):
        if not config.runs(phase):
            continue
        log(
            f"[{phase}] the worker ({'validation alone' if job == 'validate' else 'all jobs'}) on a backlog of {n:,} events ..."
        )
        scenario = _scenario(base, bootstrap, root, job, jobs=jobs_on)
        ensure_topics(scenario)
        with EventProducer.from_settings(scenario) as producer:
            publish_lines(lines[:n], "bench", producer)
        profiles: list[subprocess.Popen[bytes]] = []  # py-spy of the all-jobs worker, if any
        start = partial(_start_backlog, scenario, root, config if job == "all" else None, profiles)
        catch_up = pipeline.timed_catch_up(scenario, start)
        for profile in profiles:
            profile.wait()
        results[f"{job}_worker_eps"] = n / catch_up.worker_s
        results[f"{job}_sink_eps"] = n / catch_up.sink_s
        results[f"{job}_backlog"] = {"worker_s": catch_up.worker_s, "sink_s": catch_up.sink_s,
                                     "steady_eps": catch_up.steady_eps, "steady_cpu": catch_up.steady_cpu}  # fmt: skip
        down(scenario, log=lambda _line: None)
        steady = f"{catch_up.steady_eps:,.0f}" if catch_up.steady_eps else "-"
        if catch_up.steady_cpu:
            steady += f" at {catch_up.steady_cpu:.0%} of a core"
        log(f"[{phase}] worker {n / catch_up.worker_s:,.0f} events/s ({steady} steady, from 10% to 90% of the "
            f"backlog), through the sink {n / catch_up.sink_s:,.0f} events/s")  # fmt: skip
        done(phase)

    searches = [phase for phase in ("live", "collector") if config.runs(phase)]
    if searches:
        scenario = _scenario(base, bootstrap, root, "latency")
        ensure_topics(scenario)
        up(scenario, log=lambda _line: None)
        try:
            templates = pipeline.live_templates(lines[:LIVE_TEMPLATES] if len(lines) >= LIVE_TEMPLATES
                                                else _lines(LIVE_TEMPLATES))  # fmt: skip
            ready_s = pipeline.wait_worker_ready(scenario.worker_metrics_port)
            log(f"[{searches[0]}] worker ready after {ready_s:.1f}s more, a probe event queryable in "
                f"{pipeline.probe(scenario):.2f}s")  # fmt: skip
            for phase in searches:
                measure, first, traffic = _search_setup(phase, scenario, templates, config, results)
                log(f"[{phase}] capacity search, {traffic}: from {first:,.0f} events/s, points of "
                    f"{config.search.warmup_s:.0f}s warm-up + {config.search.point_s:.0f}s, p99 target "
                    f"{config.search.target_p99_ms:,.0f} ms ...")  # fmt: skip
                curve = capacity.search(measure, first, config.search, log=lambda line, p=phase: log(f"[{p}] {line}"),
                                        most_eps=results.get("all_sink_eps"))  # fmt: skip
                results[phase] = {**curve, "traffic": traffic}
                held = f"{curve['capacity_eps']:,.0f} events/s" if curve["capacity_eps"] else "none (no rate held)"
                if curve["capacity_eps"] and curve["capacity_eps"] == curve["most_eps"]:
                    held += " (the backlog rate, the most a search tries)"
                log(f"[{phase}] capacity {held} over {len(curve['points'])} points")
                if phase == "live" and curve["capacity_eps"]:
                    results["alerts"] = _alerts(scenario, curve["capacity_eps"] / 2, templates, config, log)
                done(phase)
        finally:
            down(scenario, log=lambda _line: None)

    if config.runs("rebuild"):
        from bench import rebalance

        log(f"[rebuild] timer rebuild in process, {config.rebalance_users:,} users in state ...")
        results["timer_rebuild"] = rebuild = rebalance.measure_timer_rebuild(
            base, config.rebalance_users, base.partitions, log=log
        )
        log(f"[rebuild] {rebuild['users']:,} users' timers over {len(rebuild['partitions'])} partitions: "
            f"{rebuild['total_s']:.2f}s in all, longest event-loop block {rebuild['max_step_s'] * 1000:,.0f} ms "
            f"(first steps, which list every key of the store: up to {rebuild['max_first_step_s'] * 1000:,.0f} ms, "
            f"later steps up to {rebuild['max_later_step_s'] * 1000:,.0f} ms; listing the store's keys alone "
            f"{rebuild['key_scan_s'] * 1000:,.0f} ms)")  # fmt: skip
        done("rebuild")

    if config.runs("memory") or config.runs("rebalance"):
        scenario = _scenario(base, bootstrap, root, "memory")
        ensure_topics(scenario)
        up(scenario, log=lambda _line: None)
        try:
            levels = config.memory_users if config.runs("memory") else ()
            if config.runs("rebalance") and (not levels or levels[-1] < config.rebalance_users):
                levels = (*levels, config.rebalance_users)  # the state the rebalance moves
            _memory(scenario, levels, results, log)
            if config.runs("memory"):
                done("memory")
            if config.runs("rebalance"):
                _rebalance(scenario, root, levels[-1], results, log)
                done("rebalance")
        finally:
            down(scenario, log=lambda _line: None)

    if config.runs("peers"):
        from bench.peers.phase import side_by_side

        log(f"[peers] our worker, direct Faust and Quix Streams on {config.peer_events:,} events, one a record ...")
        scenario = _scenario(base, bootstrap, root, "peers")
        results["peers"] = side_by_side(scenario, _lines(config.peer_events), log)
        done("peers")
    return results


def _start_backlog(scenario: Settings, root: Path, profiled: BenchConfig | None,
                   profiles: list[subprocess.Popen[bytes]]) -> None:  # fmt: skip
    """Bring the pipeline up on its published backlog; once the worker is ready, py-spy it as ``profiled`` says."""
    up(scenario, log=lambda _line: None)
    pipeline.wait_worker_ready(scenario.worker_metrics_port)
    if profiled is not None and (profile := _profile(scenario, root, profiled)):
        profiles.append(profile)


def _search_setup(phase: str, scenario: Settings, templates: list[dict[str, Any]], config: BenchConfig,
                  results: dict[str, Any]) -> tuple[capacity.Measure, float, str]:  # fmt: skip
    """The ``live`` or ``collector`` search's measure of a point, its first rate and its traffic, in words.

    The live search starts at half the rate the pipeline emptied a backlog at (no steady rate
    above that one holds); the collector's, one more hop on the same pipeline, at the live capacity.
    """
    plan = config.search
    live_first = config.live_rate or (results["all_sink_eps"] / 2 if "all_sink_eps" in results else DEFAULT_LIVE_RATE)
    if phase == "live":
        return (lambda rate: pipeline.live_point(scenario, rate, plan.point_s, templates, plan.warmup_s),
                live_first, "events produced straight to Kafka")  # fmt: skip
    clients, batch = config.collector_clients, config.collector_batch
    return (lambda rate: collector_load.collector_point(scenario, rate, plan.point_s, templates, plan.warmup_s,
                                                        clients, batch),
            config.collector_rate or results.get("live", {}).get("capacity_eps") or live_first,
            f"{clients} HTTP clients posting {batch} events a request to the collector")  # fmt: skip


def _alerts(scenario: Settings, rate: float, templates: list[dict[str, Any]], config: BenchConfig, log: Log) -> dict[str, Any]:
    """One live point at ``rate`` (half the live capacity) with ``ALERTS_PER_S`` of its events raising churn alerts."""
    every = max(1, round(rate / ALERTS_PER_S))
    log(f"[live] churn alerts at half the live capacity: {rate:,.0f} events/s, one in {every:,} raising an alert ...")
    point = pipeline.live_point(scenario, rate, config.search.point_s, templates, config.search.warmup_s, every)
    alerts = {"rate_eps": rate, **point["alerts"]}
    log(f"[live] {alerts['alerts']:,} alerts: event sent to alert emitted p50 {alerts['p50']:,.0f} ms, "
        f"p99 {alerts['p99']:,.0f} ms, max {alerts['max']:,.0f} ms")  # fmt: skip
    return alerts


def _memory(scenario: Settings, levels: tuple[int, ...], results: dict[str, Any], log: Log) -> None:
    """Users with an open session each, level after level; the worker's RSS at each, and its rate getting there."""
    pid = int((scenario.run_dir / "worker.pid").read_text())
    baseline = pipeline.rss_bytes(pid)
    memory: dict[str, Any] = {"baseline_rss": baseline}
    users = 0
    for target in levels:
        log(f"[memory] {target:,} active users ...")
        started = time.perf_counter()
        pipeline.publish(scenario, pipeline.users_events(users, target - users))
        published = time.perf_counter() - started
        catch_up = pipeline.timed_catch_up(scenario)
        # every event of a level is a user's first, handled while the rest is published: a lower bound
        # of the worker's rate with that many users in state
        eps = (target - users) / (published + catch_up.worker_s)
        log(f"[memory]   published in {published:.0f}s, the worker done {catch_up.worker_s:.0f}s later, "
            f"the sink {catch_up.sink_s:.0f}s later")  # fmt: skip
        users = target
        rss = pipeline.rss_bytes(pid)
        memory[str(target)] = {"rss": rss, "bytes_per_user": (rss - baseline) / target, "worker_eps": eps}
        log(
            f"[memory] {target:,} active users: worker RSS {rss / 2**20:,.0f} MiB, {(rss - baseline) / target:,.0f} B/user"
        )
    results["memory"] = memory


def _rebalance(scenario: Settings, root: Path, users: int, results: dict[str, Any], log: Log) -> None:
    """With ``users`` in the running worker's state: a second worker joins, then leaves."""
    from bench import rebalance

    log(f"[rebalance] a second worker joins, then leaves, {users:,} users in state ...")
    pause = rebalance.rebalance_pause(scenario, root / "rebalance", users, log=log)
    results["rebalance"] = pause
    for change in ("join", "leave"):
        figures = pause[change]
        log(f"[rebalance] {change}: traffic paused for {figures['stalled_s']:.1f}s (worst event "
            f"{figures['max_latency_ms']:,.0f} ms, normal p99 {pause['normal_p99_ms']:,.0f} ms)")  # fmt: skip


def _lines(count: int) -> list[bytes]:
    """``count`` lines of simulated traffic without imperfections: a realistic mix of types and users.

    A customer averages about 20 lines over 30 days; customers are added until there are enough.
    """
    customers = max(100, count // 18)
    while True:
        simulation = simulate(SimulationConfig(customers=customers, days=30, imperfections=Imperfections.none()))
        if simulation.truth.totals["lines"] >= count:
            return list(islice(simulation.lines(), count))
        customers = int(customers * 1.25)


def _records(events: list[Event], partitions: int) -> list[tuple[int, bytes]]:
    """The events as the pipeline packs them: 500 normalised events a record, per partition."""
    by_partition: dict[int, list[dict]] = {}
    records = []
    for event in events:
        partition = partition_for(event.user_id, partitions)
        batch = by_partition.setdefault(partition, [])
        batch.append(event.to_dict())
        if len(batch) == 500:
            records.append((partition, encode_events(batch)))
            batch.clear()
    records += [(p, encode_events(batch)) for p, batch in by_partition.items() if batch]
    return records


def _scenario(base: Settings, bootstrap: str, root: Path, name: str, jobs: bool = True) -> Settings:
    run = f"{name}-{uuid.uuid4().hex[:6]}"
    env = {"KAFKA_BOOTSTRAP": bootstrap, "PULSE_DATA_DIR": str(root / name), "PULSE_TOPIC_PREFIX": f"bench-{run}.",
           "PULSE_APP_ID": f"bench-{run}", "PULSE_CACHE_DIR": str(base.cache_dir)}  # fmt: skip
    for variable, port in zip(("PULSE_WORKER_METRICS_PORT", "PULSE_SINK_PORT", "PULSE_COLLECTOR_PORT"), free_ports(3)):
        env[variable] = str(port)
    if not jobs:  # validation and de-duplication alone
        (root / name).mkdir(parents=True, exist_ok=True)
        config = root / name / "pulse.yaml"
        config.write_text("".join(f"{job}:\n  enabled: false\n" for job in ("sessions", "funnels", "churn")))
        env["PULSE_CONFIG"] = str(config)
    return load_settings(env)


def _profile(settings: Settings, root: Path, config: BenchConfig) -> subprocess.Popen[bytes] | None:
    """py-spy on the worker while it works through the backlog (if py-spy is installed)."""
    if not config.profile_seconds or not shutil.which("py-spy"):
        return None
    pid = (settings.run_dir / "worker.pid").read_text().strip()
    output = config.out_dir / "worker-profile.txt"
    config.out_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        ["py-spy", "record", "--pid", pid, "--duration", str(int(config.profile_seconds)), "--format", "raw",
         "--output", str(output), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
