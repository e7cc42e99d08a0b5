"""Running the stream jobs as a worker process (``pulse worker``)."""

from __future__ import annotations

import gc
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
    settle_garbage_collector()
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()


# Objects allocated (less freed) between two young collections, then young collections between two older ones
GC_THRESHOLDS = (100_000, 20, 20)


def settle_garbage_collector() -> None:
    """Keep the garbage collector from costing a third of the worker's time.

    Every event leaves a few short-lived dicts and tuples behind, so at Python's default
    thresholds (700, 10, 10) a young collection ran every few events and a full one, walking
    every module, class and function loaded at start-up, every few thousand: together about
    35 % of a worker's time on a backlog. Freezing what start-up created takes it out of every
    collection for good, and larger thresholds collect in fewer, larger rounds. The worker
    makes few reference cycles (the asyncio machinery), so what waits longer to be freed is small.

    The young threshold is high because a collection walks every object that survived since
    the last one, and the runner's cache of decoded state (:mod:`stream_jobs.state_cache`)
    makes survivors of some twenty objects per user it holds: with a collection every 20,000
    objects, new users' cached state was walked before being evicted, 17 % of the worker's time
    on new users; collecting every 100,000, most of it is evicted unwalked (2 %, 0.2 s pauses).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
