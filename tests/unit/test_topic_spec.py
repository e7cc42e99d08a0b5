"""The topic spec: the shipped file covers every topic the pipeline and its Faust app use; mistakes are named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.topic_spec import SpecError, TopicSpec, load_spec, min_insync_replicas, parse_spec
from pulse.settings import Settings, load_settings
from pulse.topics import Topics
from stream_jobs.app import create_app
from stream_jobs.health import WorkerHealth


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({
        "PULSE_DATA_DIR": str(tmp_path),
        "KAFKA_BOOTSTRAP": "127.0.0.1:1",  # nothing connects: the Faust app below is only built
        "PULSE_TOPIC_PREFIX": "p.",
        "PULSE_APP_ID": "app",
        "PULSE_PARTITIONS": "6",
        "PULSE_REPLICATION_FACTOR": "3",
    })  # fmt: skip


def by_name(specs: tuple[TopicSpec, ...]) -> dict[str, TopicSpec]:
    return {spec.name: spec for spec in specs}


def minimal(settings: Settings, **extra: Any) -> dict[str, Any]:
    """A spec listing just the pipeline's topics, the first one with ``extra`` keys."""
    names = Topics.with_prefix("{prefix}").all()
    return {"topics": [{"name": names[0], **extra}, *({"name": name} for name in names[1:])]}


def test_shipped_spec_covers_the_faust_app_and_the_pipeline(settings: Settings) -> None:
    specs = by_name(load_spec(settings))
    app = create_app(settings, WorkerHealth(stall_seconds=60, started_at=0))
    faust_topics = {table.changelog_topic.get_topic_name() for table in app.tables.values()}
    faust_topics.add(app._leader_assignor._leader_topic_name)  # Faust declares it on start; no public name
    assert faust_topics | set(Topics.with_prefix("p.").all()) == set(specs)


def test_shipped_spec_values(settings: Settings) -> None:
    specs = by_name(load_spec(settings))
    events, changelog = specs["p.events"], specs["app-pulse-user-state-changelog"]
    assert events.per_user and changelog.per_user
    assert (events.partitions, events.replication) == (6, 3) == (changelog.partitions, changelog.replication)
    assert events.config == {
        "cleanup.policy": "delete",
        "retention.ms": str(7 * 86_400_000),
        "min.insync.replicas": "2",
    }
    assert changelog.config == {"cleanup.policy": "compact", "min.insync.replicas": "2"}
    leader = specs["app-__assignor-__leader"]
    assert leader.partitions == 1 and not leader.per_user and "min.insync.replicas" not in leader.config
    assert not any(spec.per_user for name, spec in specs.items() if name not in {events.name, changelog.name})


@pytest.mark.parametrize(("replication", "expected"), [(1, 1), (2, 1), (3, 2), (5, 2)])
def test_min_insync_replicas(replication: int, expected: int) -> None:
    assert min_insync_replicas(replication) == expected


@pytest.mark.parametrize(
    ("retention", "ms"),
    [("500ms", 500), ("30s", 30_000), ("15m", 900_000), ("12h", 43_200_000), ("7d", 604_800_000), ("forever", -1)],
)
def test_retention_units(settings: Settings, retention: str, ms: int) -> None:
    spec = parse_spec(minimal(settings, retention=retention), settings)[0]
    assert spec.config["retention.ms"] == str(ms)


def test_extra_config_is_kept_as_kafka_prints_it(settings: Settings) -> None:
    spec = parse_spec(minimal(settings, config={"compression.type": "lz4", "unclean.leader.election.enable": False}),
                      settings)[0]  # fmt: skip
    assert spec.config == {
        "compression.type": "lz4",
        "unclean.leader.election.enable": "false",
        "cleanup.policy": "delete",
    }


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"partition": 3}, "unknown keys"),
        ({"partitions": 0}, "partitions must be"),
        ({"partitions": "4"}, "partitions must be"),
        ({"retention": "7 days"}, "retention must look like"),
        ({"cleanup": "keep"}, "cleanup must be one of"),
        ({"durable": "yes"}, "durable must be true or false"),
        ({"config": {"retention.ms": 1}}, "set retention.ms with retention"),
        ({"config": ["x"]}, "config must be a mapping"),
    ],
)
def test_mistakes_are_named(settings: Settings, extra: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        parse_spec(minimal(settings, **extra), settings)


def test_unknown_placeholder_is_refused(settings: Settings) -> None:
    document = minimal(settings)
    document["topics"].append({"name": "{cluster}-x"})
    with pytest.raises(SpecError, match="may only use"):
        parse_spec(document, settings)


def test_a_topic_listed_twice_is_refused(settings: Settings) -> None:
    document = minimal(settings)
    document["topics"].append({"name": "{prefix}events"})
    with pytest.raises(SpecError, match="listed twice: p.events"):
        parse_spec(document, settings)


def test_a_spec_missing_a_pipeline_topic_is_refused(settings: Settings) -> None:
    document = minimal(settings)
    del document["topics"][-1]
    with pytest.raises(SpecError, match="does not list: p.dead-letters"):
        parse_spec(document, settings)


def test_unreadable_file_is_named(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(["not", "a", "mapping"]))
    with pytest.raises(SpecError, match="expected a mapping with one key"):
        load_spec(settings, path)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(settings, tmp_path / "absent.yaml")
