"""Creating the pipeline's topics with the partition count the stream jobs expect, and deleting them."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pulse.errors import PulseError
from pulse.settings import Settings
from pulse.topics import Topics


class TopicError(PulseError, RuntimeError):
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


def delete_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Delete one pipeline's topics: ours under the topic prefix and those Faust made under the app id.

    For throw-away pipelines on a shared broker (``pulse soak`` runs one per cycle), which
    would otherwise leave a handful of topics behind each time. Returns the names deleted.
    """
    if not settings.topic_prefix:
        raise TopicError("an empty topic prefix would name every topic on the broker; refusing to delete them")
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    owned = (settings.topic_prefix, f"{settings.app_id}-")
    names = [name for name in admin.list_topics(timeout=timeout).topics if name.startswith(owned)]
    if not names:
        return []
    for name, future in admin.delete_topics(names, operation_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            raise TopicError(f"cannot delete topic {name}: {exc}") from None
    return names
