"""``pulse forget``: erase a person everywhere (GDPR/CCPA), through the stream first, then in ClickHouse.

1. Every id of the person, read from ``person_ids`` (the id asked for, the person it belongs
   to, every id merged into that person).
2. A forget record per id into the events topic, keyed by the id: the worker holding it erases
   its state, tells the person's other ids (so ids ClickHouse has not heard of yet go too), and
   keeps the id's hash on its partition's suppression list, so a resend or a replay of the
   topic is dropped from then on (:meth:`stream_jobs.runner.JobRunner.forget`).
3. Once the worker and then the sink have caught up, nothing more of the person is on its
   way: their rows are deleted from every table, with an audit row (:mod:`sinks.erasure`),
   by the sink when it holds the embedded engine, else directly.

Raw events stay in the events topic until its retention ends (Kafka cannot delete a record);
the suppression list is what keeps them out of the pipeline meanwhile.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import orjson
from clickhouse_connect.driver.binding import format_query_value

from ops.consumer_lag import wait_pipeline_caught_up
from ops.reader import QueryError, run_query
from pulse.partitioning import partition_for
from pulse.settings import Settings
from pulse.topics import Topics
from sinks.clickhouse import connect
from sinks.erasure import erase
from stream_jobs.output_producer import OutputProducer
from stream_jobs.runner import FORGET_HEADER


def person_ids(settings: Settings, user_id: str) -> set[str]:
    """``user_id`` and every id of the same person, as ``person_ids`` maps them."""
    literal = format_query_value(user_id)
    sql = (f"SELECT id FROM person_ids FINAL WHERE id = {literal} OR person_id IN "
           f"(SELECT person_id FROM person_ids FINAL WHERE id = {literal}) OR person_id = {literal}")  # fmt: skip
    return {user_id, *(row[0] for row in run_query(settings, sql).rows)}


def forget(settings: Settings, user_id: str, reference: str = "", timeout: float = 300.0, cluster: str | None = None,
           log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Erase the person ``user_id`` belongs to; returns the audit record (ids, rows removed per table)."""
    requested_at = datetime.now(UTC)
    ids = person_ids(settings, user_id)
    log(f"forgetting {len(ids)} id(s) of the person in the stream")
    producer = OutputProducer(settings.bootstrap)
    events = Topics.with_prefix(settings.topic_prefix).events
    for id_ in sorted(ids):
        refused = producer.send(events, b"", key=id_.encode(), partition=partition_for(id_, settings.partitions),
                                headers=[(FORGET_HEADER, b"")])  # fmt: skip
        if refused is not None:
            raise RuntimeError(f"Kafka refused the forget record: {refused}")
    asyncio.run(producer.confirm())
    log("waiting for the worker and the sink to catch up")
    wait_pipeline_caught_up(settings, timeout)
    ids |= person_ids(settings, user_id)  # merges that landed meanwhile
    log(f"deleting the rows of {len(ids)} id(s) in ClickHouse")
    if not settings.embedded_clickhouse:
        return asdict(erase(connect(settings.clickhouse_dsn), sorted(ids), reference, requested_at, cluster))
    request = {"ids": sorted(ids), "reference": reference, "requested_at_ms": int(requested_at.timestamp() * 1000)}
    http = urllib.request.Request(f"{settings.sink_url}/erase", data=orjson.dumps(request), method="POST")
    try:
        with urllib.request.urlopen(http, timeout=timeout) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise QueryError(f"the sink refused the erasure: {orjson.loads(exc.read()).get('error')}") from None
