"""Creating the pipeline's topics with the partition count the stream jobs expect."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pulse.settings import Settings
from pulse.topics import Topics


class TopicError(RuntimeError):
    """A topic exists with another partition count, or could not be created."""


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create the missing topics; returns the names created. Idempotent."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    wanted = Topics.with_prefix(settings.topic_prefix).all()
    existing = admin.list_topics(timeout=timeout).topics
    for name in wanted:
        found = existing.get(name)
        if found is not None and len(found.partitions) != settings.partitions:
            raise TopicError(
                f"topic {name} has {len(found.partitions)} partitions, PULSE_PARTITIONS says {settings.partitions}; "
                "stream state is partitioned by user, so they must match"
            )
    missing = [name for name in wanted if name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=settings.partitions, replication_factor=settings.replication_factor) for name in missing],
        operation_timeout=timeout,
    )
    for name, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise TopicError(f"cannot create topic {name}: {exc}") from None
    return missing
