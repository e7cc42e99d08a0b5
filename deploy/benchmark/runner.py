"""The benchmark run: one local broker, a scenario per measure, the report at the end."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from deploy.benchmark import ceilings, pipeline
from deploy.benchmark.report import write_report
from deploy.kafka_broker import BrokerConfig, LocalKafka
from deploy.ports import free_ports
from deploy.stack import down, up
from deploy.topics import ensure_topics
from producers import EventProducer, publish_lines
from producers.simulator import Imperfections, SimulationConfig, simulate
from pulse.contract import Event, validate
from pulse.partitioning import partition_for
from pulse.settings import Settings, load_settings
from pulse.topics import Topics
from pulse.wire import encode_events

Log = Callable[[str], None]


@dataclass(frozen=True)
class BenchConfig:
    events: int = 1_000_000
    memory_users: tuple[int, ...] = (100_000, 1_000_000)
    latency_seconds: float = 20.0
    out_dir: Path = Path("bench/results")
    profile_seconds: float = 10.0  # py-spy of the worker during the all-jobs run; 0 skips it


def run_benchmark(settings: Settings, config: BenchConfig, command: str, log: Log = print) -> dict[str, Any]:
    """Measure everything and write ``bench.json`` and ``bench.md`` under ``config.out_dir``."""
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
    log(f"simulating {config.events} events ...")
    lines = _lines(config.events)
    events = [e for e in (validate(orjson.loads(line)) for line in lines) if isinstance(e, Event)]
    n = len(events)
    results: dict[str, Any] = {"events": n}

    produced = _scenario(base, bootstrap, root, "producer")
    ensure_topics(produced)
    started = time.perf_counter()
    with EventProducer.from_settings(produced) as producer:
        publish_lines(lines[:n], "bench", producer)
    results["producer_eps"] = n / (time.perf_counter() - started)
    log(f"EventProducer: {results['producer_eps']:,.0f} events/s")

    records = _records(events, produced.partitions)
    raw_topic = f"{produced.topic_prefix}raw"
    ensure_topics(replace(produced, topic_prefix=raw_topic + "."))
    results["raw_producer_eps"] = n / ceilings.raw_confluent_producer(bootstrap, f"{raw_topic}.events", records)
    results["raw_consumer_eps"] = n / ceilings.raw_aiokafka_consumer(
        bootstrap, Topics.with_prefix(produced.topic_prefix).events, produced.partitions, n
    )
    results["raw_insert_eps"] = n / ceilings.bare_clickhouse_insert(str(root / "insert-ceiling"), [v for _, v in records])
    log(f"ceilings: producer {results['raw_producer_eps']:,.0f}, consumer {results['raw_consumer_eps']:,.0f}, "
        f"insert {results['raw_insert_eps']:,.0f} events/s")  # fmt: skip

    for job, sessions_on in (("validate", False), ("all", True)):
        scenario = _scenario(base, bootstrap, root, job, sessions=sessions_on)
        ensure_topics(scenario)
        with EventProducer.from_settings(scenario) as producer:
            publish_lines(lines[:n], "bench", producer)
        up(scenario, log=lambda _line: None)
        profile = _profile(scenario, root, config) if job == "all" else None
        worker_s, sink_s = pipeline.timed_catch_up(scenario)
        if profile:
            profile.wait()
        results[f"{job}_worker_eps"] = n / worker_s
        results[f"{job}_sink_eps"] = n / sink_s
        down(scenario, log=lambda _line: None)
        log(f"{job}: worker {n / worker_s:,.0f} events/s, through the sink {n / sink_s:,.0f} events/s")

    rate = results["all_sink_eps"] / 2
    scenario = _scenario(base, bootstrap, root, "latency")
    ensure_topics(scenario)
    up(scenario, log=lambda _line: None)
    results["latency_rate_eps"] = rate
    results["latency_ms"] = pipeline.latency_ms(scenario, rate, config.latency_seconds)
    down(scenario, log=lambda _line: None)
    log(f"latency at {rate:,.0f} events/s: {results['latency_ms']}")

    scenario = _scenario(base, bootstrap, root, "memory")
    ensure_topics(scenario)
    up(scenario, log=lambda _line: None)
    pid = int((scenario.run_dir / "worker.pid").read_text())
    baseline = pipeline.rss_bytes(pid)
    memory: dict[str, Any] = {"baseline_rss": baseline}
    users = 0
    for target in config.memory_users:
        pipeline.publish(scenario, pipeline.users_events(users, target - users))
        users = target
        pipeline.timed_catch_up(scenario)
        rss = pipeline.rss_bytes(pid)
        memory[str(target)] = {"rss": rss, "bytes_per_user": (rss - baseline) / target}
        log(f"{target} active users: worker RSS {rss / 2**20:,.0f} MiB, {(rss - baseline) / target:,.0f} B/user")
    results["memory"] = memory
    down(scenario, log=lambda _line: None)
    return results


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


def _scenario(base: Settings, bootstrap: str, root: Path, name: str, sessions: bool = True) -> Settings:
    run = f"{name}-{uuid.uuid4().hex[:6]}"
    env = {"KAFKA_BOOTSTRAP": bootstrap, "PULSE_DATA_DIR": str(root / name), "PULSE_TOPIC_PREFIX": f"bench-{run}.",
           "PULSE_APP_ID": f"bench-{run}", "PULSE_CACHE_DIR": str(base.cache_dir)}  # fmt: skip
    for variable, port in zip(("PULSE_WORKER_METRICS_PORT", "PULSE_SINK_PORT", "PULSE_COLLECTOR_PORT"), free_ports(3)):
        env[variable] = str(port)
    if not sessions:
        (root / name).mkdir(parents=True, exist_ok=True)
        config = root / name / "pulse.yaml"
        config.write_text("sessions:\n  enabled: false\n")
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
