"""Read-only HTTP access to ClickHouse through the sink process.

The embedded engine can be opened by one process only, so BI-style readers and
``pulse query`` ask the sink. Every query runs with ClickHouse's ``readonly=1``; one
statement per request.

- ``GET /query?sql=...`` or ``POST /query`` (body = SQL): ``{"columns": [...], "rows": [[...]]}``
- ``GET /healthz``: ``{"status": "ok"}``
- ``GET /metrics``: the sink's Prometheus metrics
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import orjson
from clickhouse_connect.driver.client import Client
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

MAX_SQL_BYTES = 64 * 1024


class QueryServer:
    """A small threaded HTTP server over one clickhouse-connect client, serialised by a lock."""

    def __init__(self, client: Client, port: int, host: str = "127.0.0.1") -> None:
        self._client = client
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="query-server", daemon=True)

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

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                if url.path == "/healthz":
                    self._reply(200, b'{"status":"ok"}')
                elif url.path == "/metrics":
                    self._reply(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif url.path == "/query":
                    self._reply(*server.run_query(parse_qs(url.query).get("sql", [""])[0]))
                else:
                    self._reply(404, b'{"error":"not found"}')

            def do_POST(self) -> None:  # noqa: N802
                if urlsplit(self.path).path != "/query":
                    self._reply(404, b'{"error":"not found"}')
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_SQL_BYTES:
                    self._reply(413, b'{"error":"query too large"}')
                    return
                self._reply(*server.run_query(self.rfile.read(length).decode(errors="replace")))

            def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("query server: " + format, *args)

        return Handler


def _jsonable(value: object) -> object:
    """Values orjson does not know (Decimal, UUID, IP addresses, bytes) as text."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)
