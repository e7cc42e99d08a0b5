"""Prometheus metrics of the stream jobs (served on ``PULSE_WORKER_METRICS_PORT``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_IN = Counter("pulse_events_in_total", "Events read from the events topic (one per NDJSON line).")
EVENTS_VALID = Counter("pulse_events_valid_total", "Events that passed validation.")
EVENTS_INVALID = Counter("pulse_events_invalid_total", "Events refused and dead-lettered, by reason.", ["reason"])
EVENTS_DUPLICATE = Counter("pulse_events_duplicate_total", "Valid events dropped as resent duplicates.")
RECORDS_IN = Counter("pulse_records_in_total", "Kafka records read from the events topic.")
PROCESSING_ERRORS = Counter(
    "pulse_processing_errors_total", "Unexpected errors while handling a record (its events were dead-lettered)."
)
WORKER_STARTED = Gauge("pulse_worker_started", "1 once the Faust app has started its agents.")
