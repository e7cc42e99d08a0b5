"""The worker's memory store across rebalances: what it keeps, drops and reads back (the reading itself is
``tests/integration/test_changelog_restore.py``, on the real broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from types import SimpleNamespace
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from faust.stores import by_url
from faust.types import TP
from yarl import URL

from stream_jobs import state_store
from stream_jobs.changelog_restore import Restored
from stream_jobs.state_keys import clock_key, user_key
from stream_jobs.state_store import MemoryStore

CHANGELOG = "pulse-user-state-changelog"


class Changelog:
    """What ``catch_up`` answers: partitions whose end the holder has are kept, the others read from ``values``."""

    def __init__(self, ends: dict[int, int], values: dict[bytes, bytes], failures: int = 0) -> None:
        self.ends, self.values, self.failures = ends, values, failures
        self.calls: list[tuple[list[int], dict[int, int | None]]] = []

    def __call__(self, bootstrap: str, topic: str, partitions: Iterable[int],
                 held: Mapping[int, int | None]) -> Restored:  # fmt: skip
        assert (bootstrap, topic) == ("127.0.0.1:9092", CHANGELOG)
        self.calls.append((list(partitions), dict(held)))
        if self.failures:
            self.failures -= 1
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        kept = {p for p in self.calls[-1][0] if held.get(p, -2) == self.ends.get(p)}
        read = [p for p in self.calls[-1][0] if p not in kept]
        values = {key: value for key, value in self.values.items() if int(key[1 : key.index(b"|")]) in read}
        return Restored(kept, values, {p: self.ends.get(p) for p in read}, len(values))


def store_holding(actives: set[int]) -> MemoryStore:
    assignor = SimpleNamespace(assigned_actives=lambda: {TP(CHANGELOG, p) for p in actives} | {TP("events", 9)})
    app = SimpleNamespace(assignor=assignor, conf=SimpleNamespace(broker=[URL("kafka://127.0.0.1:9092")]))
    table = SimpleNamespace(name="pulse-user-state", changelog_topic=SimpleNamespace(get_topic_name=lambda: CHANGELOG))
    return MemoryStore("pulse-memory://", app, table)  # type: ignore[arg-type]


def rebalance(store: MemoryStore, actives: set[int]) -> None:
    store.app.assignor.assigned_actives = lambda: {TP(CHANGELOG, p) for p in actives}  # type: ignore[attr-defined]
    asyncio.run(store.on_rebalance(set(), set(), set()))


def test_partitions_are_read_back_kept_while_their_changelog_ends_where_held_and_dropped_when_lost(
    monkeypatch: Any,
) -> None:
    changelog = Changelog({0: 5, 1: 7, 2: 3}, {user_key(p, f"u{p}"): f"v{p}".encode() for p in range(3)})
    monkeypatch.setattr(state_store, "catch_up", changelog)
    store = store_holding({0, 1, 2})
    rebalance(store, {0, 1, 2})
    assert store.data == changelog.values and store.kept == frozenset()
    assert [store.persisted_offset(TP(CHANGELOG, p)) for p in range(3)] == [5, 7, 3]

    store.data[clock_key(1)] = b"clock"  # written since, and confirmed: the holder's offset moves with the changelog
    store.set_persisted_offset(TP(CHANGELOG, 1), 8)
    changelog.ends[1] = 8
    changelog.ends[0] = 6  # another worker wrote to partition 0 meanwhile: it is read again
    rebalance(store, {0, 1})
    assert changelog.calls[-1] == ([0, 1], {0: 5, 1: 8})
    assert store.kept == frozenset({1})
    assert store.data == {user_key(0, "u0"): b"v0", user_key(1, "u1"): b"v1", clock_key(1): b"clock"}  # 2 dropped
    assert store.persisted_offset(TP(CHANGELOG, 0)) == 6 and store.persisted_offset(TP(CHANGELOG, 2)) is None


def test_kafka_out_of_reach_delays_the_rebalance_instead_of_crashing_the_worker(monkeypatch: Any) -> None:
    changelog = Changelog({0: 1}, {user_key(0, "a"): b"v"}, failures=2)
    monkeypatch.setattr(state_store, "catch_up", changelog)
    monkeypatch.setattr(state_store, "RETRY_S", 0.01)
    store = store_holding({0})
    rebalance(store, {0})
    assert len(changelog.calls) == 3 and store.data == {user_key(0, "a"): b"v"}


def test_the_memory_setting_is_this_store_and_others_are_faust_s() -> None:
    assert by_url(state_store.faust_store_url("memory://")) is MemoryStore
    assert state_store.faust_store_url("rocksdb://") == "rocksdb://"
