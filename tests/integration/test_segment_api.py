"""Segment's HTTP tracking API on the collector, driven by Segment's own Python SDK, through a real
broker, worker and sink into ClickHouse; and the answers a Segment SDK gets when it may not send."""

from __future__ import annotations

import base64
import dataclasses
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from segment.analytics import Client

from ops.consumer_lag import wait_pipeline_caught_up
from ops.reader import run_query
from pulse.settings import Settings, hash_write_key
from tests.integration.test_collector import running_collector

pytestmark = pytest.mark.integration

WEB_KEY, LIMITED_KEY = "web-write-key", "limited-write-key"
KEYS = f"""keys:
  - {{name: web, source: website, sha256: {hash_write_key(WEB_KEY)}}}
  - {{name: limited, source: batch-import, sha256: {hash_write_key(LIMITED_KEY)}, events_per_s: 1, burst: 2}}
"""


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The suite's isolated settings, with two write keys in a keys file (one of them rate-limited)."""
    keys = tmp_path / "write-keys.yaml"
    keys.write_text(KEYS)
    return dataclasses.replace(settings, write_keys_file=keys)


def post(settings: Settings, route: str, body: bytes, key: str | None = WEB_KEY) -> tuple[int, dict[str, Any], Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{settings.collector_port}/v1/{route}", data=body)
    request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{key}:".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read()), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read()), exc.headers


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_the_segment_sdk_reaches_clickhouse(pipeline: Settings) -> None:
    settings = pipeline
    errors: list[Any] = []
    client = Client(
        WEB_KEY, host=f"http://127.0.0.1:{settings.collector_port}", gzip=True, upload_interval=0.1,
        on_error=lambda error, batch: errors.append(error),
    )  # fmt: skip
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    at = [base + timedelta(seconds=i, milliseconds=7 * i) for i in range(8)]
    order = {"order_id": "o-1", "revenue": 22.5, "total": 27.5, "currency": "EUR"}
    page_context = {"campaign": {"source": "newsletter", "medium": "email", "name": "spring"}}
    calls = {
        "purchase": client.track("ada", "Order Completed", order, timestamp=at[0], anonymous_id="anon-ada"),
        "custom": client.track("ada", "Report Exported", {"format": "csv"}, timestamp=at[1]),
        "identify": client.identify("ada", {"email": "ada@example.com", "plan": "pro"}, timestamp=at[2],
                                    anonymous_id="anon-ada"),
        "page": client.page("ada", "Docs", "Pricing", {"url": "https://acme.test/pricing", "title": "Pricing"},
                            context=page_context, timestamp=at[3]),
        "screen": client.screen("ada", "Settings", "Billing", {"tab": "invoices"}, timestamp=at[4]),
        "group": client.group("ada", "acct-1", {"name": "Initech", "employees": 420}, timestamp=at[5]),
        "alias": client.alias("anon-ada", "ada", timestamp=at[6]),
        "anonymous": client.track(None, "Signed Up", {"type": "organic"}, timestamp=at[7], anonymous_id="anon-bob"),
    }  # fmt: skip
    assert all(queued for queued, _ in calls.values())
    ids = {name: message["messageId"] for name, (_, message) in calls.items()}
    client.flush()
    client.shutdown()
    assert errors == []

    # plain HTTP: a batch with one call refused, and a device clock one hour ahead
    sent = datetime.now(UTC)
    skewed = {"type": "track", "event": "Clock Checked", "userId": "bob", "messageId": "skewed",
              "originalTimestamp": (sent + timedelta(hours=1, seconds=-30)).isoformat()}  # fmt: skip
    nameless = {"type": "track", "userId": "bob", "messageId": "nameless"}
    batch = {"batch": [skewed, nameless], "sentAt": (sent + timedelta(hours=1)).isoformat()}
    before = int(time.time() * 1000)
    assert post(settings, "batch", orjson.dumps(batch))[:2] == (200, {"success": True})
    after = int(time.time() * 1000)

    wait_pipeline_caught_up(settings, 240.0)
    wanted = ", ".join(f"'{event_id}'" for event_id in [*ids.values(), "skewed"])
    rows = run_query(
        settings,
        "SELECT event_id, type, user_id, toUnixTimestamp64Milli(ts), props, context "
        f"FROM events FINAL WHERE event_id IN ({wanted})",
    ).rows
    found = {row[0]: (row[1], row[2], row[3], orjson.loads(row[4]), orjson.loads(row[5])) for row in rows}
    assert len(found) == len(ids) + 1

    def event(name: str) -> tuple[str, str, int, dict[str, Any], dict[str, Any]]:
        return found[ids[name]]

    expected = {
        "purchase": ("purchase", "ada", ms(at[0]), {**order, "amount": 22.5}),
        "custom": ("custom.report_exported", "ada", ms(at[1]), {"format": "csv"}),
        "identify": ("identify", "ada", ms(at[2]), {"email": "ada@example.com", "plan": "pro"}),
        "page": ("page_view", "ada", ms(at[3]),
                 {"url": "https://acme.test/pricing", "title": "Pricing", "name": "Pricing", "category": "Docs"}),
        "screen": ("custom.screen_viewed", "ada", ms(at[4]), {"tab": "invoices", "name": "Billing", "category": "Settings"}),
        "group": ("group", "ada", ms(at[5]), {"name": "Initech", "employees": 420, "group_id": "acct-1"}),
        "alias": ("alias", "ada", ms(at[6]), {"previous_id": "anon-ada"}),
        "anonymous": ("signup", "anon-bob", ms(at[7]), {"type": "organic"}),
    }  # fmt: skip
    assert {name: event(name)[:4] for name in expected} == expected
    for name in expected:
        context = event(name)[4]
        assert (context["source"], context["key_name"]) == ("website", "web")
        assert context["segment"]["context"]["library"]["name"] == "analytics-python"
    # both ids kept wherever the call carried both, for identity stitching
    assert {k: event("purchase")[4][k] for k in ("user_id", "anonymous_id")} == {
        "user_id": "ada",
        "anonymous_id": "anon-ada",
    }
    assert {k: event("identify")[4][k] for k in ("user_id", "anonymous_id")} == {
        "user_id": "ada",
        "anonymous_id": "anon-ada",
    }
    assert event("anonymous")[4]["anonymous_id"] == "anon-bob" and "user_id" not in event("anonymous")[4]
    page = event("page")[4]
    assert (page["url"], page["path"], page["title"]) == ("https://acme.test/pricing", "/pricing", "Pricing")
    assert (page["utm_source"], page["utm_medium"], page["utm_campaign"]) == ("newsletter", "email", "spring")
    assert event("purchase")[4]["segment"]["event"] == "Order Completed"

    # the device's hour ahead is taken back: the event is 30 s before its arrival
    skewed_ts = found["skewed"][2]
    assert before - 30_000 <= skewed_ts <= after - 30_000
    letters = run_query(
        settings, "SELECT reason, source, raw FROM dead_letters FINAL WHERE source LIKE 'segment%'"
    ).rows
    assert [(reason, source) for reason, source, _ in letters] == [("missing_field", "segment:web")]
    assert orjson.loads(letters[0][2])["messageId"] == "nameless"


def test_keys_sizes_and_rates(topics_ready: Settings, tmp_path: Path) -> None:
    settings = dataclasses.replace(topics_ready, write_keys_file=tmp_path / "keys.yaml")
    settings.write_keys_file.write_text(KEYS)  # type: ignore[union-attr]
    track = {"event": "Clicked", "userId": "u1"}
    with running_collector(settings):
        # 401: no key, an unknown one; the key in the body works as well as the header
        assert post(settings, "track", orjson.dumps(track), key=None)[:2] == (
            401,
            {"success": False, "code": "unauthorized",
             "message": "missing or unknown write key (the Basic user name, or writeKey)"},
        )  # fmt: skip
        assert post(settings, "track", orjson.dumps(track), key="nope")[0] == 401
        assert post(settings, "track", orjson.dumps({**track, "writeKey": WEB_KEY}), key=None)[0] == 200
        # 413: over 32 KB for one call, over 500 KB for a batch
        large_call = {**track, "properties": {"pad": "x" * 33_000}}
        assert post(settings, "track", orjson.dumps(large_call))[:2][0] == 413
        large_batch = {"batch": [{**track, "type": "track", "properties": {"pad": "x" * 30_000}}] * 20}
        status, answer, _ = post(settings, "batch", orjson.dumps(large_batch))
        assert (status, answer["code"]) == (413, "too_large")
        # 429 with Retry-After: the limited key takes 2 events at once, then 1 a second
        two = orjson.dumps({"batch": [{**track, "type": "track", "messageId": f"r{i}"} for i in range(2)]})
        assert post(settings, "batch", two, key=LIMITED_KEY)[0] == 200
        status, answer, headers = post(settings, "batch", two, key=LIMITED_KEY)
        assert (status, answer["code"], headers["Retry-After"]) == (429, "rate_limited", "2")
        assert post(settings, "batch", two, key=WEB_KEY)[0] == 200  # another key, another bucket
        # a key added to the file is taken within a second, without a restart
        settings.write_keys_file.write_text(  # type: ignore[union-attr]
            KEYS + f"  - {{name: new, source: ios, sha256: {hash_write_key('new-key')}}}\n"
        )
        deadline = time.monotonic() + 5
        while post(settings, "track", orjson.dumps(track), key="new-key")[0] != 200:
            assert time.monotonic() < deadline, "the new key was not taken"
            time.sleep(0.2)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{settings.collector_port}/metrics", timeout=5).read()
        assert b'pulse_collector_requests_total{api="/v1/batch",status="429"} 1.0' in metrics
