"""Publishing a JSONL file of events (one per line), as ``pulse produce FILE`` does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from producers.event_producer import DeliveryReport, EventProducer
from pulse.contract import Invalid
from pulse.dead_letter import DeadLetter

MAX_PROBLEMS_KEPT = 50


@dataclass
class FileReport:
    """What became of each line of a file."""

    lines: int = 0
    blank: int = 0
    valid: int = 0
    invalid: int = 0
    problems: list[str] = field(default_factory=list)  # "line N: reason: details", the first few
    delivery: DeliveryReport = field(default_factory=DeliveryReport)


def publish_jsonl(
    path: Path,
    producer: EventProducer,
    on_progress: Callable[[int, int], None] | None = None,
) -> FileReport:
    """Validate and publish every line; invalid lines go to the dead-letter topic.

    ``on_progress(bytes_read, lines_read)`` is called every 10,000 lines and at the end.
    The report's ``delivery`` is final: the producer is flushed before returning.
    """
    report = FileReport()
    bytes_read = 0
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            report.lines = number
            bytes_read += len(line)
            line = line.rstrip(b"\r\n")
            if not line.strip():
                report.blank += 1
                continue
            _publish_line(line, f"{path.name}:{number}", producer, report)
            if number % 10_000 == 0:
                producer.poll()
                if on_progress:
                    on_progress(bytes_read, number)
    report.delivery = producer.flush()
    if on_progress:
        on_progress(bytes_read, report.lines)
    return report


def _publish_line(line: bytes, source: str, producer: EventProducer, report: FileReport) -> None:
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
