"""Prometheus metrics of the stream jobs (served on ``PULSE_WORKER_METRICS_PORT``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from pulse.kafka_outages import kafka_dependency

RECORDS_IN = Counter("pulse_records_in_total", "Kafka records read from the events topic.")
EVENTS_IN = Counter("pulse_events_in_total", "Events read from the events topic (one per NDJSON line).")
EVENTS_VALID = Counter("pulse_events_valid_total", "Events that passed validation (new ones, not resends).")
EVENTS_INVALID = Counter("pulse_events_invalid_total", "Events refused and dead-lettered, by reason.", ["reason"])
EVENTS_DUPLICATE = Counter("pulse_events_duplicate_total", "Valid events dropped as resent duplicates.")
PROCESSING_ERRORS = Counter(
    "pulse_processing_errors_total", "Unexpected errors while handling a record (the record was dead-lettered whole)."
)
PUBLISH_FAILURES = Counter("pulse_publish_failures_total", "Errors of the output producer's connection to Kafka (it retries).")
LATE_EVENTS = Counter("pulse_late_events_total", "Events too far behind the watermark to be placed in a session.")
OPEN_SESSIONS = Gauge("pulse_open_sessions", "Sessions open in the partitions this worker holds.")
SESSIONS_CLOSED = Counter("pulse_sessions_closed_total", "Sessions closed by the watermark.")
SESSION_DURATION = Histogram(
    "pulse_session_duration_seconds",
    "Duration of closed sessions (last event minus first).",
    buckets=(0, 10, 30, 60, 180, 600, 1800, 3600, 4 * 3600, 24 * 3600),
)
FUNNEL_STEPS = Counter(
    "pulse_funnel_steps_total", "Funnel steps reached (a row of funnel_steps; a replayed record counts again).",
    ["funnel", "step"],
)
IDS_MERGED = Counter("pulse_identity_ids_merged_total", "Ids merged into a person (identify, alias, or both ids on one event).")
MERGES_REFUSED = Counter(
    "pulse_identity_merges_refused_total",
    "Ids an event claimed for its user and that were not merged, by reason (placeholder, both_identified, "
    "merged_elsewhere).",
    ["reason"],
)
IDS_FORGOTTEN = Counter("pulse_identity_ids_forgotten_total", "Ids whose state pulse forget erased (GDPR/CCPA erasure).")
EVENTS_SUPPRESSED = Counter(
    "pulse_events_suppressed_total", "Events of forgotten ids dropped (resent or replayed after pulse forget)."
)
CHURN_USERS = Gauge("pulse_churn_users", "Users by churn-risk tier in the partitions this worker holds.", ["tier"])
CHURN_ALERTS = Counter("pulse_churn_alerts_total", "Churn alerts raised (a user's tier rose), by the new tier.", ["tier"])
PUBLISH_REJECTED = Counter(
    "pulse_publish_rejected_total", "Output records Kafka refused for good (dead-lettered as publish_rejected)."
)
OUTPUT_DROPPED = Counter(
    "pulse_output_dropped_total", "Output records refused for good whose dead letter was refused too (logged, then dropped)."
)
KAFKA = kafka_dependency("worker")  # pulse_dependency_up{process="worker", dependency="kafka"}
WORKER_READY = Gauge("pulse_worker_ready", "1 while the worker holds its partitions with their state restored.")
SECONDS_SINCE_PROGRESS = Gauge(
    "pulse_worker_seconds_since_progress", "Seconds since the worker last processed a record (as of the last /healthz)."
)
STALLED = Gauge("pulse_worker_stalled", "1 while /healthz would answer 503 (stalled), computed at each scrape.")
NEWEST_PROCESSED = Gauge(
    "pulse_worker_newest_processed_timestamp_seconds",
    "Kafka timestamp of the newest record (event or tick) processed, by partition; time() minus it is how far behind.",
    ["partition"],
)
STATE_RESTORE_SECONDS = Histogram(
    "pulse_state_restore_seconds", "Time to read the state of partitions handed to the worker back from the changelog.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
TIMER_INDEX_SECONDS = Histogram(
    "pulse_timer_index_seconds", "Time to rebuild a partition's timers from its state after an assignment.",
    buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
)
