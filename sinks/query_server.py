"""Read-only HTTP access to ClickHouse through the sink process.

The embedded engine can be opened by one process only, so BI-style readers and
``pulse query`` ask the sink. Every query runs with ClickHouse's ``readonly=1``; one
statement per request.

- ``GET /query?sql=...`` or ``POST /query`` (body = SQL): ``{"columns": [...], "rows": [[...]]}``
- ``GET /healthz``: 200 ``{"status": "ok", ...}``, or 503 ``{"status": "stalled", ...}`` when the
  sink holds lag and made no progress for ``sink.stall_seconds`` (see :mod:`sinks.liveness`),
  with ``seconds_since_progress`` and ``lag`` either way
- ``GET /metrics``: the sink's Prometheus metrics
- ``POST /erase`` (body ``{"ids": [...], "reference": "...", "requested_at_ms": ...}``): the one write
  readers may ask for, ``pulse forget``'s deletion of a person's rows (:mod:`sinks.erasure`), since
  no other process can open the embedded engine; answers what was removed
- ``GET``/``POST /`` and ``GET /ping``: ClickHouse's own HTTP interface, for Grafana's ClickHouse data
  source and clickhouse-connect, when given a :class:`~sinks.clickhouse_http.ClickHouseHttp`
  (authenticated, read-only, confined to the pipeline's database: see :mod:`sinks.clickhouse_http`)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import orjson
from clickhouse_connect.driver.client import Client
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pulse.http_handler import QuietHandler
from sinks.clickhouse_http import ClickHouseHttp, Reply, Request
from sinks.erasure import erase
from sinks.liveness import Health

log = logging.getLogger(__name__)

MAX_SQL_BYTES = 64 * 1024
CLICKHOUSE_PATHS = frozenset({"/", "/ping"})


class QueryServer:
    """A small threaded HTTP server over one clickhouse-connect client, serialised by a lock."""

    def __init__(
        self, client: Client, port: int, health: Callable[[], Health], host: str = "127.0.0.1",
        clickhouse: ClickHouseHttp | None = None,
    ) -> None:
        self._client = client
        self._health = health
        self._clickhouse = clickhouse
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="query-server", daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on (the one asked for, or the one the system chose for 0)."""
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def run_query(self, sql: str) -> tuple[int, bytes]:
        """Status code and JSON body for one read-only statement."""
        statement = sql.strip().rstrip(";").strip()
        if not statement:
            return 400, orjson.dumps({"error": "empty query"})
        if ";" in statement:
            return 400, orjson.dumps({"error": "one statement per request"})
        try:
            with self._lock:
                result = self._client.query(statement, settings={"readonly": 1})
                body = {"columns": list(result.column_names), "rows": result.result_rows}
        except Exception as exc:  # the reader gets ClickHouse's own message
            return 400, orjson.dumps({"error": str(exc)})
        return 200, orjson.dumps(body, default=_jsonable)

    def erase(self, body: bytes) -> tuple[int, bytes]:
        """Status code and JSON body for an erasure request (see :func:`sinks.erasure.erase`)."""
        try:
            request = orjson.loads(body)
            ids = request["ids"]
            if not (isinstance(ids, list) and ids and all(isinstance(id_, str) and id_ for id_ in ids)):
                raise ValueError("ids: a non-empty list of ids")
            requested_at = datetime.fromtimestamp(request["requested_at_ms"] / 1000, UTC)
            reference = str(request.get("reference", ""))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return 400, orjson.dumps({"error": f"expected {{ids, requested_at_ms, reference}}: {exc}"})
        try:
            with self._lock:
                erasure = erase(self._client, ids, reference, requested_at)
        except Exception as exc:  # ClickHouse's own message for the caller, who may retry: deletes are idempotent
            return 500, orjson.dumps({"error": str(exc)})
        return 200, orjson.dumps(asdict(erasure))

    def healthz(self) -> tuple[int, bytes]:
        """200 while the sink keeps up or idles without lag, 503 once it is stalled."""
        health = self._health()
        return (503 if health.stalled else 200), orjson.dumps(health.body())

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                clickhouse = server._clickhouse
                if url.path in CLICKHOUSE_PATHS and clickhouse is not None:
                    self.clickhouse(clickhouse, b"")
                elif url.path == "/healthz":
                    self.reply(*server.healthz())
                elif url.path == "/metrics":
                    self.reply(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif url.path == "/query":
                    self.reply(*server.run_query(parse_qs(url.query).get("sql", [""])[0]))
                else:
                    self.reply(404, b'{"error":"not found"}')

            def do_POST(self) -> None:  # noqa: N802
                path = urlsplit(self.path).path
                clickhouse = server._clickhouse
                if path == "/" and clickhouse is not None:
                    body = self.read_body()
                    if body is not None:
                        self.clickhouse(clickhouse, body)
                elif path == "/query":
                    body = self.read_body()
                    if body is not None:
                        self.reply(*server.run_query(body.decode(errors="replace")))
                elif path == "/erase":
                    body = self.read_body()
                    if body is not None:
                        self.reply(*server.erase(body))
                else:
                    self.reply(404, b'{"error":"not found"}')

            def read_body(self) -> bytes | None:
                """The request body, or None after answering 413 for one larger than a query may be."""
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_SQL_BYTES:
                    self.reply(413, b'{"error":"query too large"}')
                    return None
                return self.rfile.read(length)

            def clickhouse(self, clickhouse: ClickHouseHttp, body: bytes) -> None:
                url = urlsplit(self.path)
                headers = {name.lower(): value for name, value in self.headers.items()}
                self.send(clickhouse.handle(Request(self.command, url.path, url.query, headers, body)))

            def send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

        return Handler


def _jsonable(value: object) -> object:
    """Values orjson does not know (Decimal, UUID, IP addresses, bytes) as text."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)
