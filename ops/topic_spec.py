"""The pipeline's topics as code: ``deploy/kafka/topics.yaml`` read into one :class:`TopicSpec` per topic.

The file says what differs between topics (retention, compaction, which ones carry per-user
state); the settings say what one deployment chooses for all of them (topic prefix, app id,
partitions, replication). Parsing is pure, so the file is checked by unit tests, and it
refuses a file that leaves out a topic the pipeline uses: a topic missing here would be
created later by whoever touches it first, with the broker's defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import deploy
from pulse.errors import PulseError
from pulse.settings import Settings
from pulse.topics import Topics

DEFAULT_SPEC = Path(deploy.__file__).resolve().parent / "kafka" / "topics.yaml"  # shipped with the package

_KEYS = frozenset({"name", "partitions", "cleanup", "retention", "durable", "per_user", "config"})
_CLEANUP = frozenset({"delete", "compact", "compact,delete"})
_OWN_CONFIGS = {"cleanup.policy": "cleanup", "retention.ms": "retention", "min.insync.replicas": "durable"}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class SpecError(PulseError, ValueError):
    """The topic spec is malformed or incomplete; the message names the entry."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the deployment wants it: every value the broker is compared with."""

    name: str
    partitions: int
    replication: int
    config: Mapping[str, str]  # topic configs by Kafka name, values as the broker reports them
    per_user: bool = False  # partitions carry per-user order and state: never repartitioned unasked


def load_spec(settings: Settings, path: Path = DEFAULT_SPEC) -> tuple[TopicSpec, ...]:
    """The topics of ``path`` for one deployment's settings."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"cannot read the topic spec {path}: {exc}") from None
    return parse_spec(document, settings, where=str(path))


def parse_spec(document: Any, settings: Settings, where: str = "topic spec") -> tuple[TopicSpec, ...]:
    """The topics of a parsed YAML document; raises :class:`SpecError` naming the first mistake."""
    if not isinstance(document, dict) or not isinstance(document.get("topics"), list) or set(document) != {"topics"}:
        raise SpecError(f"{where}: expected a mapping with one key, topics: a list of topics")
    specs = tuple(_topic(entry, settings, f"{where}: topics[{i}]") for i, entry in enumerate(document["topics"]))
    names = [spec.name for spec in specs]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise SpecError(f"{where}: topics listed twice: {', '.join(duplicated)}")
    missing = [name for name in Topics.with_prefix(settings.topic_prefix).all() if name not in names]
    if missing:
        raise SpecError(f"{where}: the pipeline uses topics the spec does not list: {', '.join(missing)}")
    return specs


def _topic(entry: Any, settings: Settings, where: str) -> TopicSpec:
    if not isinstance(entry, dict):
        raise SpecError(f"{where}: expected a mapping")
    unknown = set(entry) - _KEYS
    if unknown:
        raise SpecError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_KEYS)}")
    name = _name(entry.get("name"), settings, where)
    where = f"{where} ({name})"
    partitions = entry.get("partitions", settings.partitions)
    if type(partitions) is not int or partitions < 1:
        raise SpecError(f"{where}: partitions must be a whole number of at least 1, got {partitions!r}")
    config = _extra_config(entry.get("config", {}), where)
    cleanup = entry.get("cleanup", "delete")
    if cleanup not in _CLEANUP:
        raise SpecError(f"{where}: cleanup must be one of {sorted(_CLEANUP)}, got {cleanup!r}")
    config["cleanup.policy"] = cleanup
    if "retention" in entry:
        config["retention.ms"] = str(_retention_ms(entry["retention"], where))
    if _flag(entry, "durable", where):
        config["min.insync.replicas"] = str(min_insync_replicas(settings.replication_factor))
    return TopicSpec(name, partitions, settings.replication_factor, config, _flag(entry, "per_user", where))


def min_insync_replicas(replication: int) -> int:
    """Two in-sync copies behind every ``acks=all`` write once there are three replicas.

    Not more: with ``replication - 1`` a five-replica topic would stop taking writes when two
    brokers are down. Not two with two replicas either: one broker down would stop the pipeline.
    """
    return 2 if replication >= 3 else 1


def _name(raw: Any, settings: Settings, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise SpecError(f"{where}: every topic needs a name")
    try:
        return raw.format(prefix=settings.topic_prefix, app_id=settings.app_id)
    except (KeyError, IndexError, ValueError):
        raise SpecError(f"{where}: name {raw!r} may only use {{prefix}} and {{app_id}}") from None


def _extra_config(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: config must be a mapping of Kafka topic configs")
    own = sorted(set(raw) & set(_OWN_CONFIGS))
    if own:
        raise SpecError(f"{where}: set {', '.join(own)} with {', '.join(_OWN_CONFIGS[key] for key in own)} instead")
    return {str(key): _config_value(value) for key, value in raw.items()}


def _config_value(value: Any) -> str:
    """A YAML scalar as Kafka prints it: ``true``, not ``True``."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _retention_ms(raw: Any, where: str) -> int:
    if raw == "forever":
        return -1
    match = _DURATION.fullmatch(str(raw))
    if not match:
        raise SpecError(f"{where}: retention must look like 500ms, 30s, 15m, 12h, 7d or be forever, got {raw!r}")
    return int(match[1]) * _MS[match[2]]


def _flag(entry: Mapping[str, Any], key: str, where: str) -> bool:
    value = entry.get(key, False)
    if type(value) is not bool:
        raise SpecError(f"{where}: {key} must be true or false, got {value!r}")
    return value
