"""Reading a state changelog back (``catch_up``) as the worker's producer wrote it, on the real broker."""

from __future__ import annotations

import asyncio

import pytest

from stream_jobs.changelog_restore import catch_up
from stream_jobs.output_producer import OutputProducer
from tests.integration.test_output_producer import _topic

pytestmark = pytest.mark.integration


def write(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None, int]]) -> dict[int, int]:
    """Produce (key, value, partition) records as the worker does; the last offset per partition."""
    producer = OutputProducer(bootstrap, track_offsets_of=topic)
    for key, value, partition in records:
        assert producer.send(topic, value, key=key, partition=partition) is None
    return asyncio.run(producer.confirm())


def test_every_key_comes_back_at_its_newest_value_and_tombstones_remove_it(kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap, 3)
    ends = write(kafka_bootstrap, topic, [
        (b"u0|a", b"a1", 0), (b"u0|b", b"b1", 0), (b"u0|a", b"a2", 0), (b"u0|b", None, 0),
        (b"u1|c", b"c1", 1), (b"c1", b"clock", 1),
        (b"u2|d", b"d1", 2),
    ])  # fmt: skip
    restored = catch_up(kafka_bootstrap, topic, [0, 1, 2], held={})
    assert restored.values == {b"u0|a": b"a2", b"u1|c": b"c1", b"c1": b"clock", b"u2|d": b"d1"}
    assert restored.offsets == ends == {0: 3, 1: 1, 2: 0} and restored.records == 7 and restored.kept == set()


def test_a_held_partition_is_kept_while_its_changelog_ends_where_the_holder_left_it(kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap, 3)
    write(kafka_bootstrap, topic, [(b"u0|a", b"a1", 0), (b"u1|b", b"b1", 1)])
    # partition 0 as held; partition 1 held at an older offset (another worker wrote since); 2 empty, held as such
    restored = catch_up(kafka_bootstrap, topic, [0, 1, 2], held={0: 0, 1: -1, 2: None})
    assert restored.kept == {0, 2}
    assert restored.values == {b"u1|b": b"b1"} and restored.offsets == {1: 0}
    # an empty partition not held yet is read (nothing), and reported as holding no record
    assert catch_up(kafka_bootstrap, topic, [2], held={}).offsets == {2: None}
