"""``pulse demo``: the whole pipeline on the shipped sample, from a clean slate, then stopped."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from deploy.consumer_lag import wait_caught_up
from deploy.progress import Progress
from deploy.reader import run_query
from deploy.stack import Log, down, up
from producers import EventProducer, FileReport, publish_jsonl
from pulse.settings import Settings
from pulse.topics import Topics

SAMPLE = Path(__file__).parent / "samples" / "events.jsonl"
CATCH_UP_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class DemoSummary:
    file: FileReport
    event_rows: int
    dead_letter_rows: int
    seconds: float

    def lines(self) -> list[str]:
        duplicates = self.file.valid - self.event_rows
        return [
            f"events read from {SAMPLE.name}: {self.file.lines - self.file.blank}",
            f"  valid, published to Kafka:  {self.file.valid}",
            f"  invalid, dead-lettered:     {self.file.invalid}",
            f"rows in ClickHouse events:       {self.event_rows} ({duplicates} resent duplicates dropped)",
            f"rows in ClickHouse dead_letters: {self.dead_letter_rows}",
            f"seconds, start to stop:          {self.seconds:.1f}",
        ]


def run_demo(settings: Settings, sample: Path = SAMPLE, log: Log = print) -> DemoSummary:
    """Start the stack in ``<data dir>/demo`` (wiped first), publish the sample, wait, count, stop."""
    started = time.monotonic()
    demo_dir = settings.data_dir / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)
    settings = replace(settings, data_dir=demo_dir, clickhouse_dsn=_demo_dsn(settings, demo_dir))
    topics = Topics.with_prefix(settings.topic_prefix)
    try:
        up(settings, log)
        progress = Progress(f"publishing {sample.name}", total=sample.stat().st_size, unit="B")
        with EventProducer.from_settings(settings) as producer:
            report = publish_jsonl(sample, producer, lambda done, _lines: progress.update(done))
        progress.close(sample.stat().st_size)
        log("waiting for the worker and the sink to catch up ...")
        wait_caught_up(settings.bootstrap, settings.worker_group, [topics.events], CATCH_UP_TIMEOUT_S)
        wait_caught_up(settings.bootstrap, settings.sink_group, topics.sink_inputs(), CATCH_UP_TIMEOUT_S)
        event_rows = run_query(settings, "SELECT count() FROM events FINAL").scalar()
        dead_rows = run_query(settings, "SELECT count() FROM dead_letters FINAL").scalar()
    finally:
        down(settings, log)
    return DemoSummary(report, event_rows, dead_rows, time.monotonic() - started)


def _demo_dsn(settings: Settings, demo_dir: Path) -> str:
    """The demo's own embedded database, unless a ClickHouse server was configured."""
    return f"chdb://{demo_dir / 'clickhouse'}" if settings.embedded_clickhouse else settings.clickhouse_dsn
