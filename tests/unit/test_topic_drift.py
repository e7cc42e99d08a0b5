"""Diffing the broker with the topic spec: what counts as drift and what apply refuses to touch."""

from __future__ import annotations

from ops.topic_drift import CANNOT_LOWER, REPARTITION_REFUSED, REPLICATION_NOT_OURS, Drift, Kind, TopicState, diff
from ops.topic_spec import TopicSpec

EVENTS = TopicSpec("p.events", 4, 1, {"cleanup.policy": "delete", "retention.ms": "604800000"}, per_user=True)
SESSIONS = TopicSpec("p.sessions", 4, 1, {"cleanup.policy": "delete", "retention.ms": "259200000"})


def state(spec: TopicSpec, partitions: int | None = None, replication: int | None = None,
          overrides: dict[str, str] | None = None, **configs: str) -> TopicState:  # fmt: skip
    """The broker's view of ``spec`` as created by apply, changed by the arguments (configs as key_with_underscores)."""
    effective = {"segment.ms": "604800000", **spec.config, **{k.replace("_", "."): v for k, v in configs.items()}}
    return TopicState(
        spec.name,
        spec.partitions if partitions is None else partitions,
        spec.replication if replication is None else replication,
        {**effective, **(overrides or {})},
        frozenset(spec.config) | frozenset(overrides or {}),
    )


def test_a_matching_broker_has_no_drift() -> None:
    assert diff([EVENTS, SESSIONS], {s.name: state(s) for s in (EVENTS, SESSIONS)}) == []


def test_a_missing_topic_is_one_drift() -> None:
    assert diff([EVENTS, SESSIONS], {EVENTS.name: state(EVENTS)}) == [Drift("p.sessions", Kind.MISSING)]


def test_config_differences_and_unnamed_overrides() -> None:
    found = state(SESSIONS, retention_ms="86400000", overrides={"max.message.bytes": "10"})
    drifts = diff([SESSIONS], {SESSIONS.name: found})
    assert drifts == [
        Drift("p.sessions", Kind.CONFIG, "86400000", "259200000", key="retention.ms"),
        Drift("p.sessions", Kind.OVERRIDE, "10", key="max.message.bytes"),
    ]
    assert [str(d) for d in drifts] == [
        "p.sessions: retention.ms is 86400000, the spec says 259200000",
        "p.sessions: max.message.bytes=10 is set on the topic but not in the spec",
    ]
    assert not any(d.blocked for d in drifts)


def test_a_broker_default_equal_to_the_spec_is_no_drift() -> None:
    """Effective values are compared: a topic without the override but with that default matches."""
    found = TopicState(SESSIONS.name, 4, 1, dict(SESSIONS.config), overrides=frozenset())
    assert diff([SESSIONS], {SESSIONS.name: found}) == []


def test_more_partitions_are_added_to_ordinary_topics() -> None:
    assert diff([SESSIONS], {SESSIONS.name: state(SESSIONS, partitions=2)}) == [
        Drift("p.sessions", Kind.PARTITIONS, "2", "4")
    ]


def test_per_user_topics_are_repartitioned_only_when_allowed() -> None:
    found = {EVENTS.name: state(EVENTS, partitions=2)}
    assert diff([EVENTS], found) == [Drift("p.events", Kind.PARTITIONS, "2", "4", blocked=REPARTITION_REFUSED)]
    assert diff([EVENTS], found, allow_repartition=True) == [Drift("p.events", Kind.PARTITIONS, "2", "4")]


def test_partitions_are_never_lowered_and_replication_never_changed() -> None:
    found = {EVENTS.name: state(EVENTS, partitions=8, replication=3)}
    assert diff([EVENTS], found, allow_repartition=True) == [
        Drift("p.events", Kind.PARTITIONS, "8", "4", blocked=CANNOT_LOWER),
        Drift("p.events", Kind.REPLICATION, "3", "1", blocked=REPLICATION_NOT_OURS),
    ]
