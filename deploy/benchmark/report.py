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
    """(what, value, ceiling, ratio) for the table: a row per figure the run measured."""
    consumer = results.get("raw_consumer_eps")
    table: list[tuple[str, str, str, str]] = []

    def rate(name: str, value: float | None, ceiling: float | None, ceiling_name: str) -> None:
        if value is None:
            return
        if ceiling is None:
            table.append((name, f"{value:,.0f} events/s", "-", "-"))
        else:
            table.append((name, f"{value:,.0f} events/s", f"{ceiling:,.0f} ({ceiling_name})", f"{value / ceiling:.1%}"))

    raw_consumer = "raw aiokafka consumer + orjson"
    rate("EventProducer (validate, batch, publish)", results.get("producer_eps"), results.get("raw_producer_eps"),
         "raw confluent-kafka producer")  # fmt: skip
    rate("worker, validation + de-duplication", results.get("validate_worker_eps"), consumer, raw_consumer)
    rate("worker, all jobs (+ sessions)", results.get("all_worker_eps"), consumer, raw_consumer)
    if results.get("all_backlog", {}).get("steady_eps"):
        rate("worker, all jobs, steady (10% to 90% of the backlog)", results["all_backlog"]["steady_eps"], consumer,
             raw_consumer)  # fmt: skip
    rate("all jobs and the sink, to ClickHouse", results.get("all_sink_eps"), consumer, raw_consumer)
    if "all_sink_eps" in results and "raw_insert_eps" in results:
        rate(
            "sink insert path",
            results["all_sink_eps"],
            results["raw_insert_eps"],
            "bare clickhouse-connect columnar insert",
        )
    if "latency_ms" in results:
        latency = results["latency_ms"]
        for q in ("p50", "p95", "p99", "max"):
            table.append((f"event-to-queryable latency {q} at {results['latency_rate_eps']:,.0f} events/s (live)",
                          f"{latency[q]:,.0f} ms", "5,000 ms (target, p99)", f"{latency[q] / 5000:.1%}"))  # fmt: skip
    for users, figures in results.get("memory", {}).items():
        if users != "baseline_rss":
            table.append((f"worker memory with {int(users):,} active users",
                          f"{figures['bytes_per_user']:,.0f} B/user ({figures['rss'] / 2**20:,.0f} MiB RSS)",
                          "2,048 B/user (target)", f"{figures['bytes_per_user'] / 2048:.1%}"))  # fmt: skip
    if "timer_rebuild" in results:
        rebuild = results["timer_rebuild"]
        users = f"{rebuild['users']:,} users"
        table.append((f"timer rebuild, longest event-loop block ({users}, in process)",
                      f"{rebuild['max_step_s'] * 1000:,.0f} ms", "-", "-"))  # fmt: skip
        table.append((f"timer rebuild, all partitions ({users}, in process)", f"{rebuild['total_s']:,.2f} s", "-", "-"))
    if "rebalance" in results:
        pause = results["rebalance"]
        for change, what in (("join", "a second worker joins"), ("leave", "the second worker leaves")):
            figures = pause[change]
            table.append((f"rebalance pause, {what} ({pause['users_in_state']:,} users in state)",
                          f"{figures['stalled_s']:,.1f} s (worst event {figures['max_latency_ms'] / 1000:,.1f} s)",
                          "-", "-"))  # fmt: skip
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
        (
            f"Phases: {', '.join(results.get('phases', []))}; {results.get('events', 0):,} simulated events; "
            f"the run took {results['seconds']:,.0f} s."
        ),
        "",
        "| what | value | ceiling | ratio |",
        "|---|---|---|---|",
        *(f"| {what} | {value} | {ceiling} | {ratio} |" for what, value, ceiling, ratio in rows(results)),
        "",
    ]
    (out_dir / "bench.md").write_text("\n".join(lines))
