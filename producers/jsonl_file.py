"""Publishing JSON lines of events: a JSONL file (``pulse produce FILE``) or generated traffic.

Large history imports must survive interruption: the file may be gzip-compressed, the
publisher can start at any line, and every ``checkpoint_every`` lines it waits until Kafka
confirmed everything so far and reports that line as a safe place to resume from.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson

from producers.event_producer import DeliveryReport, EventProducer
from pulse.contract import Invalid
from pulse.dead_letter import DeadLetter

MAX_PROBLEMS_KEPT = 50
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class FileReport:
    """What became of each line of a file."""

    lines: int = 0  # the last line number read
    skipped: int = 0  # lines before the start line
    blank: int = 0
    valid: int = 0
    invalid: int = 0
    confirmed_line: int = 0  # every line up to this one is confirmed by Kafka
    problems: list[str] = field(default_factory=list)  # "file:N: reason: details", the first few
    delivery: DeliveryReport = field(default_factory=DeliveryReport)


@contextmanager
def open_lines(path: Path) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """``(lines, raw)``: the file's decompressed lines and the raw file, whose position is progress."""
    with path.open("rb") as raw:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        if compressed:
            with gzip.GzipFile(fileobj=raw) as lines:
                yield lines, raw  # type: ignore[misc]
        else:
            yield raw, raw


def publish_jsonl(
    path: Path,
    producer: EventProducer,
    on_progress: Callable[[int, int], None] | None = None,
    *,
    start_line: int = 1,
    checkpoint_every: int = 100_000,
    on_checkpoint: Callable[[int], None] | None = None,
) -> FileReport:
    """Validate and publish every line of a file from ``start_line`` on (see :func:`publish_lines`).

    ``on_progress(raw bytes read, line number)`` is called every 10,000 lines and at the end.
    """
    with open_lines(path) as (lines, raw):
        return publish_lines(
            lines,
            path.name,
            producer,
            (lambda line: on_progress(raw.tell(), line)) if on_progress else None,
            start_line=start_line,
            checkpoint_every=checkpoint_every,
            on_checkpoint=on_checkpoint,
        )


def publish_lines(
    lines: Iterable[bytes],
    name: str,
    producer: EventProducer,
    on_progress: Callable[[int], None] | None = None,
    *,
    start_line: int = 1,
    checkpoint_every: int = 100_000,
    on_checkpoint: Callable[[int], None] | None = None,
) -> FileReport:
    """Validate and publish JSON lines; invalid ones go to the dead-letter topic as ``name:N``.

    ``on_progress(line number)`` is called every 10,000 lines and at the end;
    ``on_checkpoint(line)`` whenever all lines up to ``line`` are confirmed by Kafka. The
    report's ``delivery`` is final: the producer is flushed before returning, also when
    interrupted (the report is then attached to the ``KeyboardInterrupt`` as ``.report``).
    """
    report = FileReport(confirmed_line=start_line - 1)
    try:
        for number, line in enumerate(lines, start=1):
            report.lines = number
            if number < start_line:
                report.skipped += 1
                continue
            _publish_line(line.rstrip(b"\r\n"), f"{name}:{number}", producer, report)
            if number % 10_000 == 0:
                producer.poll()
                if on_progress:
                    on_progress(number)
            if number % checkpoint_every == 0:
                _checkpoint(producer, report, on_checkpoint)
    except KeyboardInterrupt as interrupt:
        _checkpoint(producer, report, on_checkpoint)
        interrupt.report = report  # type: ignore[attr-defined]
        raise
    _checkpoint(producer, report, on_checkpoint)
    if on_progress:
        on_progress(report.lines)
    return report


def _checkpoint(producer: EventProducer, report: FileReport, on_checkpoint: Callable[[int], None] | None) -> None:
    """Wait for Kafka; when it confirmed everything, the lines read so far are safe to skip."""
    report.delivery = producer.flush()
    if report.delivery.ok and report.lines > report.confirmed_line:
        report.confirmed_line = report.lines
        if on_checkpoint:
            on_checkpoint(report.lines)


def _publish_line(line: bytes, source: str, producer: EventProducer, report: FileReport) -> None:
    if not line.strip():
        report.blank += 1
        return
    try:
        checked = producer.check(orjson.loads(line))
    except orjson.JSONDecodeError as exc:
        letter = DeadLetter.failed(line, "bad_json", f"not JSON: {exc}", source, source)
    else:
        if not isinstance(checked, Invalid):
            producer.send(checked)
            report.valid += 1
            return
        letter = DeadLetter.refused(line, checked, source, source)
    producer.send_dead_letter(letter)
    report.invalid += 1
    if len(report.problems) < MAX_PROBLEMS_KEPT:
        report.problems.append(f"{source}: {letter.reason}: {'; '.join(letter.errors)}")
