"""Segment's API on the collector over real HTTP, Kafka faked: answers, write keys, limits, gzip.

The end to end test with Segment's own SDK and a real broker is tests/integration/test_segment_api.py.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gzip
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY

from producers.collector import Collector
from producers.packing import PackedRecord
from pulse.contract import Event, Invalid, validate
from pulse.dead_letter import DeadLetter
from pulse.settings import Settings, hash_write_key, load_settings

NOW_MS = int(time.time() * 1000)
OnDone = Callable[[str | None], None]


class FakeKafka:
    """Stands in for ``EventProducer``: confirms every record and dead letter at once, or refuses them all."""

    def __init__(self, refuse: str | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.letters: list[DeadLetter] = []
        self._refuse = refuse

    def check(self, obj: Any) -> Event | Invalid:
        return validate(obj, not_after_ms=NOW_MS + 3_600_000)

    def encode(self, event: Event) -> tuple[int, bytes]:
        return 0, orjson.dumps(event.to_dict())

    def produce_now(self, record: PackedRecord, on_done: OnDone) -> None:
        self.events.extend(orjson.loads(line) for line in record.lines)
        on_done(self._refuse)

    def dead_letter_now(self, letter: DeadLetter, on_done: OnDone) -> None:
        self.letters.append(letter)
        on_done(self._refuse)

    def poll(self, timeout: float) -> None:
        time.sleep(timeout)

    def flush(self) -> None:
        pass


Answer = tuple[int, dict[str, Any], dict[str, str]]


def serve(settings: Settings, kafka: FakeKafka, requests: list[tuple[str, bytes, dict[str, str]]]) -> list[Answer]:
    """POST each ``(path, body, headers)`` in turn to a collector; their answers."""

    async def main() -> list[Answer]:
        collector = Collector(settings, kafka)  # type: ignore[arg-type]
        async with TestServer(collector.application()) as server, ClientSession() as session:
            answers = []
            for path, body, headers in requests:
                async with session.post(server.make_url(path), data=body, headers=headers) as response:
                    answers.append((response.status, await response.json(), dict(response.headers)))
            return answers

    return asyncio.run(main())


def settings(tmp_path: Path, keys: str = "", collector: dict[str, Any] | None = None) -> Settings:
    """Collector settings, linger 0; ``keys`` the write-keys file's entries."""
    env = {"PULSE_DATA_DIR": str(tmp_path)}
    if keys:
        (tmp_path / "keys.yaml").write_text(f"keys:\n{keys}")
        env["PULSE_WRITE_KEYS_FILE"] = str(tmp_path / "keys.yaml")
    loaded = load_settings(env)
    return dataclasses.replace(loaded, collector=dataclasses.replace(loaded.collector, linger_ms=0, **collector or {}))


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def call(i: int, **fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Song Played", "userId": f"u{i}", "messageId": f"m{i}", **fields}


WEB = f"  - {{name: web, source: website, sha256: {hash_write_key('w-key')}, events_per_s: 1, burst: 3}}\n"


def test_a_batch_is_answered_200_once_in_kafka_with_refused_calls_dead_lettered(tmp_path: Path) -> None:
    kafka = FakeKafka()
    body = orjson.dumps({"batch": [call(1), call(2, userId=None), call(3)], "sentAt": "2026-01-01T00:00:00Z"})
    (answer,) = serve(settings(tmp_path), kafka, [("/v1/batch", body, {})])
    assert answer[:2] == (200, {"success": True})
    assert [event["event_id"] for event in kafka.events] == ["m1", "m3"]
    assert [(letter.reason, letter.source) for letter in kafka.letters] == [("missing_field", "segment")]
    assert orjson.loads(kafka.letters[0].raw)["messageId"] == "m2"


def test_a_refused_single_call_is_answered_400_with_its_reason(tmp_path: Path) -> None:
    kafka = FakeKafka()
    answers = serve(
        settings(tmp_path),
        kafka,
        [("/v1/track", orjson.dumps({"userId": "u1"}), {}), ("/v1/identify", orjson.dumps({"userId": "u1"}), {})],
    )
    assert [answer[:2] for answer in answers] == [
        (400, {"success": False, "code": "missing_field", "message": "event: a track call needs the event's name"}),
        (200, {"success": True}),
    ]
    assert [event["type"] for event in kafka.events] == ["identify"] and len(kafka.letters) == 1


def test_write_keys_from_the_basic_user_or_the_body(tmp_path: Path) -> None:
    kafka = FakeKafka()
    batch = orjson.dumps({"batch": [call(1)]})
    in_body = orjson.dumps({"batch": [call(2)], "writeKey": "w-key"})
    answers = serve(
        settings(tmp_path, WEB),
        kafka,
        [
            ("/v1/batch", batch, basic("w-key")),
            ("/v1/batch", in_body, {}),
            ("/v1/batch", batch, {}),
            ("/v1/batch", batch, basic("wrong")),
            ("/v1/batch", in_body, basic("wrong")),  # a wrong header key is not rescued by the body's
            ("/v1/batch", b"{not json", {}),  # no key to be found: unauthorised, not malformed
        ],
    )
    assert [answer[0] for answer in answers] == [200, 200, 401, 401, 401, 401]
    assert answers[2][1]["code"] == "unauthorized"
    assert [event["context"]["source"] for event in kafka.events] == ["website", "website"]
    assert {event["context"]["key_name"] for event in kafka.events} == {"web"}


def test_the_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    kafka = FakeKafka()
    two = orjson.dumps({"batch": [call(1), call(2)]})
    answers = serve(settings(tmp_path, WEB), kafka, [("/v1/batch", two, basic("w-key"))] * 3)
    assert [answer[0] for answer in answers] == [200, 429, 429]
    assert answers[1][1]["code"] == "rate_limited" and answers[1][2]["Retry-After"] == "1"
    assert len(kafka.events) == 2


def test_size_limits_answer_413(tmp_path: Path) -> None:
    kafka = FakeKafka()
    large_call = orjson.dumps(call(1, properties={"pad": "x" * 33_000}))
    large_batch = orjson.dumps({"batch": [call(i, properties={"pad": "x" * 30_000}) for i in range(20)]})
    answers = serve(settings(tmp_path), kafka, [("/v1/track", large_call, {}), ("/v1/batch", large_batch, {})])
    assert [(status, body["code"]) for status, body, _ in answers] == [(413, "too_large"), (413, "too_large")]
    assert not kafka.events and not kafka.letters


def test_a_gzip_body_is_read_and_measured_unzipped(tmp_path: Path) -> None:
    kafka = FakeKafka()
    zipped = gzip.compress(orjson.dumps({"batch": [call(1), call(2)]}))
    bomb = gzip.compress(orjson.dumps({"batch": [call(1, properties={"pad": "x" * 600_000})]}))
    answers = serve(
        settings(tmp_path),
        kafka,
        [
            ("/v1/batch", zipped, {"Content-Encoding": "gzip"}),
            ("/v1/batch", bomb, {"Content-Encoding": "gzip"}),  # 1 KB zipped, 600 KB of JSON
        ],
    )
    assert [answer[0] for answer in answers] == [200, 413]
    assert len(bomb) < 2_000 and [event["event_id"] for event in kafka.events] == ["m1", "m2"]


def test_a_body_that_does_not_unzip_is_answered_400(tmp_path: Path) -> None:
    for path in ("/v1/batch", "/v1/events"):  # one request each: the server closes such a connection
        (answer,) = serve(settings(tmp_path), FakeKafka(), [(path, b"not gzip", {"Content-Encoding": "gzip"})])
        assert answer[0] == 400 and "does not decode as gzip" in orjson.dumps(answer[1]).decode()


def test_kafka_unavailable_answers_503_with_retry_after(tmp_path: Path) -> None:
    kafka = FakeKafka(refuse="Broker: Not enough in-sync replicas")
    (answer,) = serve(settings(tmp_path), kafka, [("/v1/batch", orjson.dumps({"batch": [call(1)]}), {})])
    assert answer[0] == 503 and answer[2]["Retry-After"] == "5"
    assert answer[1] == {
        "success": False,
        "code": "unavailable",
        "message": "Kafka unavailable: Broker: Not enough in-sync replicas",
    }


def test_an_empty_batch_is_a_success_with_nothing_to_publish(tmp_path: Path) -> None:
    (answer,) = serve(settings(tmp_path), FakeKafka(), [("/v1/batch", b'{"batch": []}', {})])
    assert answer[:2] == (200, {"success": True})


def test_v1_events_takes_the_same_keys_and_limits(tmp_path: Path) -> None:
    kafka = FakeKafka()
    event = {"event_id": "e1", "type": "login", "user_id": "u1", "ts": NOW_MS}
    body = orjson.dumps([event, {**event, "event_id": "e2"}])
    answers = serve(
        settings(tmp_path, WEB),
        kafka,
        [
            ("/v1/events", body, {"Authorization": "Bearer w-key"}),
            ("/v1/events", body, {"Authorization": "Bearer w-key"}),
            ("/v1/events", body, {}),
        ],
    )
    assert [answer[0] for answer in answers] == [202, 429, 401]
    assert answers[1][2]["Retry-After"] == "1"


@pytest.mark.parametrize("route", ["track", "identify", "page", "screen", "group", "alias"])
def test_requests_and_events_are_counted_by_api(tmp_path: Path, route: str) -> None:
    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    path = f"/v1/{route}"
    before = count("pulse_collector_requests_total", api=path, status="200")
    accepted = count("pulse_collector_events_total", api=path, outcome="accepted")
    fields = {"userId": "u1", "groupId": "g1", "previousId": "a1", "event": "Clicked", "properties": {"path": "/"}}
    (answer,) = serve(settings(tmp_path), FakeKafka(), [(path, orjson.dumps(fields), {})])
    assert answer[0] == 200
    assert count("pulse_collector_requests_total", api=path, status="200") == before + 1
    assert count("pulse_collector_events_total", api=path, outcome="accepted") == accepted + 1
