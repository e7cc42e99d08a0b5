"""How far a consumer group is behind its topics: how ``pulse demo`` and tests know the pipeline caught up."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Self

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from pulse.settings import Settings
from pulse.topics import Topics


def consumer_lag(bootstrap: str, group: str, topics: Iterable[str], timeout: float = 10.0) -> int:
    """Records in ``topics`` not yet committed by ``group`` (uncommitted partitions count whole)."""
    return sum(partition_lags(bootstrap, group, topics, timeout).values())


def partition_lags(bootstrap: str, group: str, topics: Iterable[str], timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """Records not yet committed by ``group``, by (topic, partition) of ``topics``; ``KafkaException`` if Kafka is down.

    By partition so ``pulse status`` can split a group's lag among the workers holding them.
    """
    with LagProbe(bootstrap, group) as probe:
        return probe.lags(topics, timeout)


class LagProbe:
    """The clients that read a group's lag, kept open from one reading to the next.

    Each new pair of clients cost the broker a round of connection requests (versions,
    metadata, the coordinator): a wait polling ten times a second made the broker serve
    about fifty such requests a second beside the pipeline it was timing.
    """

    def __init__(self, bootstrap: str, group: str) -> None:
        self._group = group
        # log_level 0: a broker that is down is reported by the exception, not by librdkafka's stderr noise
        self._admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        self._probe = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"{group}-lag-probe", "enable.auto.commit": False, "log_level": 0}
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._probe.close()

    def lags(self, topics: Iterable[str], timeout: float = 10.0) -> dict[tuple[str, int], int]:
        """Records not yet committed by the group, by (topic, partition) of ``topics``."""
        group, probe = self._group, self._probe
        metadata = probe.list_topics(timeout=timeout).topics
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in (metadata[topic].partitions if topic in metadata else {})
        ]
        if not partitions:
            return {}
        request = [ConsumerGroupTopicPartitions(group, partitions)]
        committed = self._admin.list_consumer_group_offsets(request)[group].result(timeout)
        done = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in committed.topic_partitions}
        lags: dict[tuple[str, int], int] = {}
        for tp in partitions:
            low, high = probe.get_watermark_offsets(tp, timeout=timeout)
            lags[tp.topic, tp.partition] = high - max(done.get((tp.topic, tp.partition), 0), low)
        return lags


def wait_caught_up(bootstrap: str, group: str, topics: Iterable[str], timeout: float, poll_s: float = 0.5) -> None:
    """Block until ``group`` has committed everything in ``topics``; ``TimeoutError`` otherwise."""
    topics = list(topics)
    deadline = time.monotonic() + timeout
    with LagProbe(bootstrap, group) as probe:
        while True:
            lag = sum(probe.lags(topics).values())
            if lag == 0:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"consumer group {group} still {lag} records behind on {topics} after {timeout:.0f}s")
            time.sleep(poll_s)


def wait_pipeline_caught_up(settings: Settings, timeout: float, poll_s: float = 0.5) -> None:
    """Block until the worker has committed every input record, then the sink every output record."""
    topics = Topics.with_prefix(settings.topic_prefix)
    wait_caught_up(settings.bootstrap, settings.worker_group, [topics.events], timeout, poll_s)
    wait_caught_up(settings.bootstrap, settings.sink_group, topics.sink_inputs(), timeout, poll_s)
