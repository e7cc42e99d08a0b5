"""``pulse topics apply`` against the session's real broker: creates as specified, then only fixes drift."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    ResourceType,
)

from ops.topic_drift import REPARTITION_REFUSED, Drift, Kind
from ops.topic_spec import load_spec
from ops.topics import TopicError, apply_topics, ensure_topics
from pulse.settings import Settings

pytestmark = pytest.mark.integration


def read_back(admin: AdminClient, name: str) -> tuple[int, int, dict[str, str]]:
    """Partitions, replication and the configs set on the topic itself, straight from the broker."""
    partitions = admin.list_topics(name, timeout=10).topics[name].partitions
    resource = ConfigResource(ResourceType.TOPIC, name)
    entries = admin.describe_configs([resource])[resource].result(10)
    overrides = {k: e.value for k, e in entries.items() if e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value}
    return len(partitions), len(partitions[0].replicas), overrides


def pulse(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.to_env()}
    command = [sys.executable, "-m", "ops.cli", "topics", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_apply_creates_exactly_the_spec_then_fixes_only_drift(settings: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    specs = load_spec(settings)

    first = apply_topics(settings)
    assert sorted(first.created) == sorted(spec.name for spec in specs)
    for spec in specs:
        assert read_back(admin, spec.name) == (spec.partitions, spec.replication, dict(spec.config)), spec.name

    assert apply_topics(settings).drifts == ()

    sessions = f"{settings.topic_prefix}sessions"
    shorter = [ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)]
    for future in admin.incremental_alter_configs(
        [ConfigResource(ResourceType.TOPIC, sessions, incremental_configs=shorter)]
    ).values():
        future.result(10)
    drift = Drift(sessions, Kind.CONFIG, "3600000", "259200000", key="retention.ms")
    diff = pulse(settings, "diff")
    assert diff.returncode == 1 and str(drift) in diff.stdout, diff.stdout + diff.stderr
    assert apply_topics(settings, dry_run=True).drifts == (drift,)  # a dry run changed nothing

    fixed = apply_topics(settings)
    assert fixed.drifts == (drift,) and not fixed.unresolved
    assert read_back(admin, sessions)[2]["retention.ms"] == "259200000"
    again = pulse(settings, "apply")
    assert again.returncode == 0 and f"no drift: {len(specs)} topics match" in again.stdout, again.stdout + again.stderr


def test_per_user_topics_are_not_repartitioned_unasked(settings: Settings) -> None:
    ensure_topics(settings)
    wider = replace(settings, partitions=settings.partitions + 2)

    with pytest.raises(TopicError, match="--allow-repartition"):
        ensure_topics(wider)
    report = apply_topics(wider)
    blocked = {drift.topic for drift in report.unresolved if drift.blocked == REPARTITION_REFUSED}
    assert blocked == {f"{settings.topic_prefix}events", f"{settings.app_id}-pulse-user-state-changelog"}
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    assert read_back(admin, f"{settings.topic_prefix}events")[0] == settings.partitions
    assert read_back(admin, f"{settings.topic_prefix}sessions")[0] == wider.partitions  # the outputs grew

    assert not apply_topics(wider, allow_repartition=True).unresolved
    assert read_back(admin, f"{settings.topic_prefix}events")[0] == wider.partitions
