"""The collector's wiring of the packer, over real HTTP with Kafka faked: when a request is answered.

Each case builds its records deterministically: a record of two events is closed as soon as
the second event comes in, so which requests share a record does not depend on timing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientResponse, ClientSession
from aiohttp.test_utils import TestServer

from producers.collector import Collector
from producers.packing import PackedRecord
from pulse.contract import Event, Invalid, validate
from pulse.dead_letter import DeadLetter
from pulse.settings import Settings, load_settings

QUEUE_FULL = "Kafka producer queue is full (broker unreachable or slower than the input)"
NOW_MS = int(time.time() * 1000)

OnDone = Callable[[str | None], None]
Post = Callable[[bytes], "asyncio.Task[ClientResponse]"]  # starts a POST /v1/events of the body


class FakeKafka:
    """Stands in for ``EventProducer``: keeps what the collector produces; the test decides each outcome."""

    def __init__(self, refuse_at_once: str | None = None) -> None:
        self.records: list[tuple[PackedRecord, OnDone]] = []
        self.encoded = 0
        self._refuse_at_once = refuse_at_once

    def check(self, obj: Any) -> Event | Invalid:
        return validate(obj, not_after_ms=NOW_MS + 3_600_000)

    def encode(self, event: Event) -> tuple[int, bytes]:
        self.encoded += 1
        return int(event.user_id.removeprefix("u")), event.event_id.encode()

    def produce_now(self, record: PackedRecord, on_done: OnDone) -> None:
        if self._refuse_at_once:
            on_done(self._refuse_at_once)
        else:
            self.records.append((record, on_done))

    def dead_letter_now(self, letter: DeadLetter, on_done: OnDone) -> None:
        raise AssertionError("no dead letters in these cases")

    def poll(self, timeout: float) -> None:
        time.sleep(timeout)

    def flush(self) -> None:
        pass


def settings(tmp_path: Path, linger_ms: int) -> Settings:
    """Records of at most two events, produced when full or ``linger_ms`` after their first event."""
    defaults = load_settings({"PULSE_DATA_DIR": str(tmp_path)})
    return dataclasses.replace(
        defaults,
        producer=dataclasses.replace(defaults.producer, max_events_per_record=2),
        collector=dataclasses.replace(defaults.collector, linger_ms=linger_ms),
    )


def batch(request: str, *users: int) -> bytes:
    return orjson.dumps(
        [{"event_id": f"{request}{u}", "type": "login", "user_id": f"u{u}", "ts": NOW_MS} for u in users]
    )


def from_poll_thread(on_done: OnDone, error: str | None) -> None:
    """Report a delivery as confluent-kafka does: from the thread that polls the producer."""
    thread = threading.Thread(target=on_done, args=(error,))
    thread.start()
    thread.join()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in 5 s")


async def answer(response: asyncio.Task[ClientResponse]) -> tuple[int, Any]:
    done = await response
    return done.status, await done.json()


def run(kafka: FakeKafka, config: Settings, scenario: Callable[[Post], Any]) -> Any:
    async def main() -> Any:
        async with TestServer(Collector(config, kafka).application()) as server, ClientSession() as session:
            return await scenario(
                lambda body: asyncio.ensure_future(session.post(server.make_url("/v1/events"), data=body))
            )

    return asyncio.run(main())


def test_requests_sharing_records_are_answered_once_every_record_of_theirs_is_confirmed(tmp_path: Path) -> None:
    kafka = FakeKafka()

    async def scenario(post: Post) -> Any:
        first = post(batch("a", 0, 1))
        await until(lambda: kafka.encoded == 2)  # packed: one open record in partition 0, one in 1
        second = post(batch("b", 0, 1))  # fills both
        await until(lambda: len(kafka.records) == 2)
        assert [record.value() for record, _ in kafka.records] == [b"a0\nb0", b"a1\nb1"]
        from_poll_thread(kafka.records[0][1], None)
        await asyncio.sleep(0.05)
        assert not first.done() and not second.done()  # both still wait for partition 1's record
        from_poll_thread(kafka.records[1][1], None)
        return await answer(first), await answer(second)

    outcome = run(kafka, settings(tmp_path, linger_ms=60_000), scenario)
    assert outcome == ((202, {"accepted": 2}), (202, {"accepted": 2}))


def test_a_refused_record_answers_503_to_every_request_it_carries_at_once(tmp_path: Path) -> None:
    kafka = FakeKafka()

    async def scenario(post: Post) -> Any:
        first = post(batch("a", 0, 1))
        await until(lambda: kafka.encoded == 2)
        second = post(batch("b", 0))  # fills partition 0's record; partition 1's stays open
        await until(lambda: len(kafka.records) == 1)
        from_poll_thread(kafka.records[0][1], "Broker: Not enough in-sync replicas")
        return await answer(first), await answer(second)

    refused = (503, {"error": "Kafka unavailable: Broker: Not enough in-sync replicas"})
    assert run(kafka, settings(tmp_path, linger_ms=60_000), scenario) == (refused, refused)


def test_a_full_producer_queue_answers_503(tmp_path: Path) -> None:
    kafka = FakeKafka(refuse_at_once=QUEUE_FULL)

    async def scenario(post: Post) -> Any:
        return await answer(post(batch("a", 0)))

    assert run(kafka, settings(tmp_path, linger_ms=0), scenario) == (503, {"error": f"Kafka unavailable: {QUEUE_FULL}"})


def test_a_record_that_is_not_full_is_produced_after_the_linger(tmp_path: Path) -> None:
    kafka = FakeKafka()

    async def scenario(post: Post) -> Any:
        request = post(batch("a", 3))
        await until(lambda: len(kafka.records) == 1)
        assert [(record.partition, record.value()) for record, _ in kafka.records] == [(3, b"a3")]
        from_poll_thread(kafka.records[0][1], None)
        return await answer(request)

    assert run(kafka, settings(tmp_path, linger_ms=10), scenario) == (202, {"accepted": 1})
