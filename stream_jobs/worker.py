"""Running the stream jobs as a worker process (``pulse worker``)."""

from __future__ import annotations

import faust
from prometheus_client import start_http_server

from pulse.settings import Settings
from stream_jobs.app import create_app


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Serve ``/metrics`` and run every agent until SIGINT or SIGTERM."""
    start_http_server(settings.worker_metrics_port, addr="127.0.0.1")
    app = create_app(settings)
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
