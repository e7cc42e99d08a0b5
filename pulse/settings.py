"""Every setting of the pipeline, in one typed place.

Wiring (addresses, ports, directories) comes from environment variables, so a platform
team can point a process elsewhere without editing files; tuning (batch sizes, retention)
comes from an optional YAML file named by ``PULSE_CONFIG``. The defaults run the local
demo unchanged: a broker the project starts itself and an embedded ClickHouse engine.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pulse.errors import PulseError

T = TypeVar("T")


class SettingsError(PulseError, ValueError):
    """A setting has a value the pipeline cannot use; the message names it."""


@dataclass(frozen=True)
class ProducerTuning:
    """How producers batch events into Kafka records (see the wire format in the README)."""

    max_events_per_record: int = 500
    max_record_bytes: int = 512 * 1024
    linger_ms: int = 20
    queue_max_messages: int = 20_000
    queue_max_kbytes: int = 256 * 1024
    backpressure_timeout_s: float = 30.0


@dataclass(frozen=True)
class DedupTuning:
    """How long the stream jobs remember an event id to drop a resent copy."""

    retention_hours: float = 24.0
    max_ids_per_user: int = 2_000


@dataclass(frozen=True)
class SessionTuning:
    """Session boundaries and how event time may lag (see the sessions job)."""

    enabled: bool = True  # off: the worker only validates and de-duplicates (for measuring the jobs apart)
    timeout_minutes: float = 30.0
    max_length_hours: float = 24.0
    allowed_lateness_minutes: float = 10.0
    idle_close_seconds: float = 30.0  # wall-clock silence after which a partition's event time follows the clock
    tick_interval_seconds: float = 5.0
    # how long a user's first-touch source and first session are remembered after their last session
    # closes; a user back after longer counts as new (is_first) again, and until then the user's state stays
    user_retention_days: float = 90.0


@dataclass(frozen=True)
class FunnelTuning:
    """Which funnels the funnels job follows (see stream_jobs.funnels)."""

    enabled: bool = True
    definitions: str = ""  # a YAML file of funnel definitions; empty: the shipped deploy/funnels.yaml

    @property
    def definitions_path(self) -> Path | None:
        """The definitions file, None for the shipped one."""
        return Path(self.definitions) if self.definitions else None


@dataclass(frozen=True)
class ChurnTuning:
    """How the churn-risk job scores users and when it alerts (see stream_jobs.churn_scoring)."""

    enabled: bool = True
    inactive_days: float = 30.0  # no activity for this long: the user is churned
    medium_at: float = 0.4  # a score at or above this is the medium tier
    high_at: float = 0.7  # and at or above this, high
    alert_cooldown_hours: float = 24.0  # no second alert for the same tier of a user within this
    grace_days: float = 4.0  # quiet days that carry no risk yet: the inactivity signal ramps from here to inactive_days
    # the weight of each bounded signal in the score (a capped weighted sum; why each: stream_jobs.churn_scoring)
    weight_inactivity: float = 1.0
    weight_activity_drop: float = 0.35
    weight_spend_drop: float = 0.2
    weight_failed_payments: float = 0.45
    weight_nps: float = 0.35
    weight_csat: float = 0.25
    weight_ces: float = 0.2
    weight_open_tickets: float = 0.2
    user_retention_days: float = 90.0  # a churned or never active user's state outlives their last event this long


@dataclass(frozen=True)
class WorkerTuning:
    """When the worker calls itself stalled (``/healthz`` answers 503)."""

    stall_seconds: float = 60.0  # holding partitions with lag, yet nothing processed or committed for this long


@dataclass(frozen=True)
class SinkTuning:
    """When the ClickHouse sink flushes its buffer and how it retries."""

    batch_rows: int = 50_000
    batch_seconds: float = 1.0
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    stall_seconds: float = 60.0  # holding partitions with lag, yet nothing consumed or inserted for this long
    # who may read the embedded ClickHouse through the sink's ClickHouse HTTP interface (Grafana,
    # clickhouse-connect); env PULSE_READER_USER / PULSE_READER_PASSWORD win over the YAML. The default
    # pulse/pulse suits the demo, which listens on 127.0.0.1 only: set a real password before binding wider.
    reader_user: str = "pulse"
    reader_password: str = "pulse"


@dataclass(frozen=True)
class ValidationTuning:
    """Contract checks that depend on the validating stage's clock."""

    max_future_skew_s: float = 3600.0


@dataclass(frozen=True)
class CollectorTuning:
    """Limits, timeouts and packing of the HTTP collector."""

    max_events: int = 1_000
    max_body_bytes: int = 1_048_576
    delivery_timeout_s: float = 10.0
    retry_after_s: int = 5
    # the events of concurrent requests share one open record per partition, produced when full
    # or this long after its first event: a request's answer waits this much longer at most
    linger_ms: int = 5
    # each write key's token bucket (events per second refilled, bucket size), unless its entry
    # in the write-keys file says otherwise; 0 events/s: no limit
    key_events_per_s: float = 0.0
    key_burst: int = 10_000


@dataclass(frozen=True)
class WriteKey:
    """A write key the collector accepts, known by its SHA-256 only, so the secret is in no file.

    ``name`` says which key it is (in logs, metrics and each Segment event's context) and
    ``source`` what sends with it (``ios-app``, ``web``); a rotation adds a second key for the same
    source before the old one is removed. ``events_per_s`` and ``burst`` override the collector's
    ``key_events_per_s`` and ``key_burst`` for this key.
    """

    name: str
    source: str
    sha256: str
    events_per_s: float | None = None
    burst: int | None = None


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one pipeline process."""

    data_dir: Path
    cache_dir: Path
    kafka_bootstrap: str | None
    kafka_port: int
    kafka_controller_port: int
    topic_prefix: str
    partitions: int
    replication_factor: int
    clickhouse_dsn: str
    worker_metrics_port: int
    sink_port: int
    collector_port: int
    bind_host: str  # the address the collector, worker and sink listen on (0.0.0.0 in a container)
    write_keys: frozenset[str]
    app_id: str
    state_store: str
    config_file: Path | None = None
    # the write keys with names, sources and rate limits (see read_write_keys); re-read when it changes
    write_keys_file: Path | None = None
    producer: ProducerTuning = field(default_factory=ProducerTuning)
    dedup: DedupTuning = field(default_factory=DedupTuning)
    sessions: SessionTuning = field(default_factory=SessionTuning)
    funnels: FunnelTuning = field(default_factory=FunnelTuning)
    churn: ChurnTuning = field(default_factory=ChurnTuning)
    worker: WorkerTuning = field(default_factory=WorkerTuning)
    sink: SinkTuning = field(default_factory=SinkTuning)
    validation: ValidationTuning = field(default_factory=ValidationTuning)
    collector: CollectorTuning = field(default_factory=CollectorTuning)

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, so a child process gets exactly them."""
        env = {
            "PULSE_DATA_DIR": str(self.data_dir),
            "PULSE_CACHE_DIR": str(self.cache_dir),
            "PULSE_KAFKA_PORT": str(self.kafka_port),
            "PULSE_KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
            "PULSE_TOPIC_PREFIX": self.topic_prefix,
            "PULSE_PARTITIONS": str(self.partitions),
            "PULSE_REPLICATION_FACTOR": str(self.replication_factor),
            "CLICKHOUSE_DSN": self.clickhouse_dsn,
            "PULSE_WORKER_METRICS_PORT": str(self.worker_metrics_port),
            "PULSE_SINK_PORT": str(self.sink_port),
            "PULSE_COLLECTOR_PORT": str(self.collector_port),
            "PULSE_BIND_HOST": self.bind_host,
            "PULSE_WRITE_KEYS": ",".join(sorted(self.write_keys)),
            "PULSE_APP_ID": self.app_id,
            "PULSE_STATE_STORE": self.state_store,
            "PULSE_READER_USER": self.sink.reader_user,
            "PULSE_READER_PASSWORD": self.sink.reader_password,
        }
        if self.kafka_bootstrap:
            env["KAFKA_BOOTSTRAP"] = self.kafka_bootstrap
        if self.config_file:
            env["PULSE_CONFIG"] = str(self.config_file)
        if self.write_keys_file:
            env["PULSE_WRITE_KEYS_FILE"] = str(self.write_keys_file)
        return env

    def not_after_ms(self) -> int:
        """The latest event time a stage accepts now: its clock plus the allowed future skew."""
        return int((time.time() + self.validation.max_future_skew_s) * 1000)

    @property
    def bootstrap(self) -> str:
        """The Kafka bootstrap address: ``KAFKA_BOOTSTRAP`` or the project's local broker."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def uses_local_kafka(self) -> bool:
        """True when the project runs the broker itself (``KAFKA_BOOTSTRAP`` unset)."""
        return self.kafka_bootstrap is None

    @property
    def embedded_clickhouse(self) -> bool:
        """True for the in-process chdb engine, which only the sink process may open."""
        return self.clickhouse_dsn.startswith("chdb:")

    @property
    def sink_url(self) -> str:
        """Where the sink answers read-only queries and serves its metrics."""
        return f"http://127.0.0.1:{self.sink_port}"

    @property
    def worker_group(self) -> str:
        """The stream jobs' consumer group (Faust uses the app id)."""
        return self.app_id

    @property
    def sink_group(self) -> str:
        """The ClickHouse sink's consumer group."""
        return f"{self.app_id}-clickhouse-sink"

    @property
    def run_dir(self) -> Path:
        """Pid files of the background processes started by ``pulse up``."""
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        """Logs of the background processes started by ``pulse up``."""
        return self.data_dir / "logs"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``env`` (default: the process environment) and ``PULSE_CONFIG``."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("PULSE_DATA_DIR", Path.cwd() / ".pulse")).resolve()
    config_file = Path(env["PULSE_CONFIG"]).resolve() if env.get("PULSE_CONFIG") else None
    settings = Settings(
        data_dir=data_dir,
        cache_dir=Path(env.get("PULSE_CACHE_DIR", Path.home() / ".cache" / "customer-pulse")),
        kafka_bootstrap=env.get("KAFKA_BOOTSTRAP") or None,
        kafka_port=_int(env, "PULSE_KAFKA_PORT", 9092),
        kafka_controller_port=_int(env, "PULSE_KAFKA_CONTROLLER_PORT", 9093),
        topic_prefix=env.get("PULSE_TOPIC_PREFIX", "pulse."),
        partitions=_int(env, "PULSE_PARTITIONS", 4),
        replication_factor=_int(env, "PULSE_REPLICATION_FACTOR", 1),
        clickhouse_dsn=env.get("CLICKHOUSE_DSN") or f"chdb://{data_dir / 'clickhouse'}",
        worker_metrics_port=_int(env, "PULSE_WORKER_METRICS_PORT", 9464),
        sink_port=_int(env, "PULSE_SINK_PORT", 8124),
        collector_port=_int(env, "PULSE_COLLECTOR_PORT", 8088),
        bind_host=env.get("PULSE_BIND_HOST") or "127.0.0.1",
        write_keys=frozenset(key.strip() for key in env.get("PULSE_WRITE_KEYS", "").split(",") if key.strip()),
        app_id=env.get("PULSE_APP_ID", "customer-pulse"),
        state_store=env.get("PULSE_STATE_STORE", "memory://"),
        config_file=config_file,
        write_keys_file=Path(env["PULSE_WRITE_KEYS_FILE"]).resolve() if env.get("PULSE_WRITE_KEYS_FILE") else None,
    )
    if settings.partitions < 1:
        raise SettingsError("PULSE_PARTITIONS must be at least 1")
    settings = _apply_yaml(settings, config_file) if config_file else settings
    return _apply_reader_env(settings, env)


def _apply_reader_env(settings: Settings, env: Mapping[str, str]) -> Settings:
    """The reader's credentials from ``PULSE_READER_USER`` / ``PULSE_READER_PASSWORD``, over the YAML's.

    Secrets belong in the environment (a Kubernetes secret, a compose env file) more than in a
    config file that is committed, so the environment wins.
    """
    user = env.get("PULSE_READER_USER") or settings.sink.reader_user
    password = env.get("PULSE_READER_PASSWORD") or settings.sink.reader_password
    return replace(settings, sink=replace(settings.sink, reader_user=user, reader_password=password))


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None


_SECTIONS = {
    "producer": ProducerTuning,
    "dedup": DedupTuning,
    "sessions": SessionTuning,
    "funnels": FunnelTuning,
    "churn": ChurnTuning,
    "worker": WorkerTuning,
    "sink": SinkTuning,
    "validation": ValidationTuning,
    "collector": CollectorTuning,
}


def _apply_yaml(settings: Settings, path: Path) -> Settings:
    """Overlay the tuning sections of a YAML file, refusing keys that do not exist."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"cannot read PULSE_CONFIG {path}: {exc}") from None
    if not isinstance(document, dict):
        raise SettingsError(f"{path}: expected a mapping of sections, got {type(document).__name__}")
    unknown = set(document) - set(_SECTIONS)
    if unknown:
        raise SettingsError(f"{path}: unknown sections {sorted(unknown)}; known: {sorted(_SECTIONS)}")
    changes = {
        name: _section(getattr(settings, name), document[name], f"{path}:{name}")
        for name in document
    }
    return replace(settings, **changes)


def _section(current: T, values: Any, where: str) -> T:
    if not isinstance(values, dict):
        raise SettingsError(f"{where}: expected a mapping")
    known = {f.name: f for f in fields(current)}  # type: ignore[arg-type]
    updates: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise SettingsError(f"{where}: unknown key {key!r}; known: {sorted(known)}")
        expected = type(getattr(current, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise SettingsError(f"{where}.{key}: expected {expected.__name__}, got {value!r}")
        updates[key] = value
    return replace(current, **updates)  # type: ignore[type-var]


# --- write keys ---------------------------------------------------------------------------

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def hash_write_key(key: str) -> str:
    """The SHA-256 (hex) under which a write key is stored and looked up."""
    return hashlib.sha256(key.encode()).hexdigest()


def env_write_keys(keys: frozenset[str]) -> tuple[WriteKey, ...]:
    """``PULSE_WRITE_KEYS`` as write keys: named after their hash, source ``env``, the default limits."""
    hashed = sorted(hash_write_key(key) for key in keys)
    return tuple(WriteKey(f"env:{digest[:8]}", "env", digest) for digest in hashed)


def read_write_keys(path: Path) -> tuple[WriteKey, ...]:
    """The write keys of a ``PULSE_WRITE_KEYS_FILE``, refusing any mistake with its file and entry.

    The file is YAML: ``keys:``, a list of ``{name, source, sha256, events_per_s?, burst?}``.
    """
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"cannot read PULSE_WRITE_KEYS_FILE {path}: {exc}") from None
    if not isinstance(document, dict) or set(document) - {"keys"} or not isinstance(document.get("keys", []), list):
        raise SettingsError(f"{path}: expected a mapping with one list, keys: [{{name, source, sha256}}, ...]")
    keys = tuple(_write_key(entry, f"{path}:keys[{index}]") for index, entry in enumerate(document.get("keys", [])))
    for field_name in ("name", "sha256"):
        values = [getattr(key, field_name) for key in keys]
        if len(set(values)) != len(values):
            raise SettingsError(f"{path}: two keys have the same {field_name}")
    return keys


def _write_key(entry: Any, where: str) -> WriteKey:
    if not isinstance(entry, dict):
        raise SettingsError(f"{where}: expected a mapping")
    known = {f.name for f in fields(WriteKey)}
    unknown = set(entry) - known
    if unknown:
        raise SettingsError(
            f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)} (store the sha256, never the key)"
        )
    for name in ("name", "source", "sha256"):
        if not isinstance(entry.get(name), str) or not entry[name].strip():
            raise SettingsError(f"{where}.{name}: expected a non-empty string")
    digest = entry["sha256"].strip().lower()
    if not _SHA256_HEX.fullmatch(digest):
        raise SettingsError(f"{where}.sha256: expected 64 hex digits (printf %s KEY | sha256sum)")
    rate, burst = entry.get("events_per_s"), entry.get("burst")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0):
        raise SettingsError(f"{where}.events_per_s: expected a number >= 0, got {rate!r}")
    if burst is not None and (type(burst) is not int or burst < 1):
        raise SettingsError(f"{where}.burst: expected a whole number >= 1, got {burst!r}")
    events_per_s = None if rate is None else float(rate)
    return WriteKey(entry["name"].strip(), entry["source"].strip(), digest, events_per_s, burst)
