"""The HTTP collector over real HTTP, against a real broker."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from devstack.kafka_broker import BrokerConfig, LocalKafka
from devstack.ports import free_ports
from ops.topics import ensure_topics
from producers.collector import body_digest
from pulse.dead_letter import DeadLetter
from pulse.settings import Settings, load_settings
from pulse.topics import Topics
from tests.integration.conftest import jar_cache_dir
from tests.integration.test_cli import read_all

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)


def event(i: int, **changes: Any) -> dict[str, Any]:
    return {"event_id": f"c{i}", "type": "login", "user_id": f"u{i % 7}", "ts": NOW_MS - 60_000, **changes}


def post(settings: Settings, body: bytes, key: str | None = None) -> tuple[int, dict[str, Any], Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{settings.collector_port}/v1/events", data=body, method="POST")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read()), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read()), exc.headers


@contextmanager
def running_collector(settings: Settings) -> Iterator[None]:
    """A collector process on ``settings``, healthy inside the block and stopped after it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "collect"], env={**os.environ, **settings.to_env()},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_healthy(settings, process)
        yield
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture
def collector(topics_ready: Settings) -> Iterator[Settings]:
    """A collector process with a write key, on the session broker."""
    settings = dataclasses.replace(topics_ready, write_keys=frozenset({"k1", "k2"}))
    with running_collector(settings):
        yield settings


def wait_healthy(settings: Settings, process: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{settings.collector_port}/healthz", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("collector did not start")


def test_accepts_object_array_and_ndjson_once_in_kafka(collector: Settings) -> None:
    single = post(collector, orjson.dumps(event(0)), "k1")
    array = post(collector, orjson.dumps([event(1), event(2), event(3)]), "k2")
    ndjson = post(collector, orjson.dumps(event(4)) + b"\n" + orjson.dumps(event(5)) + b"\n", "k1")
    assert [(s, b) for s, b, _ in (single, array, ndjson)] == [(202, {"accepted": 1}), (202, {"accepted": 3}), (202, {"accepted": 2})]
    records = read_all(collector.bootstrap, Topics.with_prefix(collector.topic_prefix).events, 3)
    events = [orjson.loads(line) for value, _ in records for line in value.split(b"\n")]
    assert sorted(e["event_id"] for e in events) == [f"c{i}" for i in range(6)]
    assert all(NOW_MS <= e["server_received_at"] <= int(time.time() * 1000) for e in events)


def test_invalid_events_are_named_by_index_and_the_valid_ones_accepted(collector: Settings) -> None:
    body = orjson.dumps([event(10), event(11, ts="noon"), event(12), "hello", event(13, ts=NOW_MS + 7_200_000)])
    status, answer, _ = post(collector, body, "k1")
    assert status == 400
    assert answer["accepted"] == 2 and answer["rejected"] == 3
    assert [(e["index"], e["reason"]) for e in answer["errors"]] == [
        (1, "bad_timestamp"),
        (3, "not_an_object"),
        (4, "future_timestamp"),
    ]
    assert answer["errors"][0]["problems"] == ["ts: 'noon' is not an RFC 3339 timestamp"]
    letters = read_all(collector.bootstrap, Topics.with_prefix(collector.topic_prefix).dead_letters, 3)
    reasons = sorted(DeadLetter.from_record(value, headers, "").reason for value, headers in letters)
    assert reasons == ["bad_timestamp", "future_timestamp", "not_an_object"]
    events = read_all(collector.bootstrap, Topics.with_prefix(collector.topic_prefix).events, 1)
    assert sorted(orjson.loads(line)["event_id"] for value, _ in events for line in value.split(b"\n")) == ["c10", "c12"]


def test_a_retried_batch_names_its_dead_letters_as_the_first_attempt_did(collector: Settings) -> None:
    """A client retries the whole batch after a 503: its dead letters come again under the same ids."""
    body = orjson.dumps([event(14), event(15, ts="noon"), "hello", event(16)])
    answers = [post(collector, body, "k1")[:2] for _ in range(2)]
    assert answers[0] == answers[1] and answers[0][0] == 400
    letters = read_all(collector.bootstrap, Topics.with_prefix(collector.topic_prefix).dead_letters, 4)
    ids = Counter(DeadLetter.from_record(value, headers, "").letter_id for value, headers in letters)
    # one letter per invalid event, sent once per attempt: the dead_letters table folds each pair
    digest = body_digest(body)
    assert ids == {f"collector:{digest}#1": 2, f"collector:{digest}#2": 2}
    assert len(digest) == 16


def test_write_key_and_size_limits(collector: Settings) -> None:
    assert post(collector, orjson.dumps(event(20)))[0] == 401
    assert post(collector, orjson.dumps(event(20)), "nope")[0] == 401
    status, answer, _ = post(collector, orjson.dumps([event(i) for i in range(1_001)]), "k1")
    assert (status, answer) == (413, {"error": "1001 events; at most 1000 per request"})
    padded = event(21, props={"pad": "x" * 1_100_000})
    assert post(collector, orjson.dumps(padded), "k1")[0] == 413
    assert post(collector, b"", "k1")[0] == 400


def test_unavailable_kafka_gives_503_with_retry_after(tmp_path: Path) -> None:
    """A broker of its own, stopped under the running collector: delivery times out, then the queue fills."""
    port, controller_port, collector_port, worker_port, sink_port = free_ports(5)
    broker = LocalKafka(BrokerConfig(tmp_path / "kafka", jar_cache_dir(), port=port, controller_port=controller_port))
    broker.start(log=print)
    config = tmp_path / "pulse.yaml"
    config.write_text("collector:\n  delivery_timeout_s: 3\n  retry_after_s: 7\nproducer:\n  queue_max_messages: 2\n")
    settings = load_settings(
        {
            "KAFKA_BOOTSTRAP": broker.bootstrap, "PULSE_DATA_DIR": str(tmp_path / "pulse"), "PULSE_CONFIG": str(config),
            "PULSE_COLLECTOR_PORT": str(collector_port), "PULSE_WORKER_METRICS_PORT": str(worker_port),
            "PULSE_SINK_PORT": str(sink_port),
        }
    )  # fmt: skip
    ensure_topics(settings)
    try:
        with running_collector(settings):
            assert post(settings, orjson.dumps(event(30)))[0] == 202
            broker.stop()
            started = time.monotonic()
            status, answer, headers = post(settings, orjson.dumps(event(31)))
            assert status == 503 and headers["Retry-After"] == "7"
            assert answer["error"].startswith("Kafka unavailable")
            assert time.monotonic() - started < 10
            # more records than the producer's queue holds: refused at once, not queued without bound
            started = time.monotonic()
            status, answer, _ = post(settings, orjson.dumps([event(i) for i in range(40, 60)]))
            assert (status, answer["error"]) == (503, "Kafka unavailable: Kafka producer queue is full (broker unreachable or slower than the input)")
            assert time.monotonic() - started < 2
    finally:
        broker.stop()


def test_concurrent_requests_share_records(topics_ready: Settings, tmp_path: Path) -> None:
    """16 clients post 20 requests of 10 events each, side by side: every request is answered 202,
    every event is in Kafka once, and the requests' events were packed into shared records.

    The linger is set longer than this shared two-core machine may take to read one round of
    16 requests, so what is measured is packing, not the machine's speed: with the default
    5 ms, how many requests meet in one record depends on how fast they come in.
    """
    clients, requests, per_request = 16, 20, 10
    config = tmp_path / "pulse.yaml"
    config.write_text("collector:\n  linger_ms: 50\n")
    settings = dataclasses.replace(topics_ready, config_file=config)

    def client(number: int) -> list[tuple[int, dict[str, Any]]]:
        answers = []
        for request in range(requests):
            batch = [
                {"event_id": f"p{number}-{request}-{i}", "type": "login", "user_id": f"u{number}-{i}", "ts": NOW_MS}
                for i in range(per_request)
            ]
            answers.append(post(settings, orjson.dumps(batch))[:2])
        return answers

    with running_collector(settings), ThreadPoolExecutor(clients) as pool:
        answers = [answer for answers in pool.map(client, range(clients)) for answer in answers]
    assert answers == [(202, {"accepted": per_request})] * (clients * requests)
    records = read_all(settings.bootstrap, Topics.with_prefix(settings.topic_prefix).events, 1)
    sent = sorted(f"p{c}-{r}-{i}" for c in range(clients) for r in range(requests) for i in range(per_request))
    assert sorted(orjson.loads(line)["event_id"] for value, _ in records for line in value.split(b"\n")) == sent
    assert len(records) < clients * requests / 2, f"{len(records)} records for {clients * requests} requests"
