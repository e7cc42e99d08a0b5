"""A mixed workload with a known answer: valid events, resent duplicates and invalid input.

The answer is known by construction (which events are distinct, which lines are invalid
and why), not by running the pipeline's own code.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Producer

from producers import EventProducer
from pulse.partitioning import partition_for
from pulse.topics import Topics

START_MS = 1_763_856_000_000  # 2025-11-23T00:00:00Z

# (raw bytes maker, expected dead-letter reason)
INVALID_KINDS: list[tuple[str, Any]] = [
    ("bad_json", lambda i: b'{"event_id": "bad-%d", "type": "login"' % i),
    ("missing_field", lambda i: orjson.dumps({"event_id": f"bad-{i}", "type": "login", "ts": START_MS})),
    ("bad_timestamp", lambda i: orjson.dumps({"event_id": f"bad-{i}", "type": "login", "user_id": "u", "ts": "noon"})),
    ("unknown_type", lambda i: orjson.dumps({"event_id": f"bad-{i}", "type": "pageview", "user_id": "u", "ts": START_MS})),
    ("bad_prop", lambda i: orjson.dumps(
        {"event_id": f"bad-{i}", "type": "purchase", "user_id": "u", "ts": START_MS, "props": {"order_id": "o", "amount": "9"}}
    )),
    ("not_an_object", lambda i: b"[%d]" % i),
]  # fmt: skip


@dataclass
class Workload:
    """What was sent and what the pipeline must end with."""

    valid: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[tuple[bytes, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.valid) + len(self.duplicates) + len(self.invalid)

    @property
    def expected_ids(self) -> set[str]:
        return {event["event_id"] for event in self.valid}

    @property
    def expected_reasons(self) -> Counter[str]:
        return Counter(reason for _, reason in self.invalid)


def make_workload(valid: int, duplicates: int, invalid: int, users: int = 250, seed: int = 1) -> Workload:
    rng = random.Random(seed)
    workload = Workload()
    for i in range(valid):
        user = f"user-{rng.randrange(users)}"
        ts = START_MS + i * 1_000 + rng.randrange(1_000)
        kind = rng.choice(["login", "page_view", "feature_used", "purchase"])
        event: dict[str, Any] = {"event_id": f"ev-{seed}-{i}", "type": kind, "user_id": user, "ts": ts}
        if kind == "page_view":
            event["context"] = {"path": rng.choice(["/", "/pricing", "/docs"])}
        elif kind == "feature_used":
            event["props"] = {"feature": rng.choice(["export", "alerts"])}
        elif kind == "purchase":
            event["props"] = {"order_id": f"o-{i}", "amount": rng.randrange(1, 500)}
        workload.valid.append(event)
    workload.duplicates = rng.sample(workload.valid, duplicates)
    for i in range(invalid):
        reason, make = INVALID_KINDS[i % len(INVALID_KINDS)]
        workload.invalid.append((make(i), reason))
    return workload


def send_workload(workload: Workload, bootstrap: str, topics: Topics, partitions: int) -> None:
    """Send everything, the way different clients would.

    Valid events go batched through ``EventProducer``, then half the resends the same way.
    The invalid input goes through a plain Kafka producer: half as one JSON value per
    record, half packed into multi-line records together with the other resends (each such
    record holds one user's resends, so they share the partition of that user's events).
    """
    with EventProducer(bootstrap, topics) as producer:
        for event in workload.valid:
            producer.send(event)
    with EventProducer(bootstrap, topics) as producer:
        for event in workload.duplicates[::2]:
            producer.send(event)
    plain = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for raw, _ in workload.invalid[::2]:
        plain.produce(topics.events, value=raw, key=b"anyone")
    packed = [raw for raw, _ in workload.invalid[1::2]]
    resends_by_user: dict[str, list[bytes]] = {}
    for event in workload.duplicates[1::2]:
        resends_by_user.setdefault(event["user_id"], []).append(orjson.dumps(event))
    for user, resends in resends_by_user.items():
        lines, packed = packed[:5] + resends, packed[5:]
        plain.produce(topics.events, value=b"\n".join(lines), partition=partition_for(user, partitions))
    for start in range(0, len(packed), 5):
        plain.produce(topics.events, value=b"\n".join(packed[start : start + 5]), key=b"anyone")
    assert plain.flush(60) == 0
