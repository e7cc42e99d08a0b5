"""The benchmark report: ``bench.json`` (every figure) and ``bench.md`` (what, value, ceiling, ratio)."""

from __future__ import annotations

import os
import platform
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

PACKAGES = ("faust-streaming", "aiokafka", "confluent-kafka", "clickhouse-connect", "chdb", "orjson")


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: version(name) for name in PACKAGES},
    }


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, value, ceiling, ratio) for the table."""
    consumer = results["raw_consumer_eps"]

    def rate(name: str, key: str, ceiling: float, ceiling_name: str) -> tuple[str, str, str, str]:
        value = results[key]
        return (name, f"{value:,.0f} events/s", f"{ceiling:,.0f} ({ceiling_name})", f"{value / ceiling:.1%}")

    table = [
        rate("EventProducer (validate, batch, publish)", "producer_eps", results["raw_producer_eps"], "raw confluent-kafka producer"),
        rate("worker, validation + de-duplication", "validate_worker_eps", consumer, "raw aiokafka consumer + orjson"),
        rate("worker, all jobs (+ sessions)", "all_worker_eps", consumer, "raw aiokafka consumer + orjson"),
        rate("all jobs and the sink, to ClickHouse", "all_sink_eps", consumer, "raw aiokafka consumer + orjson"),
        rate("sink insert path", "all_sink_eps", results["raw_insert_eps"], "bare clickhouse-connect columnar insert"),
    ]
    latency = results["latency_ms"]
    for q in ("p50", "p95", "p99"):
        table.append((f"event-to-queryable latency {q} at {results['latency_rate_eps']:,.0f} events/s",
                      f"{latency[q]:,.0f} ms", "5,000 ms (target, p99)", f"{latency[q] / 5000:.1%}"))  # fmt: skip
    for users, figures in results["memory"].items():
        if users != "baseline_rss":
            table.append((f"worker memory with {int(users):,} active users",
                          f"{figures['bytes_per_user']:,.0f} B/user ({figures['rss'] / 2**20:,.0f} MiB RSS)",
                          "2,048 B/user (target)", f"{figures['bytes_per_user'] / 2048:.1%}"))  # fmt: skip
    return table


def write_report(results: dict[str, Any], out_dir: Path, command: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {"command": command, "machine": machine(), "results": results}
    (out_dir / "bench.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    lines = [
        "# Customer Pulse benchmark",
        "",
        f"Command: `{command}`  ",
        f"Machine: {document['machine']['cores']} cores, Python {document['machine']['python']}, "
        + ", ".join(f"{k} {v}" for k, v in document["machine"]["packages"].items()),
        "",
        f"{results['events']:,} simulated events; the run took {results['seconds']:,.0f} s.",
        "",
        "| what | value | ceiling | ratio |",
        "|---|---|---|---|",
        *(f"| {what} | {value} | {ceiling} | {ratio} |" for what, value, ceiling, ratio in rows(results)),
        "",
    ]
    (out_dir / "bench.md").write_text("\n".join(lines))
