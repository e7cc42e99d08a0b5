"""The benchmark report: ``bench.json`` (every figure) and ``bench.md`` (what, value, ceiling, ratio)."""

from __future__ import annotations

import os
import platform
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

CAPACITY_PHASES = ("live", "collector")  # capacity searches (``capacity.search``), each with its curve
CAPACITY_TARGET_EPS = 25_000  # the live capacity asked for, per worker process
BACKLOG_TARGET_EPS = 50_000  # the backlog rate asked for, per worker process on one core
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
    backlog = results.get("all_backlog", {})
    if backlog.get("steady_eps"):
        rate("worker, all jobs, steady (10% to 90% of the backlog)", backlog["steady_eps"], consumer, raw_consumer)
    if backlog.get("steady_eps") and backlog.get("steady_cpu"):
        rate(f"worker, all jobs, steady, per core (the worker kept {backlog['steady_cpu']:.0%} of one busy)",
             backlog["steady_eps"] / backlog["steady_cpu"], BACKLOG_TARGET_EPS,
             "target, per worker process on one core")  # fmt: skip
    if jobs_alone := results.get("jobs_in_process_eps"):
        rate("the jobs alone: the worker's runner in process on the same events, no Kafka or Faust", jobs_alone,
             BACKLOG_TARGET_EPS, "target, per worker process on one core")  # fmt: skip
        rate("worker, all jobs, next to its jobs alone in process", results.get("all_worker_eps"), jobs_alone,
             "the jobs alone")  # fmt: skip
    rate("all jobs and the sink, to ClickHouse", results.get("all_sink_eps"), consumer, raw_consumer)
    if "all_sink_eps" in results and "raw_insert_eps" in results:
        rate(
            "sink insert path",
            results["all_sink_eps"],
            results["raw_insert_eps"],
            "bare clickhouse-connect columnar insert",
        )
    for phase in CAPACITY_PHASES:
        if phase in results:
            table += _capacity_rows(phase, results[phase])
    if alerts := results.get("alerts"):
        table.append((f"churn alert: event sent to alert emitted, p99 at half the live capacity ({alerts['rate_eps']:,.0f} "
                      f"events/s, {alerts['alerts']:,} alerts; p50 {alerts['p50']:,.0f} ms)", f"{alerts['p99']:,.0f} ms",
                      "2,000 ms (target, p99)", f"{alerts['p99'] / 2000:.1%}"))  # fmt: skip
        table.append(("churn alert: event sent to alert queryable in churn_alerts, p99", f"{alerts['queryable_p99']:,.0f} ms",
                      "-", "-"))  # fmt: skip
    for users, figures in results.get("memory", {}).items():
        if users != "baseline_rss" and figures.get("worker_eps"):
            rate(f"worker, all jobs, a new user per event, up to {int(users):,} users in state (published meanwhile)",
                 figures["worker_eps"],
                 consumer, raw_consumer)  # fmt: skip
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
                          "10 s (target)", f"{figures['stalled_s'] / 10:.1%}"))  # fmt: skip
        restores = [(who, step["restore"]) for who, step in pause["steps"].items() if step["restore"]["count"]]
        for who, restore in restores:
            table.append((f"rebalance: state read back from the changelog, {who.replace('_', ' ')}",
                          f"{restore['sum_s']:,.1f} s ({restore['count']:.0f} restores)", "-", "-"))  # fmt: skip
    if "peers" in results:
        table += _peer_rows(results["peers"])
    return table


def _peer_rows(peers: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Our worker and each peer on the same topic of one event a record, next to the raw consumer there and to
    each other; and, loudly, whether each peer's sessions equal ours."""
    worker, consumer = peers["worker_eps"], peers["raw_consumer_eps"]
    consumer_name = "raw aiokafka consumer + orjson, same topic"

    def rate(what: str, value: float | None, ceiling: float | None, ceiling_name: str) -> tuple[str, str, str, str]:
        shown = f"{ceiling:,.0f} ({ceiling_name})" if ceiling else "-"
        if value is None:
            return what, "not measured", shown, "-"
        return what, f"{value:,.0f} events/s", shown, f"{value / ceiling:.1%}" if ceiling else "-"

    table = [rate(f"peers: our worker, all jobs, {peers['events']:,} events one a record", worker, consumer,
                  consumer_name)]  # fmt: skip
    for figures in peers["by_peer"].values():
        title = figures["title"]
        table.append(rate(f"peers: {title} ({figures['how']}), {figures['package']} {figures['version']}",
                          figures["eps"], consumer, consumer_name))  # fmt: skip
        table.append(rate(f"peers: our worker next to {title}", worker, figures["eps"], title))
        agreement = (f"equal: {figures['sessions']:,} sessions of {peers['users']:,} users" if figures["equal"] else
                     f"**DIFFERENT for {figures['differing_users']:,} of {peers['users']:,} users**")  # fmt: skip
        table.append((f"peers: sessions of {title} vs ours", agreement, "-", "-"))
    return table


def _capacity_rows(phase: str, curve: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The capacity a search found next to the target, the p99 at that rate and (collector) the requests answered."""
    target, capacity = curve["target_p99_ms"], curve["capacity_eps"]
    what = f"{phase} capacity: highest steady rate with p99 event-to-queryable under {target:,.0f} ms"
    what += f" ({curve['traffic']})"
    goal = f"{CAPACITY_TARGET_EPS:,} events/s (target, per worker process)"
    table = [(what, f"none of {len(curve['points'])} rates held", goal, "-")]
    if capacity is not None:
        at = next(p for p in curve["points"] if p["rate"] == capacity)
        ceiling = " (the backlog rate, the most tried)" if capacity == curve["most_eps"] else ""
        table = [
            (what, f"{capacity:,.0f} events/s{ceiling}", goal, f"{capacity / CAPACITY_TARGET_EPS:.1%}"),
            (f"{phase}: event-to-queryable p99 at its capacity ({capacity:,.0f} events/s)", f"{at['p99']:,.0f} ms",
             f"{target:,.0f} ms (target, p99)", f"{at['p99'] / target:.1%}"),
        ]  # fmt: skip
    if requests := sum(p.get("requests", 0) for p in curve["points"]):
        failed = sum(p["failed"] for p in curve["points"])
        table.append((f"{phase}: requests answered 2xx, every point", f"{requests - failed:,} of {requests:,}", "-",
                      f"{(requests - failed) / requests:.1%}"))  # fmt: skip
    return table


def curve_lines(results: dict[str, Any]) -> list[str]:
    """The points of each capacity search as a markdown table, by rate (``#`` is the order they were measured in)."""
    lines: list[str] = []
    for phase in (phase for phase in CAPACITY_PHASES if phase in results):
        points = sorted(enumerate(results[phase]["points"], 1), key=lambda numbered: numbered[1]["rate"])
        lines += [
            "",
            f"## {phase}: event-to-queryable latency by rate ({results[phase]['traffic']})",
            "",
            "| # | rate asked, events/s | sent, events/s | events | p50 ms | p95 ms | p99 ms | max ms "
            + "| requests (failed) | answer p99 ms | CPU: clients, collector | held |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n, p in points:
            requests = f"{p['requests']:,} ({p['failed']:,})" if "requests" in p else "-"
            answer = f"{p['answer_p99_ms']:,.0f}" if p.get("answer_p99_ms") is not None else "-"
            cpu = f"{p['client_cpu']:.0%}, {p['collector_cpu']:.0%}" if "client_cpu" in p else "-"
            lines.append(f"| {n} | {p['rate']:,.0f} | {p['achieved_eps']:,.0f} | {p['events']:,} | {p['p50']:,.0f} "
                         f"| {p['p95']:,.0f} | {p['p99']:,.0f} | {p['max']:,.0f} | {requests} | {answer} | {cpu} "
                         f"| {'yes' if p['held'] else 'no: ' + p['shortfall']} |")  # fmt: skip
    return lines


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
        *curve_lines(results),
        "",
    ]
    (out_dir / "bench.md").write_text("\n".join(lines))
