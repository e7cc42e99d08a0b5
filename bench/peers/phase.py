"""The ``peers`` phase: the same sessions computed by our worker and by two Python peers, on one topic.

The input is simulated traffic without imperfections (every user's events in time order, no
resent or late event), published one event a record, keyed by user, to the partition our
producers give the user: the most direct form a Faust or Quix Streams user would consume.
On that topic, one after another (the machine's cores are not shared between them):

1. the raw aiokafka consumer + orjson (the ceiling: reading and decoding, nothing else);
2. each peer (:mod:`.faust_app`, :mod:`.quix_app`), a process with its own consumer group
   and output topic, timed from its first to its last event (:class:`.protocol.Progress`);
3. our worker (``pulse up``), timed by its event counter, read every 50 ms from before it
   starts, from its last reading at 0 to its first at every event. The sink runs behind it as
   in production, on the same cores, where the peers only produce their rows: if anything, a
   handicap for ours. The peers run first because our worker appends its wall-clock ticks to
   the topic it reads (:mod:`stream_jobs.events_agent`), records the peers would take for events.

Then each peer's sessions are compared with ours, user by user (:mod:`.outputs`).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench import ceilings, pipeline
from bench.peers import outputs
from bench.peers.environment import environment, interpreter, package_version
from bench.peers.protocol import PeerRun, read_stats
from devstack.stack import down, up
from ops.consumer_lag import wait_caught_up
from ops.topics import ensure_topics
from pulse.contract import Event, validate
from pulse.partitioning import partition_for
from pulse.settings import Settings
from pulse.topics import Topics
from stream_jobs.runner import default_jobs
from stream_jobs.sessionizer import SessionRules
from stream_jobs.sessions_job import SessionsJob

Log = Callable[[str], None]

# our worker's event counter, read this often: every read renders all of its /metrics, and at 0.05 s that took
# a tenth of the worker's time in its profile, a handicap the peers (timing themselves) do not have
SAMPLE_PERIOD_S = 0.25
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Peer:
    """A peer program and the package it measures."""

    name: str
    title: str
    how: str  # what its code does, in a few words
    module: str  # run as ``python -m module '<PeerRun JSON>'``
    package: str  # the distribution, for its version in the report
    requirements: tuple[str, ...] = ()  # an environment of its own with these (see .environment); none: ours


PEERS = (
    Peer("faust", "direct Faust", "a table write per event", f"{__package__}.faust_app", "faust-streaming"),
    Peer("quix", "Quix Streams", "its State API", f"{__package__}.quix_app", "quixstreams",
         ("quixstreams==3.28.1", "orjson>=3.10")),
)  # fmt: skip


def side_by_side(settings: Settings, lines: Sequence[bytes], log: Log) -> dict[str, Any]:
    """Run the raw consumer, each peer and our pipeline on ``lines``; their rates and agreement.

    ``settings`` is a scenario of its own (topics, groups, data directory) on a running broker.    """
    events = [event for event in (validate(orjson.loads(line)) for line in lines) if isinstance(event, Event)]
    n = len(events)
    topic = Topics.with_prefix(settings.topic_prefix).events
    ensure_topics(settings)
    _publish(settings.bootstrap, topic, events, settings.partitions)
    results: dict[str, Any] = {"events": n, "users": len({event.user_id for event in events})}
    results["raw_consumer_eps"] = n / ceilings.raw_aiokafka_consumer(settings.bootstrap, topic, settings.partitions, n)
    log(f"[peers] {n:,} events of {results['users']:,} users, one a record; raw aiokafka consumer + orjson "
        f"{results['raw_consumer_eps']:,.0f} events/s")  # fmt: skip

    by_peer, theirs = _peers(settings, topic, n, log)
    log("[peers] our worker and sink on the same topic ...")
    worker_eps, ours = _ours(settings, topic)
    results.update(worker_eps=worker_eps, sessions=outputs.count(ours), by_peer=by_peer)
    log(f"[peers] our worker: {_rate(worker_eps)} events/s, {results['sessions']:,} sessions")
    for name, sessions in theirs.items():
        figures = by_peer[name]
        figures["ratio"] = worker_eps / figures["eps"] if worker_eps and figures["eps"] else None
        figures.update(_agreement(ours, sessions))
        if figures["equal"]:
            log(f"[peers] {figures['title']}: sessions equal to ours ({figures['sessions']:,} sessions of "
                f"{results['users']:,} users); our worker at {_ratio(figures['ratio'])} its rate")  # fmt: skip
        else:
            log(f"[peers] !!! {figures['title']}: sessions DIFFER from ours for {figures['differing_users']:,} of "
                f"{results['users']:,} users, e.g. {orjson.dumps(figures['example']).decode()}")  # fmt: skip
    return results


def _peers(settings: Settings, topic: str, n: int, log: Log) -> tuple[dict[str, Any], dict[str, outputs.Sessions]]:
    """Each peer over the topic in turn: its figures, and the sessions of those that ran."""
    by_peer: dict[str, dict[str, Any]] = {}
    theirs: dict[str, outputs.Sessions] = {}
    for peer in PEERS:
        figures = by_peer[peer.name] = {"title": peer.title, "how": peer.how, "package": peer.package}
        python = interpreter(peer.name, peer.requirements, settings.cache_dir, log)
        log(f"[peers] {peer.title} ({peer.how}) ...")
        stats, theirs[peer.name] = _run_peer(peer, python, settings, topic, n)
        figures.update(version=package_version(python, peer.package), eps=stats["eps"], seconds=stats["seconds"],
                       sessions=outputs.count(theirs[peer.name]))  # fmt: skip
        log(f"[peers] {peer.title}: {_rate(stats['eps'])} events/s, {figures['sessions']:,} sessions")
    return by_peer, theirs


def _publish(bootstrap: str, topic: str, events: Sequence[Event], partitions: int) -> None:
    """One event a record, keyed by user (the key the peers' state is kept by), in our partition for the user.

    Idempotent, so a batch retried (a partition's leader not yet elected just after the topic was
    made) keeps its place: reordered events would be too late for our worker and would change the
    peers' sessions, whose rule takes every user's events in time order.
    """
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "compression.type": "lz4", "linger.ms": 20,
                         "enable.idempotence": True})  # fmt: skip
    for event in events:
        while True:
            try:
                producer.produce(topic, orjson.dumps(event.to_dict()), event.user_id.encode(),
                                 partition=partition_for(event.user_id, partitions))  # fmt: skip
                break
            except BufferError:
                producer.poll(0.05)
    if left := producer.flush(120):
        raise RuntimeError(f"{left:,} events not delivered to {topic}")


def _run_peer(peer: Peer, python: Path, settings: Settings, topic: str, n: int) -> tuple[dict[str, Any], outputs.Sessions]:
    """Run a peer over the whole topic; its stats and its sessions."""
    rules = _rules(settings)
    run = PeerRun(
        bootstrap=settings.bootstrap, input_topic=topic, output_topic=f"{settings.topic_prefix}{peer.name}.sessions",
        group=f"{settings.app_id}-{peer.name}", partitions=settings.partitions, events=n,
        timeout_ms=rules.timeout_ms, max_length_ms=rules.max_length_ms,
        work_dir=str(settings.data_dir / f"peer-{peer.name}"),
    )  # fmt: skip
    _create_topic(settings, run.output_topic)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.log_dir / f"peer-{peer.name}.log"
    timeout = 60 + n / 200  # seconds: start-up, then 200 events/s, far below any peer
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([str(python), "-m", peer.module, run.to_json()], stdout=log_file, env=environment(),
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while (stats := read_stats(run.stats_path)) is None:
            if process.poll() is not None:
                raise RuntimeError(f"{peer.title} exited ({process.returncode}) before the input's end; see {log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{peer.title} not through {n:,} events after {timeout:.0f}s; see {log_path}")
            time.sleep(0.2)
        return stats, outputs.peer_sessions(outputs.peer_rows(run.bootstrap, run.output_topic, n, timeout=60))
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ours(settings: Settings, topic: str) -> tuple[float | None, outputs.Sessions]:
    """Our worker's rate on the topic (None if the counter was never seen at 0) and the sessions in ClickHouse."""
    sampler = pipeline._CounterSampler(settings.worker_metrics_port, time.perf_counter(), SAMPLE_PERIOD_S)
    try:
        sampler.start()
        try:
            up(settings, log=lambda _line: None)
            wait_caught_up(settings.bootstrap, settings.worker_group, [topic], pipeline.CATCH_UP_S, poll_s=0.1)
        finally:
            sampler.done.set()
            sampler.join()
        sink_inputs = Topics.with_prefix(settings.topic_prefix).sink_inputs()
        wait_caught_up(settings.bootstrap, settings.sink_group, sink_inputs, pipeline.CATCH_UP_S, poll_s=0.1)
        return sampler.steady_eps(0.0, 1.0), outputs.ours(settings)
    finally:
        down(settings, log=lambda _line: None)


def _agreement(ours: outputs.Sessions, theirs: outputs.Sessions) -> dict[str, Any]:
    """Whether a peer's sessions equal ours; how many users differ and the first of them, side by side."""
    differing = outputs.differing_users(ours, theirs)
    figures: dict[str, Any] = {"equal": not differing, "differing_users": len(differing)}
    if differing:
        user = differing[0]
        figures["example"] = {"user_id": user, "ours": [list(s) for s in ours.get(user, [])],
                              "theirs": [list(s) for s in theirs.get(user, [])]}  # fmt: skip
    return figures


def _rules(settings: Settings) -> SessionRules:
    """The session rules our worker runs with under ``settings``: the peers apply the same."""
    return next(job.rules for job in default_jobs(settings) if isinstance(job, SessionsJob))


def _create_topic(settings: Settings, name: str) -> None:
    """A peer's output topic (the broker creates none by itself)."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    new = NewTopic(name, num_partitions=settings.partitions, replication_factor=settings.replication_factor)
    for future in admin.create_topics([new], operation_timeout=30).values():
        future.result(30)


def _rate(eps: float | None) -> str:
    return f"{eps:,.0f}" if eps else "-"


def _ratio(ratio: float | None) -> str:
    return f"{ratio:.2f}x" if ratio else "-"
