"""Looking at the running stack for ``pulse status`` and ``pulse top``: pid files, status pages, Kafka.

A probe never fails because a stage is down: a page that does not answer is ``None`` and a
broker that does not answer leaves the lag unknown, so a view can be drawn whatever is running.
Stages are found by their configured ports, so this works the same for a stack ``pulse up``
started (pids come from its pid files) and for stages started otherwise, next to an external
broker. Extra workers (:func:`devstack.stack.add_worker`) have a port of their own, read from the
environment they were started with.
"""

from __future__ import annotations

import contextlib
import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import orjson
from confluent_kafka import KafkaException

from devstack.processes import environment
from devstack.stack import extra_workers, local_kafka, running_pid
from devstack.status_view import BrokerProbe, GroupLag, Metrics, Page, Snapshot, StageProbe, View, build_view
from ops.consumer_lag import partition_lags
from pulse.settings import Settings
from pulse.topics import Topics

HTTP_TIMEOUT_S = 1.0  # a stage slower than this to answer its status page is as good as down
KAFKA_TIMEOUT_S = 2.0
RATE_SAMPLE_S = 1.0  # how far apart `pulse status` reads the counters it computes rates from


def views(settings: Settings, interval_s: float) -> Iterator[View]:
    """Views of the stack every ``interval_s`` seconds, each with the rates since the one before.

    The first comes ``RATE_SAMPLE_S`` (or ``interval_s``, if shorter) after a first look, so it
    has rates too: ``pulse status`` is the first of these.
    """
    before = snapshot(settings)
    next_at = before.at + min(interval_s, RATE_SAMPLE_S)
    while True:
        time.sleep(max(0.0, next_at - time.monotonic()))
        now = snapshot(settings)
        yield build_view(now, before)
        before, next_at = now, now.at + interval_s


def snapshot(settings: Settings) -> Snapshot:
    """Every stage's pages, the broker and the consumer groups' lag, as of now."""
    at = time.monotonic()
    stages = tuple(_probe(name, kind, port, pid) for name, kind, port, pid in _stages(settings))
    broker, groups = _kafka(settings)
    return Snapshot(at, broker, stages, groups)


def _stages(settings: Settings) -> list[tuple[str, str, int | None, int | None]]:
    """(name, kind, status port, pid) of each pipeline process, in the order events flow through them."""
    workers = [("worker", settings.worker_metrics_port)]
    for name in extra_workers(settings):
        pid = running_pid(settings, name)
        port = environment(pid).get("PULSE_WORKER_METRICS_PORT") if pid else None
        workers.append((name, int(port) if port else None))
    return [
        ("collector", "collector", settings.collector_port, running_pid(settings, "collector")),
        *((name, "worker", port, running_pid(settings, name)) for name, port in workers),
        ("sink", "sink", settings.sink_port, running_pid(settings, "sink")),
    ]


def _probe(name: str, kind: str, port: int | None, pid: int | None) -> StageProbe:
    if port is None:
        return StageProbe(name, kind, "", pid)
    address = f"127.0.0.1:{port}"
    health = _page(f"http://{address}/healthz")
    if health is None:  # nothing listens: the other pages would only wait for their timeouts too
        return StageProbe(name, kind, address, pid)
    ready = _page(f"http://{address}/readyz") if kind == "worker" else None
    return StageProbe(name, kind, address, pid, health, ready, _metrics(f"http://{address}/metrics"))


def _page(url: str) -> Page | None:
    answer = _get(url)
    if answer is None:
        return None
    status, body = answer
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = {"text": body.decode(errors="replace")}
    return Page(status, parsed if isinstance(parsed, dict) else {"value": parsed})


def _metrics(url: str) -> Metrics | None:
    answer = _get(url)
    if answer is None or answer[0] != 200:
        return None
    try:
        return Metrics.parse(answer[1].decode(errors="replace"))
    except ValueError:
        return None


def _get(url: str) -> tuple[int, bytes] | None:
    """Status and body of ``url``, a 503's included; ``None`` when nothing answers in time."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (OSError, http.client.HTTPException):
        return None


def _kafka(settings: Settings) -> tuple[BrokerProbe, tuple[GroupLag, ...]]:
    """The broker (the local one's pid from its pid file) and the lag of the worker's and the sink's groups."""
    pid, answering = None, True
    if settings.uses_local_kafka:
        state = local_kafka(settings).status()
        pid, answering = state.pid, state.answering
    topics = Topics.with_prefix(settings.topic_prefix)
    wanted = (("worker", settings.worker_group, (topics.events,)), ("sink", settings.sink_group, topics.sink_inputs()))
    lags: dict[str, dict[tuple[str, int], int]] | None = None
    if answering:  # else the local broker is down: no need to wait for Kafka's timeouts to learn it
        with contextlib.suppress(KafkaException, TimeoutError):  # an external broker that is down
            lags = {
                stage: partition_lags(settings.bootstrap, group, of, KAFKA_TIMEOUT_S) for stage, group, of in wanted
            }
    groups = tuple(GroupLag(stage, group, lags[stage] if lags else None) for stage, group, _ in wanted)
    return BrokerProbe(settings.bootstrap, settings.uses_local_kafka, pid, lags is not None), groups
