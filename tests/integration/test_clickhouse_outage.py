"""ClickHouse refusing inserts for a while, for real: the sink retries, holds its offsets, and everything lands once.

The sink's embedded ClickHouse lives on a small tmpfs of its own, which first fills up (a
file takes the free space: inserts fail with NOT_ENOUGH_SPACE), then turns read-only (the
tables' directory bind-mounted read-only over itself: EROFS, which chdb reports as a
``filesystem error``), then recovers. Mounting needs root (CAP_SYS_ADMIN), as `.ci/run` has;
where it is not permitted the test fails and says so.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.ground_truth import differences, expected_outcome, read_outcome
from ops.consumer_lag import consumer_lag, wait_caught_up
from producers import EventProducer, publish_lines
from producers.simulator import SimulationConfig, simulate
from pulse.settings import Settings
from pulse.topics import Topics
from tests.integration.outage_watch import dependency_up, lines_after, watch_dependencies
from tests.integration.test_pipeline_e2e import wait_for_pipeline

pytestmark = pytest.mark.integration

DISK = "size=128m"
MAX_OUTAGE_LOG_LINES = 10  # what the sink may log from the disk filling up until it caught up


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of its own for the sink's ClickHouse."""
    mount = tmp_path / "disk"
    mount.mkdir()
    assert not _run("mount", "-t", "tmpfs", "-o", DISK, "tmpfs", str(mount)), (
        "mounting a tmpfs is not permitted here (needs root or CAP_SYS_ADMIN)"
    )
    try:
        yield mount
    finally:
        _run("umount", "--recursive", "--lazy", str(mount))


@pytest.fixture
def settings(settings: Settings, disk: Path, tmp_path: Path) -> Settings:
    """The ClickHouse on the tmpfs, and a sink that retries at least every second (default: up to 30 s)."""
    config = tmp_path / "pulse.yaml"
    config.write_text("sink:\n  retry_max_s: 1.0\n")
    return replace(settings, clickhouse_dsn=f"chdb://{disk / 'clickhouse'}", config_file=config)


def test_a_disk_full_then_read_only_delays_the_sink_and_loses_nothing(pipeline: Settings, disk: Path) -> None:
    settings = pipeline
    topics = Topics.with_prefix(settings.topic_prefix)
    sink_metrics = f"{settings.sink_url}/metrics"
    sink_log = settings.log_dir / "sink.log"
    simulation = simulate(SimulationConfig(customers=1_500, days=7, seed=31))
    lines = list(simulation.lines())
    half = len(lines) // 2
    publish(settings, lines[:half], "first-half")
    wait_for_pipeline(settings)  # the first half is in ClickHouse
    log_offset = sink_log.stat().st_size

    with watch_dependencies(sink_metrics) as seen:
        filler = fill(disk)
        publish(settings, lines[half:], "second-half")
        failures = insert_failures(sink_metrics)
        wait_for(lambda: insert_failures(sink_metrics) >= failures + 3, "the sink's inserts to fail on a full disk")
        wait_caught_up(settings.bootstrap, settings.worker_group, [topics.events], 60)  # the worker goes on
        held = consumer_lag(settings.bootstrap, settings.sink_group, topics.sink_inputs())
        assert held > 0

        store = disk / "clickhouse" / "store"
        assert not _run("mount", "--bind", str(store), str(store))
        assert not _run("mount", "-o", "remount,bind,ro", str(store))
        filler.unlink()  # space again, but read-only
        failures = insert_failures(sink_metrics)
        wait_for(lambda: insert_failures(sink_metrics) >= failures + 3, "the sink's inserts to fail read-only")
        assert consumer_lag(settings.bootstrap, settings.sink_group, topics.sink_inputs()) == held  # nothing committed
        assert dependency_up(sink_metrics)[("sink", "clickhouse")] == 0

        assert not _run("umount", str(store))
        wait_for_pipeline(settings)

    assert differences(read_outcome(settings), expected_outcome(simulation.truth)) == []
    assert seen[("sink", "clickhouse")] == [1, 0, 1], seen
    assert dependency_up(sink_metrics)[("sink", "clickhouse")] == 1
    lines = lines_after(sink_log, log_offset)
    print("sink log from the disk filling up until caught up:", *lines, sep="\n  ")
    assert len(lines) <= MAX_OUTAGE_LOG_LINES
    assert sum("clickhouse unavailable: " in line and "NOT_ENOUGH_SPACE" in line for line in lines) == 1
    assert sum("clickhouse available again after " in line for line in lines) == 1


def publish(settings: Settings, lines: list[bytes], name: str) -> None:
    """Publish lines (``name`` keeps their dead letters' ids apart from another part's) and check Kafka took all."""
    with EventProducer.from_settings(settings) as producer:
        report = publish_lines(lines, name, producer)
    assert report.delivery.ok, report.delivery.errors
    assert report.delivery.events_delivered == report.valid


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with one file; returns the file."""
    filler = disk / "filler"
    chunk = bytes(1 << 20)
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    os.sync()
    return filler


def insert_failures(metrics_url: str) -> float:
    """The sink's failed insert attempts so far, all tables."""
    with urllib.request.urlopen(metrics_url, timeout=2) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "pulse_insert_failures"
        for sample in family.samples
        if sample.name == "pulse_insert_failures_total"
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout:.0f} s for {what}"
        time.sleep(0.2)


def _run(*command: str) -> int:
    return subprocess.run(command, capture_output=True, check=False).returncode
