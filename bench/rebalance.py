"""What a rebalance costs with many users in state.

Two measures:

- :func:`timer_rebuild`, in process: the state of ``users`` users written by the runner
  itself (one login each, as the memory measure sends: an open session and one remembered
  id per user) into a dict, then a fresh runner rebuilds each partition's timers the way
  the worker does after an assignment (``JobRunner.index_partition``, one step of
  ``INDEX_STEP`` users between two turns of the event loop). Every step is timed: the
  longest is the longest the event loop is blocked by the rebuild.
- :func:`rebalance_pause`, end to end: a running pipeline with users in state, a steady
  trickle of events, and a second worker joining the group (partitions move to it), then
  leaving again (they move back). Every trickle event's produce-to-queryable time shows the
  pause as traffic sees it; the workers' ``pulse_state_restore_seconds`` and
  ``pulse_timer_index_seconds`` give the restores of state and the rebuilds of timers.

``python -m bench.rebalance --users 1000000`` runs the first alone (no broker).
"""

from __future__ import annotations

import argparse
import gc
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from bench import pipeline
from devstack.ports import free_ports
from ops.reader import run_query
from producers import EventProducer
from pulse.partitioning import partition_for
from pulse.settings import Settings, load_settings

Log = Callable[[str], None]
RECORD_EVENTS = 500


# --- in process: the rebuild alone -----------------------------------------------------------


def build_state(
    settings: Settings, users: int, partitions: int, distinct: int = 20_000, log: Log = print
) -> dict[bytes, bytes]:
    """The runner's own state for ``users`` users (one login each, now), spread over ``partitions``.

    The first ``distinct`` users go through the runner (about 4,000 new users a second here);
    every further user gets the stored value of one of them under its own key, which is the
    same bytes but for its event id's hash and its session id: what a timer rebuild reads
    (the slice headers) is the same.
    """
    from stream_jobs.runner import JobRunner, user_key

    store: dict[bytes, bytes] = {}
    runner = JobRunner(settings, store)
    now = time.time_ns() // 1_000_000
    batches: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    offsets = dict.fromkeys(range(partitions), 0)

    def flush(partition: int) -> None:
        runner.process(b"\n".join(batches[partition]), "bench", partition, offsets[partition]).apply_writes(store)
        offsets[partition] += 1
        batches[partition].clear()

    written = min(users, distinct)
    samples = []
    for n in range(written):
        user_id = f"mem-user-{n}"
        partition = partition_for(user_id, partitions)
        samples.append(user_key(partition, user_id))
        batches[partition].append(
            orjson.dumps({"event_id": f"mem-{n}", "type": "login", "user_id": user_id, "ts": now})
        )
        if len(batches[partition]) == RECORD_EVENTS:
            flush(partition)
    for partition in range(partitions):
        if batches[partition]:
            flush(partition)
    values = [store[key] for key in samples]
    for n in range(written, users):
        user_id = f"mem-user-{n}"
        store[user_key(partition_for(user_id, partitions), user_id)] = values[n % written]
        if n % 250_000 == 0:
            log(f"  {n:,} users in the store")
    return store


def timer_rebuild(settings: Settings, store: dict[bytes, bytes], partitions: int) -> dict[str, Any]:
    """Rebuild every partition's timers from ``store`` as after an assignment of all of them; every step timed."""
    from stream_jobs.runner import INDEX_STEP, JobRunner

    runner = JobRunner(settings, store)
    per_partition = []
    gc_was_enabled = gc.isenabled()
    for partition in runner.unindexed(range(partitions)):
        steps = []
        users = 0
        started = time.perf_counter()
        step_started = started
        for users in runner.index_partition(partition):
            now = time.perf_counter()
            steps.append(now - step_started)
            # the worker's loop would run other callbacks here (asyncio.sleep(0))
            step_started = time.perf_counter()
        total = time.perf_counter() - started
        per_partition.append({
            "partition": partition, "users": users, "steps": len(steps), "first_step_s": steps[0] if steps else 0.0,
            "max_step_s": max(steps, default=0.0),
            "max_later_step_s": max(steps[1:], default=0.0), "total_s": total,
        })  # fmt: skip
    # the scan that lists a partition's keys, alone (the first step of every partition holds it)
    prefix = f"u{partitions - 1}|".encode()
    scan_started = time.perf_counter()
    listed = [key for key in store if key.startswith(prefix)]
    scan_s = time.perf_counter() - scan_started
    return {
        "users": sum(p["users"] for p in per_partition),
        "store_keys": len(store),
        "store_bytes": sum(len(k) + len(v) for k, v in store.items()),
        "index_step": INDEX_STEP,
        "partitions": per_partition,
        "max_step_s": max(p["max_step_s"] for p in per_partition),
        "max_first_step_s": max(p["first_step_s"] for p in per_partition),
        "max_later_step_s": max(p["max_later_step_s"] for p in per_partition),
        "total_s": sum(p["total_s"] for p in per_partition),
        "key_scan_s": scan_s,
        "key_scan_matched": len(listed),
        "open_sessions": runner.live("sessions"),
        "gc_enabled": gc_was_enabled,
    }


def measure_timer_rebuild(settings: Settings, users: int, partitions: int, distinct: int = 20_000,
                          log: Log = print) -> dict[str, Any]:  # fmt: skip
    log(
        f"  writing the state of {users:,} users with the runner ({min(users, distinct):,} distinct; in process, dict store) ..."
    )
    started = time.perf_counter()
    store = build_state(settings, users, partitions, distinct, log)
    log(f"  state written in {time.perf_counter() - started:.0f}s: {len(store):,} keys, "
        f"{sum(len(v) for v in store.values()) / max(len(store), 1):,.0f} B per value")  # fmt: skip
    figures = {"build_s": time.perf_counter() - started, "distinct_users": min(users, distinct)}
    figures.update(timer_rebuild(settings, store, partitions))
    return figures


# --- end to end: a worker joins, then leaves ---------------------------------------------------


class Trickle(threading.Thread):
    """Steady traffic at ``rate`` events a second until stopped: ids ``reb-<run>-N``, ``ts`` = produce time."""

    def __init__(self, settings: Settings, rate: float, users: int = 1_000) -> None:
        super().__init__(name="trickle", daemon=True)
        self.settings = settings
        self.rate = rate
        self.users = users
        self.run_id = uuid.uuid4().hex[:8]
        self.sent = 0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    @property
    def prefix(self) -> str:
        return f"reb-{self.run_id}-"

    def run(self) -> None:
        try:
            with EventProducer.from_settings(self.settings) as producer:
                started = time.monotonic()
                while not self._stop_event.is_set():
                    due = int((time.monotonic() - started) * self.rate)
                    while self.sent < due:
                        n = self.sent
                        producer.send({"event_id": f"{self.prefix}{n}", "type": "page_view",
                                       "user_id": f"reb-user-{n % self.users}", "ts": time.time_ns() // 1_000_000,
                                       "context": {"path": "/"}})  # fmt: skip
                        self.sent += 1
                    producer.poll(0.005)
        except BaseException as exc:  # noqa: BLE001 (reported by the caller)
            self.error = exc

    def stop(self) -> int:
        self._stop_event.set()
        self.join(120)
        if self.error is not None:
            raise RuntimeError(f"trickle failed: {self.error!r}")
        return self.sent


def _latencies(settings: Settings, prefix: str) -> list[tuple[int, int]]:
    """(produced ms, queryable ms) of every trickle event, by produce time."""
    rows = run_query(
        settings,
        "SELECT any(toUnixTimestamp64Milli(ts)), min(toUnixTimestamp64Milli(inserted_at)) FROM events "
        f"WHERE startsWith(event_id, '{prefix}') GROUP BY event_id",
    ).rows
    return sorted((int(ts), int(inserted)) for ts, inserted in rows)


def _window(samples: list[tuple[int, int]], start_ms: int, end_ms: int, threshold_ms: float) -> dict[str, Any]:
    """The pause a change at ``start_ms`` caused to the events produced from 2 s before it to ``end_ms``.

    ``stalled_s``: from ``start_ms`` until the last event that took longer than ``threshold_ms``
    became queryable (0 if none did): how long the pipeline was not processing as usual.
    """
    window = [(ts, q) for ts, q in samples if start_ms - 2_000 <= ts <= end_ms]
    slow = [(ts, q) for ts, q in window if q - ts > threshold_ms]
    worst = max(window, key=lambda s: s[1] - s[0], default=(start_ms, start_ms))
    return {
        "events": len(window),
        "max_latency_ms": worst[1] - worst[0],
        "worst_produced_at_s": (worst[0] - start_ms) / 1000,
        "slow_events": len(slow),
        "stalled_s": max(((q - start_ms) / 1000 for _, q in slow), default=0.0),
    }


def _settled(settings: Settings, trickle: Trickle) -> int:
    """Wait until every trickle event produced so far is queryable, then 3 s more; the ms of that "so far"."""
    now_ms = time.time_ns() // 1_000_000
    pipeline.wait_queryable(settings, trickle.prefix, trickle.sent, timeout=600.0)
    time.sleep(3.0)
    return now_ms


def _seconds(port: int, histogram: str) -> dict[str, float]:
    """A seconds ``histogram`` of the worker on ``port``: how many so far, their total, and the bucket bound of the longest."""
    samples = pipeline.worker_metrics(port)
    count = samples.get(f"{histogram}_count", 0.0)
    bounds = sorted(
        (float(name.split('le="')[1].split('"')[0]), value)
        for name, value in samples.items() if name.startswith(f"{histogram}_bucket")
    )  # fmt: skip
    longest_at_most = next((bound for bound, value in bounds if value >= count), float("inf")) if count else 0.0
    return {"count": count, "sum_s": samples.get(f"{histogram}_sum", 0.0), "longest_at_most_s": longest_at_most}


def _steps(port: int) -> dict[str, dict[str, float]]:
    """The worker's state restores and timer rebuilds so far (``pulse_state_restore_seconds``, ``..._timer_index_...``)."""
    return {step: _seconds(port, f"pulse_{metric}_seconds") for step, metric in (("restore", "state_restore"),
                                                                                  ("index", "timer_index"))}


def _delta(after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Restores and rebuilds between two readings (the bucket bound covers the whole life of the worker)."""
    return {step: _step_delta(after[step], before[step]) for step in after}


def _step_delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {"count": after["count"] - before["count"], "sum_s": after["sum_s"] - before["sum_s"],
            "longest_at_most_s": after["longest_at_most_s"]}  # fmt: skip


def _held(port: int) -> int | None:
    """Partitions the worker on ``port`` holds, from ``/readyz`` (None while it is not ready)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            body = orjson.loads(response.read())
    except (OSError, ValueError):
        return None
    return len(body.get("partitions", ())) if body.get("status") == "ready" else None


def _wait_settled(ports: list[int], partitions: int, timeout: float = 300.0) -> None:
    """Wait until the workers on ``ports`` are all ready and hold every one of ``partitions`` between them, each some.

    Ready means the held partitions' state is read back and their timers rebuilt (a worker
    that kept a partition through the rebalance has nothing to rebuild for it).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = [_held(port) for port in ports]
        if all(held) and sum(held) == partitions:  # type: ignore[arg-type]  # no None left
            return
        time.sleep(0.1)
    raise TimeoutError(f"the workers did not settle with {partitions} partitions between them after {timeout:.0f}s")


def rebalance_pause(settings: Settings, root: Path, users_in_state: int, trickle_rate: float = 200.0,
                    log: Log = print) -> dict[str, Any]:  # fmt: skip
    """A second worker joins the group of the running pipeline ``settings``, then leaves; the pause of each.

    The pipeline must be up and hold ``users_in_state`` users. A trickle of ``trickle_rate``
    events a second runs throughout; the figures are the trickle's produce-to-queryable
    times around each change, the time to the joining worker's readiness, and the
    ``pulse_timer_index_seconds`` both workers report.
    """
    from devstack.processes import terminate
    from devstack.stack import add_worker  # the job runtime's stack (scale-out)

    first_port = settings.worker_metrics_port
    (second_port,) = free_ports(1)
    pipeline.wait_worker_ready(first_port)
    pipeline.probe(settings)
    trickle = Trickle(settings, trickle_rate)
    trickle.start()
    time.sleep(5.0)  # the trickle's normal latency, before anything moves
    results: dict[str, Any] = {"users_in_state": users_in_state, "trickle_eps": trickle_rate}

    join_before = _steps(first_port)
    join_ms = time.time_ns() // 1_000_000
    started = time.monotonic()
    pid = add_worker(settings, "worker-2", timeout=600.0, worker_metrics_port=second_port,
                     data_dir=root / "worker-2")  # fmt: skip
    results["join_ready_s"] = time.monotonic() - started
    _wait_settled([first_port, second_port], settings.partitions)
    results["join_indexed_s"] = time.monotonic() - started
    steps = {"join_first_worker": _delta(_steps(first_port), join_before), "join_second_worker": _steps(second_port)}
    log(f"  worker-2 joined: ready after {results['join_ready_s']:.1f}s, both workers' timers rebuilt after "
        f"{results['join_indexed_s']:.1f}s")  # fmt: skip
    join_end_ms = _settled(settings, trickle)  # the trickle caught up before anything moves again

    leave_before = _steps(first_port)
    leave_ms = time.time_ns() // 1_000_000
    started = time.monotonic()
    terminate(pid, 30.0)
    (settings.run_dir / "worker-2.pid").unlink(missing_ok=True)
    _wait_settled([first_port], settings.partitions)
    results["leave_indexed_s"] = time.monotonic() - started
    steps["leave_first_worker"] = _delta(_steps(first_port), leave_before)
    log(f"  worker-2 left: the first worker holds every partition again, timers rebuilt after "
        f"{results['leave_indexed_s']:.1f}s")  # fmt: skip
    end_ms = _settled(settings, trickle)

    sent = trickle.stop()
    pipeline.wait_queryable(settings, trickle.prefix, sent)
    samples = _latencies(settings, trickle.prefix)
    normal = sorted(q - ts for ts, q in samples if ts < join_ms - 500)
    normal_p99 = normal[int(len(normal) * 0.99)] if normal else 0
    threshold = max(2 * normal_p99, normal_p99 + 1_000)
    results["normal_p99_ms"] = normal_p99
    results["slow_threshold_ms"] = threshold
    results["join"] = _window(samples, join_ms, join_end_ms, threshold)
    results["leave"] = _window(samples, leave_ms, end_ms, threshold)
    results["steps"] = steps
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the rebuild of every partition's timers from a state of N users, "
                                                 "in process (no broker).")  # fmt: skip
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--distinct", type=int, default=20_000, help="users written by the runner; the rest copy their bytes"
    )
    args = parser.parse_args()
    settings = replace(load_settings({}), partitions=args.partitions)
    figures = measure_timer_rebuild(settings, args.users, args.partitions, args.distinct)
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
