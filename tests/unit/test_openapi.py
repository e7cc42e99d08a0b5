"""The collector's OpenAPI document: valid, complete, and in agreement with the contract it describes.

The fuzzer that drives a running collector from this document is tests/integration/test_collector_fuzz.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from jsonschema import Draft202012Validator

from producers.collector import Collector
from producers.openapi import openapi_document
from pulse.contract import (
    AMOUNT,
    IDENTITY_TYPES,
    PIPELINE_FIELDS,
    STANDARD_TYPES,
    STRING,
    TOP_LEVEL_FIELDS,
    Invalid,
    validate,
)
from pulse.settings import Settings, load_settings
from tests.unit.test_segment_api import FakeKafka

# a value each kind of prop check of the contract takes
GOOD_PROPS = {STRING: "x", AMOUNT: 9.5}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"PULSE_DATA_DIR": str(tmp_path)})


def event_validator(document: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema validator of one event, its references resolved within the document."""
    return Draft202012Validator({**document["components"]["schemas"]["Event"], "components": document["components"]})


def minimal_event(event_type: str) -> dict[str, Any]:
    """An event of ``event_type`` with only what the contract requires."""
    if event_type == "survey_response":
        props: dict[str, Any] = {"kind": "nps", "score": 7}
    else:
        rules = {**STANDARD_TYPES, **IDENTITY_TYPES}.get(event_type, {})  # a custom type requires none
        props = {name: GOOD_PROPS[check] for name, check in rules.items()}
    event = {"event_id": "e1", "type": event_type, "user_id": "u1", "ts": "2026-03-01T10:00:00Z", "props": props}
    return {**event, "context": {"path": "/pricing"}} if event_type == "page_view" else event


def test_a_valid_openapi_document_schemathesis_loads_whole(settings: Settings) -> None:
    document = openapi_document(settings)
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # against the OpenAPI 3.1 schema, which leaves the JSON Schemas in it out
    Draft202012Validator.check_schema({"$defs": document["components"]["schemas"]})
    operations = [result.ok() for result in schema.get_all_operations()]  # ok() raises on an invalid operation
    assert len(operations) == len(document["paths"])


def test_every_route_of_the_collector_is_documented_and_no_other(settings: Settings) -> None:
    app = Collector(settings, FakeKafka()).application()  # type: ignore[arg-type]
    # aiohttp adds a HEAD route beside each GET by itself
    routes = {(route.method, route.resource.canonical) for route in app.router.routes() if route.method != "HEAD"}
    documented = {
        (method.upper(), path) for path, item in openapi_document(settings)["paths"].items() for method in item
    }
    assert routes == documented


def test_the_collector_serves_the_document(settings: Settings) -> None:
    async def fetch() -> tuple[int, str, bytes]:
        app = Collector(settings, FakeKafka()).application()  # type: ignore[arg-type]
        async with (
            TestServer(app) as server,
            ClientSession() as session,
            session.get(server.make_url("/openapi.json")) as response,
        ):
            return response.status, response.content_type, await response.read()

    status, content_type, body = asyncio.run(fetch())
    assert (status, content_type) == (200, "application/json")
    assert orjson.loads(body) == openapi_document(settings)


def test_the_limits_are_the_settings(settings: Settings) -> None:
    tuned = dataclasses.replace(settings, collector=dataclasses.replace(settings.collector, max_events=7))
    body = openapi_document(tuned)["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert body["application/x-ndjson"]["schema"]["maxItems"] == 7
    assert body["application/json"]["schema"]["oneOf"][1]["maxItems"] == 7


def test_each_type_of_the_contract_has_its_variant_with_every_field(settings: Settings) -> None:
    variants = openapi_document(settings)["components"]["schemas"]["Event"]["oneOf"]
    named = [variant["properties"]["type"].get("const") for variant in variants]
    assert named == [*STANDARD_TYPES, *IDENTITY_TYPES, None]  # None: the custom types, by pattern
    assert all(variant["properties"].keys() == TOP_LEVEL_FIELDS | PIPELINE_FIELDS for variant in variants)


@pytest.mark.parametrize("event_type", [*STANDARD_TYPES, *IDENTITY_TYPES, "custom.video_played"])
def test_the_schema_and_the_contract_agree_on_each_type(settings: Settings, event_type: str) -> None:
    """What the contract requires is what the schema requires: a minimal event passes both, and
    the same event without one of its required props fails both."""
    validator = event_validator(openapi_document(settings))
    event = minimal_event(event_type)
    assert validator.is_valid(event) and not isinstance(validate(event), Invalid)
    for prop in event["props"]:
        lacking = {**event, "props": {name: value for name, value in event["props"].items() if name != prop}}
        assert not validator.is_valid(lacking) and isinstance(validate(lacking), Invalid)


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "Custom.Video"},
        {"ts": 946_684_799_999},  # 1999
        {"ts": "2026-03-01T10:00:00"},  # no offset
        {"user_id": " "},
        {"event_id": "e" * 257},
        {"extra": 1},
        {"context": {"url": 5}},
        {"props": {"kind": "nps", "score": 7.5}},
    ],
)
def test_the_schema_refuses_what_the_contract_refuses(settings: Settings, changes: dict[str, Any]) -> None:
    event = {**minimal_event("survey_response"), **changes}
    assert not event_validator(openapi_document(settings)).is_valid(event)
    assert isinstance(validate(event), Invalid)
