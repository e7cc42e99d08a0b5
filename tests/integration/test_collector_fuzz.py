"""The collector fuzzed from its own OpenAPI document by schemathesis, through a real broker, worker
and sink into ClickHouse: every answer is a documented one, the collector survives, and every event
it accepted is stored.

The document is read from the running collector's ``/openapi.json``. For every operation Hypothesis
draws :data:`EXAMPLES` requests that fit the document (positive) and, for the operations that take
a body, as many that do not (negative), derandomized so every run sends the same requests. Each is
sent with the collector's write key (so the requests reach the routes' logic rather than stopping at
401), gzipped when its generated ``Content-Encoding`` header says gzip (the document offers gzip: a
request that says so means it), and its answer is checked by schemathesis: no 5xx, and a documented
status code, content type, body and ``Retry-After`` header. (``GET /openapi.json`` itself is left out
by schemathesis, as the endpoint it read the document from.)

Which events were accepted, to look for in ClickHouse:

- ``/v1/events`` says which events of a body it refused (by index, in a 400) or that it took them all
  (202); the ``event_id`` of every other event was accepted.
- Segment's routes answer 200 once every call of the request is in Kafka: as an event, or, for a call
  the contract refuses, as a dead letter (a batch is answered 200 even then, as Segment's is). So each
  call of a 200 batch must be in ``events`` under its event id or in ``dead_letters`` byte for byte,
  and the call of a single-call route answered 200 must be in ``events``. A call's event id is its
  ``messageId``; a call without one gets an id made from the call and the write key's name
  (docs/segment.md). Segment's API does not require ``messageId``, so neither does the document, and
  the test computes those ids with the collector's own mapping (``producers.segment.to_event``, pure)
  instead of leaving such calls out of the count.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import BaseSchema, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ops.consumer_lag import wait_pipeline_caught_up
from ops.reader import run_query
from producers.openapi import NDJSON
from producers.segment import Arrival, to_event
from producers.segment_request import ROUTES, Envelope, read_body
from pulse.settings import Settings, hash_write_key
from pulse.wire import decode_record

pytestmark = pytest.mark.integration

EXAMPLES = 40  # per operation and generation mode: about a minute in all on two cores
KEY, KEY_NAME, KEY_SOURCE = "fuzz-write-key", "fuzz", "fuzzer"
SEGMENT_PATHS = {f"/v1/{route}" for route in ROUTES}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@schemathesis.serializer(NDJSON)
def ndjson(_context: schemathesis.SerializationContext, value: Any) -> bytes:
    """One event a line, as a client sends NDJSON; anything but a list (negative cases) as one JSON value.

    The standard library's encoder, as for the JSON bodies: orjson refuses integers beyond 64 bits,
    which the generator draws and a client may send."""
    values = value if isinstance(value, list) else [value]
    return b"\n".join(json.dumps(item, allow_nan=False).encode() for item in values)


@dataclasses.dataclass(frozen=True)
class Answered:
    """A request the collector answered: its path, its body as the collector read it (unzipped), and the answer."""

    path: str
    body: bytes
    status: int
    answer: Any


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The suite's isolated settings, with one write key (no rate limit) in a keys file."""
    keys = tmp_path / "write-keys.yaml"
    keys.write_text(f"keys:\n  - {{name: {KEY_NAME}, source: {KEY_SOURCE}, sha256: {hash_write_key(KEY)}}}\n")
    return dataclasses.replace(settings, write_keys_file=keys)


def test_fuzzed_requests_get_documented_answers_and_accepted_events_reach_clickhouse(pipeline: Settings) -> None:
    base = f"http://127.0.0.1:{pipeline.collector_port}"
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    answered = fuzz_every_operation(schema, base)

    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as health:
        assert health.status == 200
    posts = {path for path, item in schema.raw_schema["paths"].items() if "post" in item}
    assert {a.path for a in answered if a.status in (200, 202)} >= posts  # the document leads to valid requests

    wait_pipeline_caught_up(pipeline, 240.0)
    stored = {row[0] for row in run_query(pipeline, "SELECT event_id FROM events FINAL").rows}
    dead_letters = run_query(pipeline, f"SELECT raw FROM dead_letters FINAL WHERE source = 'segment:{KEY_NAME}'")
    letters = {row[0].encode() for row in dead_letters.rows}
    native = [event_id for a in answered if a.path == "/v1/events" for event_id in accepted_events(a)]
    assert [event_id for event_id in native if event_id not in stored] == []
    segment = [call for a in answered if a.path in SEGMENT_PATHS and a.status == 200 for call in segment_calls(a)]
    lost = [(raw, event_id) for raw, event_id, single in segment
            if event_id not in stored and (single or raw not in letters)]  # fmt: skip
    assert lost == []


def fuzz_every_operation(schema: BaseSchema, base: str) -> list[Answered]:
    """Every answer to the positive cases of each operation, and to the negative ones of those that take a body."""
    answered: list[Answered] = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if operation.body else [GenerationMode.POSITIVE]
            for mode in modes:
                fuzz(operation.as_strategy(mode, headers=write_key(operation.path)), base, session, answered.append)
    return answered


def fuzz(strategy: Any, base: str, session: requests.Session, record: Callable[[Answered], None]) -> None:
    """Send :data:`EXAMPLES` cases of ``strategy``, record each answer, and check it (raising on a failed check)."""

    @given(case=strategy)
    @hypothesis_settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,  # every answer waits for Kafka
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    def send(case: Case) -> None:
        request = case.as_transport_kwargs(base_url=base)
        if "json" in request:
            request["data"] = json.dumps(request.pop("json"), allow_nan=False).encode()
        body = request.get("data") or b""
        if request["headers"].get("Content-Encoding") == "gzip":
            request["data"] = gzip.compress(body)
        response = session.request(**request, timeout=30)
        record(Answered(case.path, body, response.status_code, _json_or_none(response)))
        case.validate_response(response, checks=CHECKS)

    send()


def write_key(path: str) -> dict[str, str]:
    """The ``Authorization`` header of ``path``'s API: Bearer on ``/v1/events``, Segment's Basic on its routes."""
    if path == "/v1/events":
        return {"Authorization": f"Bearer {KEY}"}
    if path in SEGMENT_PATHS:
        return {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}
    return {}


def accepted_events(answered: Answered) -> list[str]:
    """The ids of the events of a ``/v1/events`` request that the collector accepted."""
    if answered.status == 202:
        refused: set[int] = set()
    elif answered.status == 400 and isinstance(answered.answer, dict) and "errors" in answered.answer:
        refused = {error["index"] for error in answered.answer["errors"]}
    else:
        return []
    items = decode_record(answered.body)
    ids = [item["event_id"] for index, (_, item) in enumerate(items) if index not in refused]
    assert len(ids) == answered.answer["accepted"]
    return ids


def segment_calls(answered: Answered) -> list[tuple[bytes, str | None, bool]]:
    """Each call of a Segment request answered 200: its JSON as the collector keeps it in a dead letter,
    its event id (None when the call cannot be an event), and whether it was the request's only call."""
    route = answered.path.removeprefix("/v1/")
    envelope = read_body(route, answered.body)
    assert isinstance(envelope, Envelope)
    arrival = Arrival(0, envelope.sent_at, envelope.context, KEY_SOURCE, KEY_NAME)  # the time makes no id
    calls = []
    for call in envelope.calls:
        raw, event = to_event(call, arrival)
        calls.append((raw, event["event_id"] if isinstance(event, dict) else None, route != "batch"))
    return calls


def _json_or_none(response: requests.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
