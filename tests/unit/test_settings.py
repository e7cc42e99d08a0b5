"""Settings: defaults run the demo, env wiring, YAML tuning with strict keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulse.settings import SettingsError, load_settings


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings({"PULSE_DATA_DIR": str(tmp_path)})
    assert settings.bootstrap == "127.0.0.1:9092" and settings.uses_local_kafka
    assert settings.clickhouse_dsn == f"chdb://{tmp_path}/clickhouse" and settings.embedded_clickhouse
    assert settings.sink.batch_rows == 50_000
    assert settings.collector.linger_ms == 5


def test_env_round_trip(tmp_path: Path) -> None:
    env = {"PULSE_DATA_DIR": str(tmp_path), "KAFKA_BOOTSTRAP": "k:1", "CLICKHOUSE_DSN": "http://h:8123"}
    settings = load_settings(env)
    assert load_settings(settings.to_env()) == settings
    assert not settings.uses_local_kafka and not settings.embedded_clickhouse


def test_yaml_tuning(tmp_path: Path) -> None:
    config = tmp_path / "pulse.yaml"
    config.write_text(
        "sink:\n  batch_rows: 10\n  batch_seconds: 2\ndedup:\n  retention_hours: 1\ncollector:\n  linger_ms: 2\n"
    )
    settings = load_settings({"PULSE_DATA_DIR": str(tmp_path), "PULSE_CONFIG": str(config)})
    assert (settings.sink.batch_rows, settings.sink.batch_seconds, settings.dedup.retention_hours) == (10, 2.0, 1.0)
    assert settings.collector.linger_ms == 2


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sinks: {}", "unknown sections"),
        ("sink:\n  batch_row: 1", "unknown key 'batch_row'"),
        ("sink:\n  batch_rows: many", "expected int"),
        ("- 1", "expected a mapping"),
    ],
)
def test_yaml_mistakes_are_named(tmp_path: Path, text: str, fragment: str) -> None:
    config = tmp_path / "pulse.yaml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=fragment):
        load_settings({"PULSE_DATA_DIR": str(tmp_path), "PULSE_CONFIG": str(config)})


def test_bad_number() -> None:
    with pytest.raises(SettingsError, match="PULSE_PARTITIONS"):
        load_settings({"PULSE_PARTITIONS": "four"})
