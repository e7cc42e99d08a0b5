"""The base of the small status pages the worker and the sink serve with ``http.server``."""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler

log = logging.getLogger(__name__)


class QuietHandler(BaseHTTPRequestHandler):
    """Answers with a complete body (status, type, length) and logs requests at debug, not to stderr."""

    def reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's naming)
        log.debug("%s: " + format, type(self).__qualname__, *args)
