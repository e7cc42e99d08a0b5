"""Prometheus metrics of the stream jobs (served on ``PULSE_WORKER_METRICS_PORT``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS_IN = Counter("pulse_records_in_total", "Kafka records read from the events topic.")
EVENTS_IN = Counter("pulse_events_in_total", "Events read from the events topic (one per NDJSON line).")
EVENTS_VALID = Counter("pulse_events_valid_total", "Events that passed validation (new ones, not resends).")
EVENTS_INVALID = Counter("pulse_events_invalid_total", "Events refused and dead-lettered, by reason.", ["reason"])
EVENTS_DUPLICATE = Counter("pulse_events_duplicate_total", "Valid events dropped as resent duplicates.")
PROCESSING_ERRORS = Counter(
    "pulse_processing_errors_total", "Unexpected errors while handling a record (the record was dead-lettered whole)."
)
PUBLISH_FAILURES = Counter("pulse_publish_failures_total", "Failed attempts to publish a record's output (retried).")
LATE_EVENTS = Counter("pulse_late_events_total", "Events too far behind the watermark to be placed in a session.")
OPEN_SESSIONS = Gauge("pulse_open_sessions", "Sessions open in the partitions this worker holds.")
SESSIONS_CLOSED = Counter("pulse_sessions_closed_total", "Sessions closed by the watermark.")
SESSION_DURATION = Histogram(
    "pulse_session_duration_seconds",
    "Duration of closed sessions (last event minus first).",
    buckets=(0, 10, 30, 60, 180, 600, 1800, 3600, 4 * 3600, 24 * 3600),
)
WORKER_STARTED = Gauge("pulse_worker_started", "1 once the Faust app has started its agents.")
