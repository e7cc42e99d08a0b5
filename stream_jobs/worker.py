"""Running the stream jobs as a worker process (``pulse worker``)."""

from __future__ import annotations

import time

import faust

from pulse.settings import Settings
from stream_jobs import metrics
from stream_jobs.aiokafka_outages import divert_aiokafka
from stream_jobs.app import create_app
from stream_jobs.health import WorkerHealth
from stream_jobs.status_server import StatusServer


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz``, and run every agent until SIGINT or SIGTERM."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level of its datadir
    health = WorkerHealth(settings.worker.stall_seconds, started_at=time.monotonic())
    StatusServer(health, settings.worker_metrics_port, settings.bind_host).start()
    divert_aiokafka(metrics.KAFKA)
    app = create_app(settings, health)
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
