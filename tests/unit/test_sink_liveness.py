"""The sink's stall rule on a fake clock, and what ``/healthz`` answers with it."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import orjson
import pytest

from sinks.liveness import Health, Liveness
from sinks.query_server import QueryServer

STALL_S = 60.0


def test_idle_without_lag_is_healthy_forever() -> None:
    liveness = Liveness(STALL_S, now=0.0)
    liveness.record_lag(0, now=3_600.0)
    assert liveness.health(3_600.0) == Health(stalled=False, seconds_since_progress=3_600.0, lag=0)


def test_lag_without_progress_stalls_after_the_limit() -> None:
    liveness = Liveness(STALL_S, now=0.0)
    liveness.progressed(now=10.0)
    liveness.record_lag(500, now=10.0)  # e.g. a batch held in retries through a ClickHouse outage
    assert not liveness.health(69.9).stalled
    assert liveness.health(70.0) == Health(stalled=True, seconds_since_progress=60.0, lag=500)
    liveness.progressed(now=75.0)
    assert not liveness.health(75.0).stalled


def test_lag_arriving_after_a_long_idle_gets_its_own_time() -> None:
    liveness = Liveness(STALL_S, now=0.0)
    liveness.record_lag(20, now=3_600.0)
    assert not liveness.health(3_600.5).stalled
    assert liveness.health(3_660.0).stalled
    liveness.record_lag(0, now=3_661.0)  # caught up
    assert not liveness.health(3_661.0).stalled


@pytest.fixture
def server() -> Iterator[tuple[QueryServer, list[Health]]]:
    answers = [Health(stalled=False, seconds_since_progress=1.0, lag=0)]
    query_server = QueryServer(None, 0, lambda: answers[-1])  # type: ignore[arg-type]  # /healthz needs no client
    query_server.start()
    try:
        yield query_server, answers
    finally:
        query_server.stop()


def healthz(query_server: QueryServer) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{query_server.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


def test_healthz_answers_503_once_stalled(server: tuple[QueryServer, list[Health]]) -> None:
    query_server, answers = server
    assert healthz(query_server) == (200, {"status": "ok", "seconds_since_progress": 1.0, "lag": 0})
    answers.append(Health(stalled=True, seconds_since_progress=61.25, lag=42))
    assert healthz(query_server) == (503, {"status": "stalled", "seconds_since_progress": 61.25, "lag": 42})
