"""The worker's HTTP status page: ``/metrics``, ``/healthz`` (alive) and ``/readyz`` (ready).

A thread of its own, so a worker whose event loop is stuck still answers, and answers 503.
It reads only what the event loop last published to :class:`stream_jobs.health.WorkerHealth`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pulse.http_handler import QuietHandler
from stream_jobs import metrics
from stream_jobs.health import WorkerHealth


class StatusServer:
    """Serves the worker's health and metrics on ``host:port`` (``PULSE_BIND_HOST``, 127.0.0.1 by default)."""

    def __init__(self, health: WorkerHealth, port: int, host: str = "127.0.0.1") -> None:
        self._health = health
        self._server = ThreadingHTTPServer((host, port), _handler({"/healthz": self._alive, "/readyz": self._ready}))
        self._server.daemon_threads = True
        metrics.STALLED.set_function(lambda: 0.0 if health.verdict(time.monotonic()).alive else 1.0)

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, name="status-server", daemon=True).start()

    def _alive(self) -> tuple[int, dict[str, object]]:
        verdict = self._health.verdict(time.monotonic())
        metrics.SECONDS_SINCE_PROGRESS.set(verdict.seconds_since_progress)
        status = "ok" if verdict.alive else "stalled"
        return (200 if verdict.alive else 503), {"status": status, "reason": verdict.reason, "lag": sum(self._health.lag.values())}

    def _ready(self) -> tuple[int, dict[str, object]]:
        ready = self._health.ready
        return (200 if ready else 503), {"status": "ready" if ready else "starting", "partitions": sorted(self._health.partitions)}


def _handler(pages: dict[str, Callable[[], tuple[int, dict[str, object]]]]) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self.reply(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif path in pages:
                status, body = pages[path]()
                self.reply(status, orjson.dumps(body))
            else:
                self.reply(404, b'{"error":"not found"}')

    return Handler
