"""The HTTP collector (``pulse collect``): events from web pages, apps and back-ends into Kafka.

``POST /v1/events`` takes one event, a JSON array or NDJSON, up to ``max_events`` events
and ``max_body_bytes``. It answers only once the outcome is durable:

- 202 ``{"accepted": n}``: every event is in Kafka (delivery confirmed, acks=all);
- 400 ``{"accepted": n, "rejected": m, "errors": [{"index", "reason", "problems"}]}``: the
  valid events of the batch are in Kafka all the same, the invalid ones in the dead-letter topic;
- 401 without a configured write key (``Authorization: Bearer <key>``), 413 when too large,
  429 with ``Retry-After`` when the key is over its rate (see :mod:`producers.segment_keys`);
- 503 with ``Retry-After`` when Kafka is unreachable or the producer's queue is full.
  Part of such a batch may have reached Kafka: a client retries the whole batch and the
  pipeline drops the resent ``event_id``s, so nothing accepted is ever lost or counted twice.

Each event is stamped with ``server_received_at``; events further in the future than the
allowed skew are refused (``future_timestamp``). ``GET /healthz``, ``GET /metrics`` and
``GET /openapi.json`` (both APIs described, :mod:`producers.openapi`) too, and Segment's HTTP
tracking API beside ``/v1/events`` (:mod:`producers.segment_api`), publishing the same way.

A refused event's dead letter is named after the request body and the event's index in it
(:func:`letter_id`), so the retry of a batch after a 503 resends letters the
``dead_letters`` table folds into one instead of adding a copy per attempt.

Real traffic is many small requests at once, and the worker pays a fixed cost per Kafka
record, so the events of concurrent requests are packed into shared records, one open record
per partition, produced when full or ``collector.linger_ms`` after its first event
(:class:`~producers.packing.RequestPacker` keeps the books). A request is answered once every
record holding one of its events, and each of its dead letters, is confirmed; 503 as soon as
one of them is refused or does not fit in the producer's queue.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from producers.event_producer import EventProducer
from producers.openapi import openapi_document
from producers.packing import PackedRecord, RequestPacker, Settled
from producers.segment_api import SegmentApi
from producers.segment_keys import KeyRing
from producers.segment_request import ROUTES
from pulse.contract import Event, Invalid
from pulse.dead_letter import DeadLetter, now_ms
from pulse.settings import Settings
from pulse.wire import Undecodable, decode_record

REQUESTS = Counter(
    "pulse_collector_requests_total",
    "HTTP requests to the collector, by API (route) and status code.",
    ["api", "status"],
)
EVENTS = Counter(
    "pulse_collector_events_total", "Events received by the collector, by API and outcome.", ["api", "outcome"]
)
EVENTS_API = "/v1/events"
SOURCE = "collector"


class Collector:
    """The aiohttp application around one :class:`EventProducer`, polled by a background thread."""

    def __init__(self, settings: Settings, producer: EventProducer) -> None:
        self._settings = settings
        self._tuning = settings.collector
        self._producer = producer
        self._polling = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="collector-delivery", daemon=True)
        self._packer = RequestPacker(settings.producer, self._tuning.linger_ms / 1000)
        self._answers: dict[int, asyncio.Future[str | None]] = {}  # by request id, until answered
        self._linger_timer: asyncio.TimerHandle | None = None
        self._keys = KeyRing.from_settings(settings)
        self._segment = SegmentApi(self._keys, producer.check, self._publish, self._tuning.retry_after_s, EVENTS)
        self._openapi = orjson.dumps(openapi_document(settings))

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self._tuning.max_body_bytes)
        app.router.add_post(EVENTS_API, self.post_events)
        for route in ROUTES:
            app.router.add_post(f"/v1/{route}", self.post_segment)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/openapi.json", self.openapi)
        app.on_startup.append(self._start_polling)
        app.on_cleanup.append(self._stop_polling)
        return app

    async def post_events(self, request: web.Request) -> web.Response:
        response = await self._handle(request)
        REQUESTS.labels(EVENTS_API, str(response.status)).inc()
        return response

    async def post_segment(self, request: web.Request) -> web.Response:
        response = await self._segment.handle(request)
        REQUESTS.labels(request.path, str(response.status)).inc()
        return response

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")

    # --- the request ------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        key = self._keys.find(_bearer(request.headers.get("Authorization", "")))
        if key is None and self._keys.required:
            return _json(401, {"error": "missing or unknown write key (Authorization: Bearer <key>)"})
        if (request.content_length or 0) > self._tuning.max_body_bytes:
            return _too_large(f"body over {self._tuning.max_body_bytes} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _too_large(f"body over {self._tuning.max_body_bytes} bytes")
        except web.RequestPayloadError:
            return _json(400, {"error": f"the body does not decode as {request.headers.get('Content-Encoding')}"})
        items = list(decode_record(body))
        if not items:
            return _json(400, {"error": "no events in the body"})
        if len(items) > self._tuning.max_events:
            return _too_large(f"{len(items)} events; at most {self._tuning.max_events} per request")
        if key is not None and (wait := self._keys.admit(key, len(items))):
            EVENTS.labels(EVENTS_API, "limited").inc(len(items))
            return _json(429, {"error": f"write key {key.name} is over its rate"}, {"Retry-After": str(wait)})
        events, letters, errors = self._check(body, items)
        error = await self._publish(events, letters)
        if error is not None:
            EVENTS.labels(EVENTS_API, "retry").inc(len(items))
            return _json(
                503, {"error": f"Kafka unavailable: {error}"}, {"Retry-After": str(self._tuning.retry_after_s)}
            )
        EVENTS.labels(EVENTS_API, "accepted").inc(len(events))
        EVENTS.labels(EVENTS_API, "rejected").inc(len(letters))
        if errors:
            return _json(400, {"accepted": len(events), "rejected": len(letters), "errors": errors})
        return _json(202, {"accepted": len(events)})

    def _check(
        self, body: bytes, items: list[tuple[bytes, Any]]
    ) -> tuple[list[Event], list[DeadLetter], list[dict[str, Any]]]:
        """Stamp, validate and split the batch; problems are reported by event index."""
        received_at = now_ms()
        body_id = body_digest(body)
        events: list[Event] = []
        letters: list[DeadLetter] = []
        errors: list[dict[str, Any]] = []
        for index, (raw, item) in enumerate(items):
            named = letter_id(body_id, index)
            if isinstance(item, Undecodable):
                letter = DeadLetter.failed(raw, "bad_json", f"not JSON: {item.error}", SOURCE, named)
            else:
                if isinstance(item, dict):
                    item["server_received_at"] = received_at
                checked = self._producer.check(item)
                if not isinstance(checked, Invalid):
                    events.append(checked)
                    continue
                letter = DeadLetter.refused(raw, checked, SOURCE, named)
            letters.append(letter)
            errors.append({"index": index, "reason": letter.reason, "problems": list(letter.errors)})
        return events, letters, errors

    async def _publish(self, events: list[Event], letters: list[DeadLetter]) -> str | None:
        """Pack the events with those of concurrent requests, send the dead letters, and wait for
        the broker's verdict on every record holding any of them: None, or the error."""
        loop = asyncio.get_running_loop()
        lines = [self._producer.encode(event) for event in events]
        request, full = self._packer.pack(lines, len(letters), loop.time())
        answer = self._answers[request] = loop.create_future()
        try:
            self._send_letters(request, letters)
            self._produce([*full, *self._packer.due(loop.time())])
            self._arm_linger_timer()
            return await asyncio.wait_for(answer, self._tuning.delivery_timeout_s + 1.0)
        except TimeoutError:
            return f"no delivery confirmation within {self._tuning.delivery_timeout_s:.0f}s"
        finally:
            del self._answers[request]

    # --- records and their outcomes (on the event loop) ---------------------------------

    def _send_letters(self, request: int, letters: list[DeadLetter]) -> None:
        loop = asyncio.get_running_loop()
        for letter in letters:
            self._producer.dead_letter_now(
                letter, lambda error: loop.call_soon_threadsafe(self._letter_settled, request, error)
            )

    def _produce(self, records: list[PackedRecord]) -> None:
        loop = asyncio.get_running_loop()
        for record in records:
            self._producer.produce_now(
                record, lambda error, record=record: loop.call_soon_threadsafe(self._record_settled, record, error)
            )

    def _arm_linger_timer(self) -> None:
        """Wake up when the oldest open record is due; an armed timer is never later than that."""
        due = self._packer.next_due()
        if due is not None and self._linger_timer is None:
            self._linger_timer = asyncio.get_running_loop().call_at(due, self._on_linger)

    def _on_linger(self) -> None:
        self._linger_timer = None
        self._produce(self._packer.due(asyncio.get_running_loop().time()))
        self._arm_linger_timer()

    def _record_settled(self, record: PackedRecord, error: str | None) -> None:
        self._answer(self._packer.record_settled(record, error))

    def _letter_settled(self, request: int, error: str | None) -> None:
        self._answer(self._packer.letter_settled(request, error))

    def _answer(self, outcomes: list[Settled]) -> None:
        for settled in outcomes:
            answer = self._answers.get(settled.request)
            if answer is not None and not answer.done():  # gone or cancelled: the request timed out
                answer.set_result(settled.error)

    # --- delivery callbacks -----------------------------------------------------------

    async def _start_polling(self, _app: web.Application) -> None:
        self._polling.set()
        self._poller.start()

    async def _stop_polling(self, _app: web.Application) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        self._produce(self._packer.drain())
        self._polling.clear()
        self._poller.join()
        self._producer.flush()

    def _poll(self) -> None:
        while self._polling.is_set():
            self._producer.poll(0.1)


def body_digest(body: bytes) -> str:
    """16 hex digits naming a request body: a retry resends the same bytes, so it gets the same name."""
    return hashlib.blake2b(body, digest_size=8).hexdigest()


def letter_id(body_id: str, index: int) -> str:
    """The dead-letter id of the event at ``index`` of the body named ``body_id`` (see :func:`body_digest`)."""
    return f"{SOURCE}:{body_id}#{index}"


def _bearer(authorization: str) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, else None."""
    scheme, _, key = authorization.partition(" ")
    return (key.strip() or None) if scheme.lower() == "bearer" else None


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _too_large(message: str) -> web.Response:
    return _json(413, {"error": message})


def run_collector(settings: Settings) -> None:
    """Serve the collector on ``PULSE_BIND_HOST:PULSE_COLLECTOR_PORT`` until SIGINT or SIGTERM."""
    host = settings.bind_host
    delivery_ms = int(settings.collector.delivery_timeout_s * 1000)
    # the collector packs records itself (collector.linger_ms): librdkafka's own linger would only delay each answer
    config = {"message.timeout.ms": delivery_ms, "linger.ms": 1}
    producer = EventProducer.from_settings(settings, config=config, process="collector")
    app = Collector(settings, producer).application()
    print(f"collector on http://{host}:{settings.collector_port}/v1/events and Segment's /v1/batch", flush=True)
    web.run_app(app, host=host, port=settings.collector_port, print=None)
