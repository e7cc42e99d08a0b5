"""The ``pulse`` commands as a user runs them, against the session's real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer

from ops.reader import QueryError, run_query
from pulse.dead_letter import DeadLetter
from pulse.settings import Settings
from pulse.topics import Topics
from sinks.migrations import available

pytestmark = pytest.mark.integration

GOOD = {"type": "login", "user_id": "u1", "ts": "2025-11-23T10:00:00Z"}


def pulse(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.to_env()}
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], env=env, capture_output=True, text=True, timeout=120)


def read_all(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, list]]:
    """Every record of ``topic``: at least ``expected`` of them, then until a quiet second."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    found: list[tuple[bytes, list]] = []
    for _ in range(120):
        batch = [m for m in consumer.consume(500, 1.0) if not m.error()]
        found.extend((m.value(), m.headers()) for m in batch)
        if not batch and len(found) >= expected:
            break
    consumer.close()
    return found


def test_every_command_has_help() -> None:
    for command in ["kafka", "topics", "migrate", "worker", "sink", "produce", "collect", "query", "up", "down", "status", "top", "demo", "soak", "alerts",
                    "forget", "hash-write-key"]:  # fmt: skip
        result = subprocess.run([sys.executable, "-m", "ops.cli", command, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "KAFKA_BOOTSTRAP" in result.stdout, command


def test_produce_reports_invalid_lines_and_dead_letters_them(topics_ready: Settings, tmp_path: Path) -> None:
    settings = topics_ready
    lines = [orjson.dumps({**GOOD, "event_id": f"e{i}"}) for i in range(50)]
    lines.insert(10, b"{not json")
    lines.insert(20, orjson.dumps({**GOOD, "event_id": "x", "ts": 12}))
    lines.insert(30, b"")
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = pulse(settings, "produce", str(path))

    assert result.returncode == 0, result.stderr
    assert "53 lines: 50 events published (50 confirmed), 2 invalid sent to the dead-letter topic, 1 blank" in result.stdout
    assert "invalid: events.jsonl:11: bad_json" in result.stderr
    assert "invalid: events.jsonl:21: bad_timestamp: ts: 12 is before 2000-01-01" in result.stderr
    letters = [
        DeadLetter.from_record(value, headers, "")
        for value, headers in read_all(settings.bootstrap, Topics.with_prefix(settings.topic_prefix).dead_letters, 2)
    ]
    assert sorted((d.letter_id, d.reason, d.raw) for d in letters) == [
        ("events.jsonl:11", "bad_json", b"{not json"),
        ("events.jsonl:21", "bad_timestamp", lines[20]),
    ]
    events = read_all(settings.bootstrap, Topics.with_prefix(settings.topic_prefix).events, 1)
    assert sum(len(value.split(b"\n")) for value, _ in events) == 50


def test_produce_without_topics_says_how_to_fix(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(orjson.dumps({**GOOD, "event_id": "e"}))
    result = pulse(settings, "produce", str(path))
    assert result.returncode == 1
    assert "does not exist; create it with `pulse topics` or `pulse up`" in result.stderr


def test_migrate_is_idempotent_and_queries_are_read_only(pipeline: Settings) -> None:
    settings = pipeline
    tables = run_query(settings, "SELECT version, name FROM schema_migrations FINAL ORDER BY version").rows
    assert tables == [[migration.version, migration.name] for migration in available()]
    with pytest.raises(QueryError, match="readonly"):
        run_query(settings, "DROP TABLE events")
    with pytest.raises(QueryError, match="one statement"):
        run_query(settings, "SELECT 1; DROP TABLE events")
    busy = pulse(settings, "migrate")  # the running sink holds the embedded engine
    assert busy.returncode == 1 and "another process holds it" in busy.stderr
    assert run_query(settings, "SELECT count() FROM events").scalar() == 0


def test_migrate_applies_once(settings: Settings) -> None:
    first, second = pulse(settings, "migrate"), pulse(settings, "migrate")
    assert first.stdout.splitlines() == [f"applied {m.version:04d}_{m.name}" for m in available()], first.stderr
    assert second.stdout.splitlines() == ["nothing to apply"]


def test_gzip_backfill_resumes_after_the_confirmed_line(topics_ready: Settings, tmp_path: Path) -> None:
    import gzip

    settings = topics_ready
    path = tmp_path / "history.jsonl.gz"
    with gzip.open(path, "wb") as out:
        out.write(b"\n".join(orjson.dumps({**GOOD, "event_id": f"h{i}"}) for i in range(250)) + b"\n")

    first = pulse(settings, "produce", str(path), "--start-line", "101")
    assert first.returncode == 0, first.stderr
    assert "250 lines: 150 events published (150 confirmed), 0 invalid sent to the dead-letter topic, 0 blank, 100 skipped before line 101" in first.stdout
    again = pulse(settings, "produce", str(path), "--resume")
    assert "250 lines: 0 events published (0 confirmed)" in again.stdout and "250 skipped" in again.stdout
    records = read_all(settings.bootstrap, Topics.with_prefix(settings.topic_prefix).events, 1)
    ids = sorted(int(orjson.loads(line)["event_id"][1:]) for value, _ in records for line in value.split(b"\n"))
    assert ids == list(range(100, 250))
