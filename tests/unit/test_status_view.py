"""The view of ``pulse status`` / ``pulse top`` from probes: rows, rates, latency, rendering."""

from __future__ import annotations

import orjson
import pytest

from devstack.status_view import (
    CLEAR_SCREEN,
    BrokerProbe,
    GroupLag,
    Latency,
    Metrics,
    Page,
    Row,
    Snapshot,
    StageProbe,
    as_json,
    build_view,
    increase,
    quantile,
    render,
    top_screen,
)

BROKER = BrokerProbe("127.0.0.1:9092", local=True, pid=100, answering=True)


def collector_metrics(accepted: int, rejected: int) -> Metrics:
    return Metrics.parse(
        "# TYPE pulse_collector_events_total counter\n"
        f'pulse_collector_events_total{{outcome="accepted"}} {accepted}\n'
        f'pulse_collector_events_total{{outcome="rejected"}} {rejected}\n'
        'pulse_collector_events_total{outcome="retry"} 7\n'
    )


def worker_metrics(events_in: int, bad_json: int, open_sessions: int) -> Metrics:
    return Metrics.parse(
        "# TYPE pulse_events_in_total counter\n"
        f"pulse_events_in_total {events_in}\n"
        "# TYPE pulse_events_invalid_total counter\n"
        f'pulse_events_invalid_total{{reason="bad_json"}} {bad_json}\n'
        'pulse_events_invalid_total{reason="missing_field"} 0\n'
        "# TYPE pulse_late_events_total counter\n"
        "pulse_late_events_total 2\n"
        "# TYPE pulse_open_sessions gauge\n"
        f"pulse_open_sessions {open_sessions}\n"
    )


def sink_metrics(events_rows: int, buckets: tuple[int, int, int, int]) -> Metrics:
    """``buckets``: cumulative counts of the sink's lag at le 0.1, 0.5, 1 and +Inf."""
    le_01, le_05, le_1, le_inf = buckets
    return Metrics.parse(
        "# TYPE pulse_rows_inserted_total counter\n"
        f'pulse_rows_inserted_total{{table="events"}} {events_rows}\n'
        'pulse_rows_inserted_total{table="sessions"} 999\n'
        "# TYPE pulse_rows_refused_total counter\n"
        'pulse_rows_refused_total{table="events"} 1\n'
        "# TYPE pulse_event_lag_seconds histogram\n"
        f'pulse_event_lag_seconds_bucket{{le="0.1",stage="sink"}} {le_01}\n'
        f'pulse_event_lag_seconds_bucket{{le="0.5",stage="sink"}} {le_05}\n'
        f'pulse_event_lag_seconds_bucket{{le="1.0",stage="sink"}} {le_1}\n'
        f'pulse_event_lag_seconds_bucket{{le="+Inf",stage="sink"}} {le_inf}\n'
        f'pulse_event_lag_seconds_count{{stage="sink"}} {le_inf}\n'
        'pulse_event_lag_seconds_sum{stage="sink"} 1.0\n'
        'pulse_event_lag_seconds_bucket{le="+Inf",stage="worker"} 5000\n'
    )


def ok(**body: object) -> Page:
    return Page(200, body or {"status": "ok"})


def snapshot(at: float, accepted: int, events_in: int, rows: int, buckets: tuple[int, int, int, int]) -> Snapshot:
    """Collector, a ready worker on partitions 0 and 1, an extra worker that is gone, the sink."""
    return Snapshot(
        at=at,
        broker=BROKER,
        stages=(
            StageProbe("collector", "collector", "127.0.0.1:8088", 201, ok(), None, collector_metrics(accepted, 3)),
            StageProbe(
                "worker",
                "worker",
                "127.0.0.1:9464",
                202,
                ok(),
                ok(status="ready", partitions=[0, 1]),
                worker_metrics(events_in, 4, 12),
            ),
            StageProbe("worker-2", "worker", "", None),
            StageProbe("sink", "sink", "127.0.0.1:8124", 203, ok(), None, sink_metrics(rows, buckets)),
        ),
        groups=(
            GroupLag("worker", "app", {("p.events", 0): 5, ("p.events", 1): 0, ("p.events", 2): 40}),
            GroupLag("sink", "app-clickhouse-sink", {("p.valid", 0): 1, ("p.dead", 0): 2}),
        ),
    )


BEFORE = snapshot(10.0, accepted=1_000, events_in=900, rows=800, buckets=(10, 80, 100, 100))
NOW = snapshot(12.0, accepted=1_500, events_in=1_400, rows=1_200, buckets=(10, 80, 300, 500))


def test_rows_have_state_lag_and_rates_between_two_snapshots() -> None:
    view = build_view(NOW, BEFORE)

    assert view.rows == (
        Row("kafka", "up", 100, None, None, None, "127.0.0.1:9092"),
        Row("collector", "up", 201, None, 1_500, 250.0, "127.0.0.1:8088"),
        Row("worker", "up", 202, 5, 1_400, 250.0, "127.0.0.1:9464 partitions 0,1"),
        Row("worker-2", "down", None, None, None, None, "not running"),
        Row("sink", "up", 203, 3, 1_200, 200.0, "127.0.0.1:8124"),
    )
    assert not view.healthy
    assert view.dead_letters == {"bad_json": 4, "refused_by_collector": 3, "sink_rejected": 1, "too_late": 2}
    assert view.open_sessions == 12


def test_latency_is_over_the_window_between_snapshots_when_events_passed() -> None:
    # 400 events in the window, all between 0.5 s and +Inf: 200 under 1 s, 200 above
    assert build_view(NOW, BEFORE).latency == Latency(p50_s=1.0, p99_s=1.0, window_s=2.0)


def test_latency_is_since_the_sink_started_without_events_in_the_window_or_a_snapshot_before() -> None:
    # cumulative: 500 events, rank 250 lies in (0.5, 1]: 80 below it, 220 in it
    since_start = Latency(p50_s=0.5 + 0.5 * (250 - 80) / 220, p99_s=1.0, window_s=None)
    assert build_view(NOW).latency == since_start
    assert build_view(NOW, NOW).latency == since_start


def test_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.1, 10.0), (0.5, 50.0), (1.0, 90.0), (float("inf"), 100.0)]
    assert quantile(0.05, buckets) == pytest.approx(0.05)
    assert quantile(0.5, buckets) == pytest.approx(0.5)
    assert quantile(0.7, buckets) == pytest.approx(0.75)
    assert quantile(0.99, buckets) == 1.0  # in the +Inf bucket: the highest finite bound
    assert quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert quantile(0.5, []) is None


def test_a_counter_that_went_down_was_reset_and_counts_from_zero() -> None:
    assert increase(150.0, 100.0) == 50.0
    assert increase(30.0, 100.0) == 30.0


def test_a_restarted_stage_rate_counts_from_zero() -> None:
    restarted = snapshot(12.0, accepted=100, events_in=1_400, rows=1_200, buckets=(10, 80, 300, 500))
    collector = build_view(restarted, BEFORE).rows[1]
    assert (collector.events, collector.events_per_s) == (100, 50.0)


def test_without_a_snapshot_before_there_are_no_rates() -> None:
    assert [row.events_per_s for row in build_view(NOW).rows] == [None] * 5


def test_a_503_says_why() -> None:
    stalled = Page(503, {"status": "stalled", "reason": "40 records waiting, none processed for 65s", "lag": 40})
    starting = Page(503, {"status": "starting", "partitions": []})
    sink_stalled = Page(503, {"status": "stalled", "seconds_since_progress": 61.2, "lag": 7})
    stages = (
        StageProbe("worker", "worker", "127.0.0.1:1", 1, stalled, ok(status="ready", partitions=[2])),
        StageProbe("worker-2", "worker", "127.0.0.1:2", 2, ok(), starting),
        StageProbe("sink", "sink", "127.0.0.1:3", 3, sink_stalled),
    )
    down = BrokerProbe("kafka.example:9092", local=False, pid=None, answering=False)
    view = build_view(Snapshot(0.0, down, stages, (GroupLag("worker", "app", None), GroupLag("sink", "s", None))))

    assert [(row.stage, row.state, row.lag, row.note) for row in view.rows] == [
        ("kafka", "down", None, "external kafka.example:9092 does not answer"),
        ("worker", "stalled", None, "127.0.0.1:1 40 records waiting, none processed for 65s partitions 2"),
        ("worker-2", "starting", None, "127.0.0.1:2 joining its group or restoring state"),
        ("sink", "stalled", None, "127.0.0.1:3 7 records behind, no progress for 61s"),
    ]


def test_render_is_an_aligned_table_with_the_totals_below() -> None:
    assert (
        render(build_view(NOW, BEFORE))
        == """\
STAGE      STATE  PID  LAG  EVENTS/S  EVENTS  NOTE
kafka      up     100    -         -       -  127.0.0.1:9092
collector  up     201    -     250.0    1500  127.0.0.1:8088
worker     up     202    5     250.0    1400  127.0.0.1:9464 partitions 0,1
worker-2   down     -    -         -       -  not running
sink       up     203    3     200.0    1200  127.0.0.1:8124

consumer lag:   worker group app 45, sink group app-clickhouse-sink 3
latency:        event to queryable p50 1.00s, p99 1.00s over the last 2.0s
dead letters:   bad_json 4, refused_by_collector 3, sink_rejected 1, too_late 2
open sessions:  12
unhealthy: worker-2 down"""
    )


def test_top_clears_the_screen_and_titles_the_view() -> None:
    view = build_view(NOW, BEFORE)
    screen = top_screen(view, 2.0, "12:00:01")
    assert screen == f"{CLEAR_SCREEN}pulse top  12:00:01  (every 2s, Ctrl-C to quit)\n\n{render(view)}\n"


def test_json_has_every_number_raw() -> None:
    document = orjson.loads(as_json(build_view(NOW, BEFORE)))

    assert document["healthy"] is False
    assert document["stages"][2] == {
        "stage": "worker",
        "state": "up",
        "healthy": True,
        "pid": 202,
        "lag": 5,
        "events": 1400,
        "events_per_s": 250.0,
        "note": "127.0.0.1:9464 partitions 0,1",
    }
    assert document["consumer_groups"] == [
        {"stage": "worker", "group": "app", "lag": 45},
        {"stage": "sink", "group": "app-clickhouse-sink", "lag": 3},
    ]
    assert document["latency_seconds"] == {"p50": 1.0, "p99": 1.0, "window": 2.0}
    assert document["dead_letters"] == {"bad_json": 4, "refused_by_collector": 3, "sink_rejected": 1, "too_late": 2}
    assert document["open_sessions"] == 12
