"""People, not ids, end to end: Segment's SDK through the collector, a real broker, worker and sink.

Anonymous visits, identify and signup arrive keyed by different ids, in different partitions;
the worker merges them through the events topic, and ClickHouse counts people: person_ids
maps every id, person_id on every table follows it, sessions and funnels are the person's.
"""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from segment.analytics import Client

from ops.consumer_lag import wait_pipeline_caught_up
from ops.reader import run_query
from pulse.partitioning import partition_for
from pulse.settings import Settings

pytestmark = pytest.mark.integration


def flushed(settings: Settings, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
    """Send the calls with Segment's SDK (no write keys configured: any key is taken), then wait for the pipeline."""
    errors: list[Any] = []
    client = Client("any-key", host=f"http://127.0.0.1:{settings.collector_port}", upload_interval=0.1,
                    on_error=lambda error, batch: errors.append(error))  # fmt: skip
    for method, args, kwargs in calls:
        assert getattr(client, method)(*args, **kwargs)[0]
    client.flush()
    client.shutdown()
    assert errors == []
    wait_pipeline_caught_up(settings, 240.0)


def test_visits_identify_and_signup_are_one_person(pipeline: Settings) -> None:
    settings = pipeline
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)

    def at(minutes: float) -> datetime:
        return base + timedelta(minutes=minutes)

    pricing = {"url": "https://acme.test/pricing", "path": "/pricing"}
    features = {"url": "https://acme.test/features", "path": "/features"}
    # carol browses anonymously, identifies and signs up (the SDK sends her anonymous id along)
    # dave's server-side signup comes before the identify that links his earlier anonymous visit
    flushed(settings, [
        ("page", (None, None, "Pricing", pricing), {"anonymous_id": "anon-carol", "timestamp": at(0)}),
        ("page", (None, None, "Features", features), {"anonymous_id": "anon-carol", "timestamp": at(2)}),
        ("identify", ("carol", {"plan": "pro"}), {"anonymous_id": "anon-carol", "timestamp": at(3)}),
        ("track", ("carol", "Signed Up", {}), {"anonymous_id": "anon-carol", "timestamp": at(4)}),
        ("page", (None, None, "Pricing", pricing), {"anonymous_id": "anon-dave", "timestamp": at(10)}),
        ("track", ("dave", "Signed Up", {}), {"timestamp": at(12)}),
        ("track", ("erin", "Signed Up", {}), {"anonymous_id": "undefined", "timestamp": at(14)}),  # a placeholder: no id
    ])  # fmt: skip
    # an identify that arrives late, an anonymous event sent offline after carol identified,
    # and an alias that would merge two identified users
    flushed(settings, [
        ("identify", ("dave", {}), {"anonymous_id": "anon-dave", "timestamp": at(13)}),
        ("track", (None, "Report Exported", {}), {"anonymous_id": "anon-carol", "timestamp": at(5)}),
        ("alias", ("carol", "dave"), {"timestamp": at(15)}),
    ])  # fmt: skip
    # one event in every partition two hours on: every watermark passes the sessions and funnel steps
    clocks = {partition_for(f"clock-{i}", settings.partitions): f"clock-{i}" for i in range(200)}
    assert len(clocks) == settings.partitions
    flushed(settings, [("track", (user, "Logged In", {}), {"timestamp": at(150)}) for user in clocks.values()])

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in run_query(settings, sql).rows]

    people = "('anon-carol', 'carol', 'anon-dave', 'dave', 'erin', 'undefined')"
    assert sorted(rows(f"SELECT id, person_id FROM person_ids FINAL WHERE id IN {people}")) == [
        ("anon-carol", "carol"), ("anon-dave", "dave"), ("carol", "carol"), ("dave", "dave"), ("erin", "erin"),
    ]  # fmt: skip
    # every event of theirs in ClickHouse, under its own user_id, counted by person
    assert sorted(rows(f"SELECT user_id, person_id, count() FROM events FINAL WHERE user_id IN {people} "
                       "GROUP BY user_id, person_id")) == [
        ("anon-carol", "carol", 3), ("anon-dave", "dave", 1), ("carol", "carol", 2), ("dave", "dave", 3),
        ("erin", "erin", 1),
    ]  # fmt: skip
    # one session each, spanning the identify: carol's from her first anonymous page view to her late event
    assert sorted(rows(f"SELECT person_id, toUnixTimestamp(start), toUnixTimestamp(end), events FROM sessions FINAL "
                       f"WHERE person_id IN {people} AND NOT deleted")) == [
        ("carol", int(at(0).timestamp()), int(at(5).timestamp()), 4),
        ("dave", int(at(10).timestamp()), int(at(12).timestamp()), 2),
        ("erin", int(at(14).timestamp()), int(at(14).timestamp()), 1),
    ]  # fmt: skip
    # the anonymous pricing visits convert: the funnel counts people
    assert rows("SELECT step_index, users FROM funnel_conversion WHERE funnel = 'pricing_to_paid' ORDER BY step_index") == [
        (1, 2), (2, 2),
    ]
    assert sorted(rows(f"SELECT person_id, step_index FROM funnel_steps FINAL WHERE person_id IN {people} "
                       "AND funnel = 'pricing_to_paid'")) == [("carol", 1), ("carol", 2), ("dave", 1), ("dave", 2)]  # fmt: skip

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics", timeout=5).read()
    assert b'pulse_identity_merges_refused_total{reason="both_identified"} 1.0' in metrics
    assert b"pulse_identity_ids_merged_total 2.0" in metrics
