"""The sink alone on a real broker and embedded ClickHouse: rows ClickHouse refuses become dead letters.

Only the sink runs; the test publishes output records itself, as the worker would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka import Producer

from ops.consumer_lag import wait_caught_up
from ops.reader import run_query
from pulse.outputs import SESSIONS, VALID_EVENTS
from pulse.settings import Settings
from pulse.topics import Topics

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)


@pytest.fixture
def sink(topics_ready: Settings) -> Iterator[Settings]:
    """A sink process (``pulse sink``), logging to ``<data dir>/logs/sink.log``."""
    settings = topics_ready
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    with (settings.log_dir / "sink.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "sink"], env={**os.environ, **settings.to_env()},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not healthy(settings):
            assert process.poll() is None, f"the sink exited; see {settings.log_dir / 'sink.log'}"
            assert time.monotonic() < deadline, f"the sink did not start; see {settings.log_dir / 'sink.log'}"
            time.sleep(0.2)
        yield settings
    finally:
        process.terminate()
        process.wait(30)


def health(settings: Settings) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"{settings.sink_url}/healthz", timeout=1) as response:
            return orjson.loads(response.read())
    except OSError:
        return None


def healthy(settings: Settings) -> bool:
    return (health(settings) or {}).get("status") == "ok"


def session(name: str, **changes: object) -> dict[str, object]:
    return {"session_id": name, "user_id": "u1", "start": NOW_MS - 60_000, "end": NOW_MS, "duration_ms": 60_000,
            "events": 3, "page_views": 2, "deleted": 0, "version": 1, **changes}  # fmt: skip


def ndjson(*rows: dict[str, object]) -> bytes:
    return b"\n".join(orjson.dumps(row) for row in rows)


def test_refused_rows_are_dead_lettered_and_the_rest_lands(sink: Settings) -> None:
    topics = Topics.with_prefix(sink.topic_prefix)
    sessions_topic = topics.output(SESSIONS)
    event = {"event_id": "e1", "type": "login", "user_id": "u1", "ts": NOW_MS, "props": {}, "context": {}}
    producer = Producer({"bootstrap.servers": sink.bootstrap, "acks": "all"})
    producer.produce(topics.output(VALID_EVENTS), ndjson(event), partition=0)
    bad = session("negative", duration_ms=-5), session("text", events="many")
    producer.produce(sessions_topic, ndjson(session("good-1"), bad[0], session("good-2"), bad[1]), partition=1)
    producer.produce(sessions_topic, ndjson(session("good-3")), partition=1)
    assert producer.flush(30) == 0

    wait_caught_up(sink.bootstrap, sink.sink_group, topics.sink_inputs(), 60)  # the offsets moved on

    landed = run_query(sink, "SELECT session_id FROM sessions FINAL ORDER BY session_id").rows
    assert landed == [["good-1"], ["good-2"], ["good-3"]]
    assert run_query(sink, "SELECT event_id FROM events FINAL").rows == [["e1"]]
    letters = run_query(
        sink,
        "SELECT letter_id, reason, source, dlq_topic, dlq_partition, dlq_offset, raw, errors "
        "FROM dead_letters FINAL ORDER BY letter_id",
    ).rows
    assert [row[:6] for row in letters] == [
        [f"sessions:{sessions_topic}/1@0#1", "sink_rejected", f"{sessions_topic}/1@0#1", sessions_topic, 1, 0],
        [f"sessions:{sessions_topic}/1@0#3", "sink_rejected", f"{sessions_topic}/1@0#3", sessions_topic, 1, 0],
    ]
    negative, text = (orjson.loads(row[6]) for row in letters)
    assert (negative["session_id"], negative["duration_ms"]) == ("negative", -5)
    assert (text["session_id"], text["events"]) == ("text", "many")
    assert letters[0][7] == ["DataError: Unable to create native array for column `duration_ms`: error"]
    assert letters[1][7] == ["column `events`: ValueError: invalid literal for int() with base 10: 'many'"]
    deadline = time.monotonic() + 10  # the sink counts its lag after each poll
    while (answer := health(sink) or {}).get("lag") != 0:
        assert time.monotonic() < deadline, answer
        time.sleep(0.1)
    assert answer["status"] == "ok"
