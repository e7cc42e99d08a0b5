"""Running the sink as a process (``pulse sink``): migrations, query server, consumer loop."""

from __future__ import annotations

import logging
import signal
import threading
import time

from clickhouse_connect.driver.client import Client

from pulse.settings import Settings
from sinks import metrics
from sinks.clickhouse import connect
from sinks.clickhouse_http import ClickHouseHttp, Credentials, ReadOnlyEngine
from sinks.liveness import Liveness
from sinks.migrations import migrate
from sinks.query_server import QueryServer
from sinks.sink import ClickHouseSink
from sinks.writer import BatchWriter

log = logging.getLogger(__name__)


def run_sink(settings: Settings) -> None:
    """Apply pending migrations, serve queries, health and metrics, and consume until SIGTERM/SIGINT."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    writer_client = connect(settings.clickhouse_dsn)
    for migration in migrate(writer_client):
        log.info("applied migration %04d_%s", migration.version, migration.name)
    liveness = Liveness(settings.sink.stall_seconds, time.monotonic())
    metrics.SECONDS_SINCE_PROGRESS.set_function(lambda: liveness.seconds_since_progress(time.monotonic()))
    metrics.STALLED.set_function(lambda: float(liveness.health(time.monotonic()).stalled))
    reader_client = connect(settings.clickhouse_dsn)
    server = QueryServer(
        reader_client, settings.sink_port, health=lambda: liveness.health(time.monotonic()),
        host=settings.bind_host, clickhouse=_clickhouse_http(settings, reader_client),
    )
    server.start()
    log.info("sink started: %s -> %s; queries and /metrics on %s", settings.bootstrap, settings.clickhouse_dsn, settings.sink_url)
    writer = BatchWriter(writer_client, settings.sink, stop, on_insert=lambda: liveness.progressed(time.monotonic()))
    try:
        ClickHouseSink(settings, writer, liveness, stop).run()
    finally:
        server.stop()
        log.info("sink stopped")


def _clickhouse_http(settings: Settings, reader_client: Client) -> ClickHouseHttp | None:
    """ClickHouse's HTTP interface over the embedded engine; with a server, readers go to it directly."""
    if not settings.embedded_clickhouse:
        return None
    credentials = Credentials(settings.sink.reader_user, settings.sink.reader_password)
    return ClickHouseHttp(ReadOnlyEngine.beside(reader_client), credentials)
