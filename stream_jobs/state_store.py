"""The worker's in-memory state store: what it holds survives a rebalance, and what it lacks is read back fast.

Faust's memory store reports no persisted offset, so after every rebalance Faust's recovery
read each held partition's whole changelog again, kept partitions included, at a few
thousand records a second: with a million users, a second worker joining paused traffic
for two minutes. This store knows, per changelog partition, the offset of the last record
its data reflects (from the worker's producer, see ``EventsAgent._confirm``). On a rebalance
it keeps a partition it still holds if the changelog still ends there (nobody else wrote to
it meanwhile), drops the partitions it lost, and reads the others back itself with
:func:`stream_jobs.changelog_restore.catch_up`, in a thread. Faust's recovery then starts at
the end and has nothing left to read.

Standby replicas are of no use to it (their data is dropped on each rebalance): run it
with none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaException
from faust.stores import STORES, memory
from faust.types import TP, EventT

from stream_jobs import metrics
from stream_jobs.changelog_restore import catch_up
from stream_jobs.state_keys import keys_of

log = logging.getLogger(__name__)

SCHEME = "pulse-memory"
RETRY_S = 1.0


def in_memory(state_store: str) -> bool:
    """Whether the ``PULSE_STATE_STORE`` setting names the memory store (this one)."""
    return state_store.startswith("memory:")


def faust_store_url(state_store: str) -> str:
    """The Faust store URL for the ``PULSE_STATE_STORE`` setting: ``memory://`` is this store."""
    if not in_memory(state_store):
        return state_store
    STORES.aliases[SCHEME] = f"{__name__}:MemoryStore"
    return f"{SCHEME}://"


class MemoryStore(memory.Store):
    """A dict of the held partitions' state, with the changelog offset each partition reflects."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._offsets: dict[int, int | None] = {}  # held partition -> last changelog offset reflected (None: none)
        self.kept: frozenset[int] = frozenset()  # partitions the last rebalance left as they were

    def persisted_offset(self, tp: TP) -> int | None:
        return self._offsets.get(tp.partition)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self._offsets[tp.partition] = offset

    def apply_changelog_batch(self, batch: Iterable[EventT], to_key: Callable[[Any], Any],
                              to_value: Callable[[Any], Any]) -> None:  # fmt: skip
        """Records Faust's recovery read after the offset the partition was restored to (none, normally)."""
        data, offsets = self.data, self._offsets
        for event in batch:
            message = event.message
            key = to_key(event.key)
            if message.value is None:
                data.pop(key, None)
            else:
                data[key] = to_value(event.value)
            offsets[message.partition] = message.offset

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:  # fmt: skip
        """Keep what is held as it was, drop what moved away, read back the rest of the active partitions."""
        changelog = self.table.changelog_topic.get_topic_name()
        actives = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == changelog}
        held = {partition: offset for partition, offset in self._offsets.items() if partition in actives}
        bootstrap = ",".join(f"{url.host}:{url.port}" for url in self.app.conf.broker)
        while True:  # the rebalance cannot end without the state: wait for Kafka, as Faust's recovery would
            try:
                restored = await asyncio.to_thread(catch_up, bootstrap, changelog, sorted(actives), held)
                break
            except KafkaException as exc:
                log.warning("could not read the state of partitions %s back (%s); again in %.0fs",
                            sorted(actives), exc, RETRY_S)  # fmt: skip
                await asyncio.sleep(RETRY_S)
        self._drop(set(self._offsets) - restored.kept)
        self.data.update(restored.values)
        self._offsets.update(restored.offsets)
        self.kept = frozenset(restored.kept)
        if restored.offsets:
            metrics.STATE_RESTORE_SECONDS.observe(restored.seconds)
            log.info("state of partitions %s read back: %s records, %s keys in %.1fs; kept as held: %s",
                     sorted(restored.offsets), f"{restored.records:,}", f"{len(restored.values):,}",
                     restored.seconds, sorted(restored.kept))  # fmt: skip

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """Nothing to drop: :meth:`on_rebalance` did."""

    def _drop(self, partitions: set[int]) -> None:
        for key in keys_of(partitions, self.data):
            del self.data[key]
        for partition in partitions:
            self._offsets.pop(partition, None)
