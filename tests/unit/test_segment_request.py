"""The request around Segment calls: size limits, body shape, write key (producers/segment_request.py)."""

from __future__ import annotations

import base64

import orjson
import pytest

from producers.segment import MAX_MESSAGE_BYTES
from producers.segment_request import MAX_BATCH_BYTES, MAX_BATCH_CALLS, Envelope, Refused, basic_auth_user, read_body


def padded(route: str, size: int) -> bytes:
    """A request body of exactly ``size`` bytes."""
    document = {"batch": [{"type": "track", "event": "x", "userId": "u", "properties": {"pad": ""}}]}
    if route != "batch":
        document = {"event": "x", "userId": "u", "properties": {"pad": ""}}
    body = orjson.dumps(document)
    return body.replace(b'"pad":""', b'"pad":"' + b"x" * (size - len(body)) + b'"')


def test_a_batch_gives_its_calls_key_sent_at_and_context() -> None:
    body = {"batch": [{"type": "track"}, {"type": "page"}], "writeKey": "k", "sentAt": "2026-01-01T00:00:00Z",
            "context": {"ip": "1.2.3.4"}}  # fmt: skip
    assert read_body("batch", orjson.dumps(body)) == Envelope(
        [{"type": "track"}, {"type": "page"}], "k", "2026-01-01T00:00:00Z", {"ip": "1.2.3.4"}
    )


def test_a_single_call_takes_its_type_from_the_route_and_leaves_its_key_out() -> None:
    envelope = read_body("identify", orjson.dumps({"type": "track", "userId": "u", "writeKey": "secret"}))
    assert envelope == Envelope([{"type": "identify", "userId": "u"}], "secret")


@pytest.mark.parametrize(("route", "limit"), [("batch", MAX_BATCH_BYTES), ("track", MAX_MESSAGE_BYTES)])
def test_size_limits(route: str, limit: int) -> None:
    assert isinstance(read_body(route, padded(route, limit)), Envelope)
    too_large = read_body(route, padded(route, limit + 1))
    assert isinstance(too_large, Refused) and (too_large.status, too_large.code) == (413, "too_large")
    assert limit == {"batch": 500 * 1024, "track": 32 * 1024}[route]


def test_at_most_2500_calls_a_batch() -> None:
    calls = [{}] * MAX_BATCH_CALLS
    assert isinstance(read_body("batch", orjson.dumps({"batch": calls})), Envelope)
    refused = read_body("batch", orjson.dumps({"batch": [*calls, {}]}))
    assert isinstance(refused, Refused) and refused.status == 413


@pytest.mark.parametrize(
    ("route", "body", "code"),
    [
        ("batch", b"{nope", "bad_json"),
        ("batch", b"[1]", "not_an_object"),
        ("batch", b'{"batch": {}}', "missing_field"),
        ("batch", b"{}", "missing_field"),
        ("track", b"", "bad_json"),
    ],
)
def test_bodies_that_are_no_request(route: str, body: bytes, code: str) -> None:
    refused = read_body(route, body)
    assert isinstance(refused, Refused) and (refused.status, refused.code) == (400, code)


def test_a_write_key_that_is_not_a_string_is_none() -> None:
    assert read_body("batch", b'{"batch": [], "writeKey": 5}') == Envelope([])


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Basic " + base64.b64encode(b"abc123:").decode(), "abc123"),
        ("basic " + base64.b64encode(b"abc123").decode(), "abc123"),  # without the colon, as Segment still takes
        ("Basic " + base64.b64encode(b"abc123:ignored").decode(), "abc123"),
        ("Basic " + base64.b64encode(b":").decode(), None),
        ("Basic not-base64!", None),
        ("Bearer abc123", None),
        ("", None),
    ],
)
def test_basic_auth_user(header: str, key: str | None) -> None:
    assert basic_auth_user(header) == key
