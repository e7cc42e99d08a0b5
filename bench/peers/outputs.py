"""The sessions each side ended with, in one shape, and where they differ.

A peer emits its user's current session after every event, so its final sessions are the
last row of each (user, start): rows of one user share a partition of the output topic, in
the order they were emitted. Ours are the rows of ClickHouse's ``sessions`` table, the
latest version of each session id that is not a retraction (open sessions included), read
with the query the demo's ground-truth check uses.

Compared, per user: every session's start, end, event count and page views. Not compared:
``closed``, which cannot be equal by construction (ours closes a session once the
partition's event time has passed its end by the timeout; the peers keep no watermark and
close none); the session id, derived from user and start; and attribution (sources, entry
and exit page), which the direct peers do not compute.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench.peers.rule import Session
from devstack.ground_truth import SESSIONS
from ops.reader import run_query
from pulse.settings import Settings

Sessions = dict[str, list[Session]]  # per user, in start order


def fold(rows: Iterable[tuple[str, int, int, int, int]]) -> Sessions:
    """Sessions per user from ``(user, start, end, events, page views)`` rows; a later row of a session wins."""
    by_user: dict[str, dict[int, Session]] = {}
    for user_id, start, end, events, page_views in rows:
        by_user.setdefault(user_id, {})[start] = Session(start, end, events, page_views)
    return {user_id: sorted(sessions.values()) for user_id, sessions in by_user.items()}


def differing_users(ours: Sessions, theirs: Sessions) -> list[str]:
    """The users whose sessions are not the same on both sides (missing on one side counts)."""
    return sorted(user for user in ours.keys() | theirs.keys() if ours.get(user) != theirs.get(user))


def count(sessions: Sessions) -> int:
    return sum(len(user_sessions) for user_sessions in sessions.values())


def ours(settings: Settings) -> Sessions:
    """The pipeline's sessions as queryable in ClickHouse (the sink must have caught up)."""
    return fold(tuple(row[:5]) for row in run_query(settings, SESSIONS).rows)


def peer_rows(bootstrap: str, topic: str, expected: int, timeout: float) -> list[dict[str, Any]]:
    """The first ``expected`` rows of a peer's output topic, every partition from its beginning."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        rows: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(rows) < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(rows):,} of {expected:,} session rows in {topic} after {timeout:.0f}s")
            for message in consumer.consume(10_000, timeout=0.5):
                if message.error():
                    raise RuntimeError(f"reading {topic}: {message.error()}")
                rows.append(orjson.loads(message.value()))
        return rows
    finally:
        consumer.close()


def peer_sessions(rows: Iterable[dict[str, Any]]) -> Sessions:
    return fold((row["user_id"], row["start"], row["end"], row["events"], row["page_views"]) for row in rows)
