"""Prometheus metrics of the ClickHouse sink (served on ``PULSE_SINK_PORT`` at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from pulse.kafka_outages import kafka_dependency
from pulse.outages import Dependency

ROWS_INSERTED = Counter("pulse_rows_inserted_total", "Rows inserted into ClickHouse, by table.", ["table"])
INSERT_SECONDS = Histogram(
    "pulse_insert_seconds",
    "Latency of one successful batch insert, by table.",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INSERT_FAILURES = Counter(
    "pulse_insert_failures_total",
    "Failed insert attempts, by table (transient ones are retried, refused ones split to find the rows).",
    ["table"],
)
ROWS_REFUSED = Counter(
    "pulse_rows_refused_total",
    "Rows ClickHouse refused for good (kept as sink_rejected dead letters), by table.",
    ["table"],
)
BATCH_ROWS = Histogram(
    "pulse_insert_batch_rows",
    "Rows per batch insert, by table.",
    ["table"],
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000),
)
UNREADABLE_RECORDS = Counter(
    "pulse_sink_unreadable_records_total",
    "Records of an output topic the sink could not decode (kept as dead letters).",
)
# pulse_dependency_up{process="sink", dependency="kafka" | "clickhouse"}
KAFKA = kafka_dependency("sink")
CLICKHOUSE = Dependency("sink", "clickhouse")  # up again on the first insert that lands
SECONDS_SINCE_PROGRESS = Gauge(
    "pulse_sink_seconds_since_progress", "Seconds since the sink last consumed a record or inserted rows."
)
STALLED = Gauge("pulse_sink_stalled", "1 while /healthz would answer 503 (lag, no progress), computed at each scrape.")
