"""Where the broker's topics differ from the spec, and which differences ``pulse topics apply`` may fix.

Pure: the broker's side comes in as :class:`TopicState` values, so every rule here (never
lower partitions, never repartition per-user topics unasked, replication is not ours to
change) is checked by unit tests without a broker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from ops.topic_spec import TopicSpec

REPARTITION_REFUSED = (
    "users hash to partitions and the worker's state follows them: more partitions send a user's new events "
    "to another partition than their state (open sessions, de-duplication, first touch), so those users "
    "restart from nothing; pass --allow-repartition once the worker has drained the events topic and that "
    "loss is accepted"
)
CANNOT_LOWER = "Kafka cannot remove partitions; recreate the topic to have fewer"
REPLICATION_NOT_OURS = "changing replication needs a partition reassignment (kafka-reassign-partitions.sh)"


class Kind(Enum):
    """What differs; the value is how a report names it."""

    MISSING = "missing"
    PARTITIONS = "partitions"
    REPLICATION = "replication"
    CONFIG = "config"  # a config the spec names has another value
    OVERRIDE = "override"  # a config set on the topic that the spec does not name


@dataclass(frozen=True)
class TopicState:
    """A topic as the broker has it."""

    name: str
    partitions: int
    replication: int
    configs: Mapping[str, str]  # every config's effective value, by Kafka name
    overrides: frozenset[str] = field(default_factory=frozenset)  # configs set on the topic itself


@dataclass(frozen=True)
class Drift:
    """One difference between the spec and the broker, and why apply leaves it if it does."""

    topic: str
    kind: Kind
    found: str | None = None
    wanted: str | None = None
    key: str | None = None  # the config, for CONFIG and OVERRIDE
    blocked: str | None = None  # None: apply fixes it

    def __str__(self) -> str:
        if self.kind is Kind.MISSING:
            return f"{self.topic}: missing"
        if self.kind is Kind.OVERRIDE:
            return f"{self.topic}: {self.key}={self.found} is set on the topic but not in the spec"
        what = self.key if self.kind is Kind.CONFIG else self.kind.value
        return f"{self.topic}: {what} is {self.found}, the spec says {self.wanted}"


def diff(specs: Iterable[TopicSpec], found: Mapping[str, TopicState], allow_repartition: bool = False) -> list[Drift]:
    """Every difference, in spec order; a missing topic is one drift (creating it sets everything)."""
    drifts: list[Drift] = []
    for spec in specs:
        state = found.get(spec.name)
        if state is None:
            drifts.append(Drift(spec.name, Kind.MISSING))
        else:
            drifts.extend(_topic_drift(spec, state, allow_repartition))
    return drifts


def _topic_drift(spec: TopicSpec, state: TopicState, allow_repartition: bool) -> Iterable[Drift]:
    if state.partitions != spec.partitions:
        if state.partitions > spec.partitions:
            blocked: str | None = CANNOT_LOWER
        else:
            blocked = REPARTITION_REFUSED if spec.per_user and not allow_repartition else None
        yield Drift(spec.name, Kind.PARTITIONS, str(state.partitions), str(spec.partitions), blocked=blocked)
    if state.replication != spec.replication:
        yield Drift(spec.name, Kind.REPLICATION, str(state.replication), str(spec.replication),
                    blocked=REPLICATION_NOT_OURS)  # fmt: skip
    for key, wanted in spec.config.items():
        if state.configs.get(key) != wanted:
            yield Drift(spec.name, Kind.CONFIG, state.configs.get(key), wanted, key=key)
    for key in sorted(state.overrides - set(spec.config)):
        yield Drift(spec.name, Kind.OVERRIDE, state.configs.get(key), key=key)
