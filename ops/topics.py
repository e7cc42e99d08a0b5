"""Making the broker's topics match the spec (``deploy/kafka/topics.yaml``), and deleting a pipeline's topics.

:func:`apply_topics` is ``pulse topics apply``: it reads the broker, diffs it with the spec
(:mod:`ops.topic_drift`) and fixes what it may. :func:`ensure_topics` is the same for the
commands that only need the topics to be right before they start (``pulse up``, tests, the
benchmark): it raises when drift is left that the pipeline cannot run with.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from ops.topic_drift import Drift, Kind, TopicState, diff
from ops.topic_spec import DEFAULT_SPEC, TopicSpec, load_spec
from pulse.errors import PulseError
from pulse.settings import Settings

T = TypeVar("T")

# how a report says what apply does (dry run) or did about each kind of drift
_FIXES = {
    Kind.MISSING: ("would create it", "created"),
    Kind.PARTITIONS: ("would add partitions", "partitions added"),
    Kind.CONFIG: ("would set it", "set"),
    Kind.OVERRIDE: ("would remove it", "removed"),
}


class TopicError(PulseError, RuntimeError):
    """A topic differs from the spec in a way apply leaves alone, or the broker refused a change."""


@dataclass(frozen=True)
class TopicReport:
    """What differed from the spec, and whether apply changed it (``applied`` is False for a dry run)."""

    spec: Path
    topics: int
    drifts: tuple[Drift, ...]
    applied: bool

    @property
    def created(self) -> list[str]:
        if not self.applied:
            return []
        return [drift.topic for drift in self.drifts if drift.kind is Kind.MISSING]

    @property
    def unresolved(self) -> list[Drift]:
        """The drift left after this run: all of it for a dry run, else what apply refuses to change."""
        return [drift for drift in self.drifts if drift.blocked or not self.applied]

    def lines(self) -> list[str]:
        """One line per drift: what differs, then what apply did, would do, or why it leaves it."""
        lines = []
        for drift in self.drifts:
            would, did = _FIXES[drift.kind]
            outcome = f"left as is: {drift.blocked}" if drift.blocked else did if self.applied else would
            lines.append(f"{drift}; {outcome}")
        return lines


def apply_topics(
    settings: Settings,
    spec: Path = DEFAULT_SPEC,
    *,
    dry_run: bool = False,
    allow_repartition: bool = False,
    timeout: float = 30.0,
) -> TopicReport:
    """Diff the broker with ``spec`` and, unless ``dry_run``, create, repartition and reconfigure to match."""
    specs = load_spec(settings, spec)
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    drifts = tuple(diff(specs, observe(admin, [s.name for s in specs], timeout), allow_repartition))
    if not dry_run:
        _fix(admin, {s.name: s for s in specs}, [drift for drift in drifts if not drift.blocked], timeout)
    return TopicReport(spec, len(specs), drifts, applied=not dry_run)


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Apply the spec; returns the topics created. Raises :class:`TopicError` if drift is left (say partitions)."""
    report = apply_topics(settings, timeout=timeout)
    if report.unresolved:
        raise TopicError("topics differ from the spec:\n  " + "\n  ".join(report.lines())
                         + "\nsee `pulse topics diff`")  # fmt: skip
    return report.created


def observe(admin: AdminClient, names: Sequence[str], timeout: float) -> dict[str, TopicState]:
    """The topics of ``names`` the broker has: partitions, replication and configs."""
    metadata = admin.list_topics(timeout=timeout).topics
    present = [name for name in names if name in metadata]
    if not present:
        return {}
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, name) for name in present],
                                     request_timeout=timeout)  # fmt: skip
    found: dict[str, TopicState] = {}
    for resource, future in futures.items():
        entries = _result(future, f"cannot read the configs of topic {resource.name}", timeout)
        partitions = metadata[resource.name].partitions.values()
        found[resource.name] = TopicState(
            name=resource.name,
            partitions=len(partitions),
            replication=min(len(partition.replicas) for partition in partitions),
            configs={key: entry.value for key, entry in entries.items()},
            overrides=frozenset(key for key, entry in entries.items()
                                if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value),
        )  # fmt: skip
    return found


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


def _fix(admin: AdminClient, specs: Mapping[str, TopicSpec], drifts: Sequence[Drift], timeout: float) -> None:
    """Create, then repartition, then reconfigure: the admin calls for the fixable ``drifts``."""
    new = [specs[drift.topic] for drift in drifts if drift.kind is Kind.MISSING]
    if new:
        topics = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication, config=dict(s.config))
                  for s in new]  # fmt: skip
        for name, future in admin.create_topics(topics, operation_timeout=timeout).items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # another process was first: same spec
                    raise TopicError(f"cannot create topic {name}: {exc}") from None
    grown = [NewPartitions(d.topic, int(d.wanted)) for d in drifts if d.kind is Kind.PARTITIONS and d.wanted]
    if grown:
        for name, future in admin.create_partitions(grown, operation_timeout=timeout).items():
            _result(future, f"cannot add partitions to topic {name}", timeout)
        _await_partitions(admin, {part.topic: part.new_total_count for part in grown}, timeout)
    changes: dict[str, list[ConfigEntry]] = {}
    for drift in drifts:
        if drift.kind is Kind.CONFIG:
            entry = ConfigEntry(drift.key, drift.wanted, incremental_operation=AlterConfigOpType.SET)
        elif drift.kind is Kind.OVERRIDE:
            entry = ConfigEntry(drift.key, None, incremental_operation=AlterConfigOpType.DELETE)
        else:
            continue
        changes.setdefault(drift.topic, []).append(entry)
    if changes:
        resources = [ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
                     for name, entries in changes.items()]  # fmt: skip
        for resource, future in admin.incremental_alter_configs(resources, request_timeout=timeout).items():
            _result(future, f"cannot alter the configs of topic {resource.name}", timeout)


def _await_partitions(admin: AdminClient, wanted: dict[str, int], timeout: float) -> None:
    """Wait until the cluster's metadata shows the topics' new partition counts.

    ``create_partitions`` returns once the controller took the change; the metadata brokers
    answer with follows a moment later, and a diff read before that (the next ``apply``)
    would ask for the same partitions again and be refused.
    """
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        if all(name in topics and len(topics[name].partitions) >= count for name, count in wanted.items()):
            return
        if time.monotonic() > deadline:
            raise TopicError(f"partitions added, but the metadata did not show them within {timeout:.0f}s: {wanted}")
        time.sleep(0.05)


def _result(future: Future[T], failure: str, timeout: float) -> T:
    try:
        return future.result(timeout)
    except KafkaException as exc:
        raise TopicError(f"{failure}: {exc}") from None
