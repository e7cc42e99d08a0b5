"""``pulse soak`` end to end: cycles of kills on the session broker, through the command itself.

The soak is the check of the worker's and sink's crash safety, so these tests fail while
either loses or repeats records after a SIGKILL. ``--kill none`` is the control: it runs
the same traffic without kills, so when only the killing soak fails, the fault is in what
was killed and not in the soak.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from ops.cli import main
from tests.integration.conftest import jar_cache_dir

pytestmark = pytest.mark.integration

SMALL = ["--customers", "1000", "--days", "5", "--publish-seconds", "8", "--seed", "4"]


def soak(args: list[str], kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("PULSE_DATA_DIR", str(tmp_path / "pulse"))
    monkeypatch.setenv("PULSE_CACHE_DIR", str(jar_cache_dir().parent))
    return main(["soak", *args, *SMALL])


def assert_cleaned_up(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Every cycle deleted its topics and its data directory."""
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert not [name for name in topics if name.startswith("soak-")]
    assert not list((tmp_path / "pulse" / "soak").glob("cycle-*"))


def test_a_cycle_without_kills_matches_the_truth(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status = soak(["--cycles", "1", "--kill", "none"], kafka_bootstrap, tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert status == 0, out
    assert "cycle 1/1  no kills" in out and "soak: 1 of 1 cycles ok" in out
    assert_cleaned_up(kafka_bootstrap, tmp_path)


def test_three_cycles_of_kills_match_the_truth(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status = soak(["--cycles", "3"], kafka_bootstrap, tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert [line.split("  ")[0] for line in out.splitlines() if line.startswith("cycle ")] == [
        "cycle 1/3", "cycle 2/3", "cycle 3/3"
    ]  # fmt: skip
    assert all(" killed " in line for line in out.splitlines() if line.startswith("cycle "))
    assert status == 0, out
    assert_cleaned_up(kafka_bootstrap, tmp_path)
