"""Live traffic through the HTTP collector: many clients posting small batches at a steady total rate.

Real traffic reaches the collector as many small requests at once (pages and apps posting a
few events each), which is what its packing of concurrent requests into shared records is
for; one producer in the benchmark's process would skip that path entirely.

The load is open: request ``k`` is due ``k * batch / rate`` seconds after the start, whoever
sends it. ``clients`` keep-alive connections take the due requests in turn; a request's
events are stamped (``ts``) when it is sent, so ``inserted_at - ts`` is send-to-queryable.
While every client waits on an answer (the collector answers once Kafka confirmed), due
requests wait, the rate sent falls below the rate asked for, and the capacity search does
not count the point as held.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from bench import pipeline
from pulse.settings import Settings

JSON = {"Content-Type": "application/json"}


@dataclass
class Posted:
    """How every request was answered; what the clients sent in the measured seconds (the warm-up left out)."""

    statuses: Counter[str] = field(default_factory=Counter)  # HTTP status, or the client error's name
    events: int = 0  # measured, in requests answered 2xx: the events expected in ClickHouse
    sent_events: int = 0
    first_ms: int = 0
    last_ms: int = 0
    answer_ms: list[float] = field(default_factory=list)

    def record(self, events: list[dict], status: str, answer_ms: float, measured: bool) -> None:
        self.statuses[status] += 1
        if not measured:
            return
        self.sent_events += len(events)
        self.first_ms = min(self.first_ms or events[0]["ts"], events[0]["ts"])  # recorded as answered, not as sent
        self.last_ms = max(self.last_ms, events[-1]["ts"])
        self.answer_ms.append(answer_ms)
        if status.startswith("2"):
            self.events += len(events)

    @property
    def failed(self) -> int:
        return sum(count for status, count in self.statuses.items() if not status.startswith("2"))


def collector_point(settings: Settings, rate: float, seconds: float, templates: Sequence[dict[str, Any]] | None,
                    warmup_s: float, clients: int, batch: int) -> dict[str, Any]:  # fmt: skip
    """Events posted to the collector at a steady ``rate`` -> rows queryable: p50/p95/p99/max in ms.

    As :func:`pipeline.live_point`, through ``POST /v1/events`` in requests of ``batch``
    events from ``clients`` connections; also the requests, warm-up included, and their statuses
    (every one should be 2xx; ``failed`` counts the others and client errors), the measured
    requests' answer times, and the share of a core the clients and the collector each used
    while sending: the clients near 1, the benchmark's own process set the pace; the collector
    near 1, it did.
    """
    pipeline.wait_worker_ready(settings.worker_metrics_port)
    run = uuid.uuid4().hex[:8]
    url = f"http://127.0.0.1:{settings.collector_port}/v1/events"
    timeout_s = settings.collector.delivery_timeout_s + 5.0
    collector = int((settings.run_dir / "collector.pid").read_text())
    started, clients_cpu, collector_cpu = time.perf_counter(), time.process_time(), pipeline.cpu_seconds(collector)
    posted = asyncio.run(_post(url, rate, seconds, warmup_s, clients, batch, templates, run, timeout_s))
    wall_s = time.perf_counter() - started
    cpu = {"client_cpu": (time.process_time() - clients_cpu) / wall_s,
           "collector_cpu": (pipeline.cpu_seconds(collector) - collector_cpu) / wall_s}  # fmt: skip
    figures = pipeline.settle(settings, f"lat-{run}-", posted.events)
    answers = sorted(posted.answer_ms)
    figures.update(
        achieved_eps=pipeline.achieved_eps(posted.sent_events, posted.first_ms, posted.last_ms),
        requests=posted.statuses.total(),
        failed=posted.failed,
        statuses=dict(posted.statuses),
        answer_p50_ms=answers[len(answers) // 2] if answers else None,
        answer_p99_ms=answers[int(len(answers) * 0.99)] if answers else None,
        **cpu,
    )
    return figures


async def _post(url: str, rate: float, seconds: float, warmup_s: float, clients: int, batch: int,
                templates: Sequence[dict[str, Any]] | None, run: str, timeout_s: float) -> Posted:  # fmt: skip
    loop = asyncio.get_running_loop()
    interval = batch / rate
    slots = int((warmup_s + seconds) / interval)
    posted = Posted()
    claimed = 0
    started = loop.time()
    measured_from = started + warmup_s  # by the time a request is sent: clients behind the rate still warm up first
    ends = measured_from + seconds  # requests still due then are not sent: the point lasts its seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal claimed
        while claimed < slots and loop.time() < ends:
            slot, claimed = claimed, claimed + 1  # one event loop: claiming needs no lock
            await asyncio.sleep(started + slot * interval - loop.time())
            measured = loop.time() >= measured_from
            events = [pipeline.live_event(slot * batch + i, "lat" if measured else "warm", run, templates)
                      for i in range(batch)]  # fmt: skip
            sent = time.perf_counter()
            try:
                async with session.post(url, data=orjson.dumps(events), headers=JSON) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            posted.record(events, status, (time.perf_counter() - sent) * 1000, measured)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return posted
