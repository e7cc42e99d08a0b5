"""The faust-streaming 0.15.3 recovery race, reproduced on purpose (see stream_jobs/faust_fixes.py).

A worker with state to restore and a backlog waiting restarts with its post-recovery seek
slowed down, so the fetcher certainly delivers records inside the window upstream leaves
open. With the fix every record comes out; with upstream's order (``PULSE_RACE_UNFIXED``)
records are lost or the partition never commits again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from ops.consumer_lag import consumer_lag
from ops.topics import ensure_topics
from producers import EventProducer
from pulse.outputs import VALID_EVENTS
from pulse.settings import ProducerTuning, Settings
from pulse.topics import Topics
from tests.integration.workload import START_MS

pytestmark = pytest.mark.integration

USERS = 300
# 5,000 records of 5 events: more than an agent's queue holds (Faust's stream_buffer_maxsize, 4,096),
# so the fetcher blocks in the middle of a batch during the seek and resumes it afterwards
BACKLOG_EVENTS = 25_000
CATCH_UP_S = 90.0


def produce(settings: Settings, first: int, count: int) -> set[str]:
    """``count`` logins, packed a few to a record, so the backlog is many records."""
    ids = set()
    with EventProducer(settings.bootstrap, Topics.with_prefix(settings.topic_prefix), ProducerTuning(max_events_per_record=5)) as producer:
        for i in range(first, first + count):
            event = {"event_id": f"race-{i}", "type": "login", "user_id": f"user-{i % USERS}", "ts": START_MS + i * 1_000}
            producer.send(event)
            ids.add(event["event_id"])
    return ids


def start_worker(settings: Settings, log: Path, **flags: bool) -> subprocess.Popen[bytes]:
    """The slow-seek worker; ``unfixed`` / ``no_commit`` set ``PULSE_RACE_UNFIXED`` / ``PULSE_RACE_NO_COMMIT``."""
    switches = {f"PULSE_RACE_{name.upper()}": "1" for name, on in flags.items() if on}
    env = {**os.environ, **settings.to_env(), **switches}
    with log.open("ab") as out:
        worker = subprocess.Popen([sys.executable, "-m", "tests.integration.slow_seek_worker"], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{settings.worker_metrics_port}/readyz", timeout=1):
                return worker
        except (urllib.error.URLError, OSError):
            assert worker.poll() is None, f"worker exited; see {log}"
            time.sleep(0.25)
    raise AssertionError(f"worker not ready in 90 s; see {log}")


def wait_committed(settings: Settings, timeout: float, still_for: float = 10.0) -> int:
    """The worker group's lag once it is 0, or once it has not shrunk for ``still_for`` seconds (a stall).

    A stuck partition's lag still grows: the worker's wall-clock ticks are records too.
    """
    events = [Topics.with_prefix(settings.topic_prefix).events]
    deadline = time.monotonic() + timeout
    lowest, shrunk_at = None, time.monotonic()
    while (lag := consumer_lag(settings.bootstrap, settings.worker_group, events)) and time.monotonic() < deadline:
        if lowest is None or lag < lowest:
            lowest, shrunk_at = lag, time.monotonic()
        elif time.monotonic() - shrunk_at > still_for:
            break
        time.sleep(0.5)
    return lag


def published_ids(settings: Settings) -> set[str]:
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"{settings.app_id}-reader",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([Topics.with_prefix(settings.topic_prefix).output(VALID_EVENTS)])
    ids: set[str] = set()
    quiet = 0
    while quiet < 3:
        batch = [m for m in consumer.consume(1000, 1.0) if not m.error()]
        quiet = 0 if batch else quiet + 1
        ids.update(line.split(b'"event_id":"')[1].split(b'"')[0].decode() for m in batch for line in m.value().split(b"\n"))
    consumer.close()
    return ids


def restart_into_a_backlog(settings: Settings, tmp_path: Path, unfixed: bool) -> tuple[set[str], set[str], int]:
    """State in the changelog, offsets committed, a backlog behind them: restart with the slow seek."""
    ensure_topics(settings)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    expected = produce(settings, 0, 2_000)
    assert wait_committed(settings, CATCH_UP_S) == 0
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)
    expected |= produce(settings, 2_000, BACKLOG_EVENTS)
    return expected, *catch_up(settings, start_worker(settings, log, unfixed=unfixed))


def catch_up(settings: Settings, worker: subprocess.Popen[bytes]) -> tuple[set[str], int]:
    """What the worker published once it caught up or stalled, and the lag it left."""
    try:
        lag = wait_committed(settings, CATCH_UP_S)
    finally:
        worker.kill()
        worker.wait(30)
    return published_ids(settings), lag


def test_a_restart_with_state_to_restore_loses_nothing(settings: Settings, tmp_path: Path) -> None:
    expected, published, lag = restart_into_a_backlog(settings, tmp_path, unfixed=False)
    assert lag == 0, f"the worker stalled {lag} records behind; see {tmp_path / 'worker.log'}"
    assert published == expected


def test_without_the_fix_the_same_restart_loses_records_or_stalls(settings: Settings, tmp_path: Path) -> None:
    """The test's own power: upstream's order fails it, so the test really reproduces the race."""
    expected, published, lag = restart_into_a_backlog(settings, tmp_path, unfixed=True)
    print(f"upstream's order: {lag} records never committed, {len(expected - published)} never processed")
    assert lag > 0 or published != expected


def test_a_restart_before_the_first_commit_starts_from_the_beginning(settings: Settings, tmp_path: Path) -> None:
    """State in the changelog but no committed offset: without a seek, the worker began where the prefetch left off."""
    ensure_topics(settings)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log, no_commit=True)
    expected = produce(settings, 0, 10_000)
    deadline = time.monotonic() + CATCH_UP_S
    while len(published_ids(settings)) < 2_000:  # it processed some records, committed none
        assert time.monotonic() < deadline, f"nothing published; see {log}"
    worker.kill()
    worker.wait(30)
    published, lag = catch_up(settings, start_worker(settings, log))
    assert lag == 0, f"the worker stalled {lag} records behind; see {log}"
    assert published == expected
