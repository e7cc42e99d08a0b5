"""Identity stitching through the runner: merges travel as records between partitions, as in Kafka."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from pulse.contract import Event, is_placeholder
from pulse.outputs import FUNNEL_STEPS, PERSON_IDS, SESSIONS, VALID_EVENTS
from pulse.partitioning import partition_for
from pulse.settings import load_settings
from stream_jobs.identity import (
    BOTH_IDENTIFIED,
    MERGED,
    MERGED_ELSEWHERE,
    PLACEHOLDER,
    Identity,
    answer,
    claimed_ids,
)
from stream_jobs.runner import FORGET_HEADER, HANDOFF_HEADER, MERGE_HEADER, PERSON_HEADER, JobRunner, Output

MINUTE = 60_000
T0 = 1_763_856_000_000
PARTITIONS = 4


class Topic:
    """The events topic and one worker over all of its partitions: what the runner sends itself comes back in order."""

    def __init__(self, tmp_path: Path) -> None:
        self.store: dict[bytes, bytes] = {}
        self.runner = JobRunner(load_settings({"PULSE_DATA_DIR": str(tmp_path)}), self.store)
        self.offsets = Counter[int]()
        self.queued: list[tuple[int, bytes, str, dict[str, bytes]]] = []  # (partition, value, key, headers)
        self.rows: dict[str, list] = {}
        self.refusals = Counter[str]()
        self._crash_kind: str | None = None

    def send(self, *events: dict, hold: set[str] | None = None) -> None:
        """Publish events as one record keyed by the first event's user, and deliver until quiet (see :meth:`deliver`)."""
        key = events[0]["user_id"]
        self.queued.append((partition_for(key, PARTITIONS), b"\n".join(map(orjson.dumps, events)), key, {}))
        self.deliver(hold)

    def deliver(self, hold: set[str] | None = None) -> None:
        """Hand every queued record to the runner, and what it sends to the topic after them; ``hold``: keep
        back the records of these headers (an answer still on its way)."""
        held = []
        while self.queued:
            partition, value, key, headers = self.queued.pop(0)
            if hold and hold & set(headers):
                held.append((partition, value, key, headers))
                continue
            self.apply(self._handle_once(partition, value, key, headers))
        self.queued = held

    def crash_on(self, kind: str | None) -> None:
        """Kill the worker once, on the first record of ``kind`` (a header, or "" for events) delivered from now on:
        its outputs are published, its state is not written; a new runner on the store takes the record again."""
        self._crash_kind = kind

    def _handle_once(self, partition: int, value: bytes, key: str, headers: dict[str, bytes]) -> Output:
        kind = next(iter(headers), "")
        if self._crash_kind == kind:
            self._crash_kind = None
            out = self.runner.handle(value, "events", partition, self.offsets[partition], key.encode(), headers)
            self.apply(out, write=False)
            self.runner = JobRunner(self.runner._settings, self.store)  # the restarted worker
        return self._handle(partition, value, key, headers)

    def _handle(self, partition: int, value: bytes, key: str, headers: dict[str, bytes]) -> Output:
        offset = self.offsets[partition]
        self.offsets[partition] += 1
        return self.runner.handle(value, "events", partition, offset, key.encode(), headers)

    def apply(self, out: Output, write: bool = True) -> None:
        for spec, rows in out.rows.items():
            self.rows.setdefault(spec.name, []).extend(orjson.loads(r) if type(r) is bytes else r for r in rows)
        self.refusals.update(out.merge_refusals)
        for reroute in out.reroutes:
            headers = dict(reroute.headers)
            self.queued.append((partition_for(reroute.user_id, PARTITIONS), reroute.value, reroute.user_id, headers))
        for key, value in out.writes.items() if write else ():
            if value is None:
                self.store.pop(key, None)
            else:
                self.store[key] = value

    def later(self, minutes: int) -> None:
        """Wall-clock ticks ``minutes`` from now: quiet partitions' event time moves on that much."""
        wall_ms = time.time_ns() // 1_000_000 + minutes * MINUTE
        for partition in range(PARTITIONS):
            self.apply(self.runner.tick(partition, wall_ms))
        self.deliver()

    def sessions(self) -> dict[str, tuple[str, int, int]]:
        """Sessions as the table holds them after merges: the latest row per id, deleted ones gone."""
        latest: dict[str, dict] = {}
        for row in self.rows.get(SESSIONS.name, []):
            if row["session_id"] not in latest or row["version"] > latest[row["session_id"]]["version"]:
                latest[row["session_id"]] = row
        return {sid: (r["user_id"], r["start"], r["events"]) for sid, r in latest.items() if not r["deleted"]}


def make_event(event_id: str, type_: str, ts: int, user_id: str, context: dict, props: dict | None = None) -> dict:
    return {"event_id": event_id, "type": type_, "user_id": user_id, "ts": ts, "props": props or {}, "context": context}


def anonymous(i: int, anon: str, minute: float, type_: str = "page_view", path: str = "/") -> dict:
    context = {"anonymous_id": anon, "path": path}
    return make_event(f"{anon}-{i}", type_, T0 + int(minute * MINUTE), user_id=anon, context=context)


def identified(i: int, user: str, minute: float, type_: str, anon: str | None = None) -> dict:
    context = {} if anon is None else {"anonymous_id": anon, "user_id": user}
    return make_event(f"{user}-{i}", type_, T0 + int(minute * MINUTE), user_id=user, context=context)


def people(topic: Topic) -> dict[str, str]:
    """person_ids as the table holds it: a merge row wins over the id's own."""
    mapped: dict[str, tuple[int, str]] = {}
    for row in topic.rows.get(PERSON_IDS.name, []):
        if row["id"] not in mapped or row["merged"] >= mapped[row["id"]][0]:
            mapped[row["id"]] = (row["merged"], row["person_id"])
    return {id_: person for id_, (_, person) in mapped.items()}


def funnel_users(topic: Topic, funnel: str) -> dict[int, set[str]]:
    """People per step of a funnel, through person_ids, as the funnel views count them."""
    mapping = people(topic)
    steps: dict[int, set[str]] = {}
    for row in topic.rows.get(FUNNEL_STEPS.name, []):
        if row["funnel"] == funnel:
            steps.setdefault(row["step_index"], set()).add(mapping.get(row["user_id"], row["user_id"]))
    return steps


def test_an_anonymous_pricing_visit_then_identify_then_signup_is_one_person_and_converts(tmp_path: Path) -> None:
    topic = Topic(tmp_path)
    topic.send(anonymous(0, "anon-1", 0, path="/pricing"), anonymous(1, "anon-1", 2))
    topic.send(identified(0, "user-1", 4, "identify", anon="anon-1"))
    topic.send(identified(1, "user-1", 6, "signup", anon="anon-1"))
    topic.later(300)  # every session closes and the funnel sees its events
    assert people(topic) == {"anon-1": "user-1", "user-1": "user-1"}
    assert funnel_users(topic, "pricing_to_paid") == {1: {"user-1"}, 2: {"user-1"}}
    # one session from the first page view to the signup, in the person's name
    assert list(topic.sessions().values()) == [("user-1", T0, 3)]
    valid = [row["event_id"] for row in topic.rows[VALID_EVENTS.name]]
    assert sorted(valid) == sorted({"anon-1-0", "anon-1-1", "user-1-0", "user-1-1"}) and len(valid) == 4


def test_anonymous_events_after_the_merge_are_forwarded_to_the_person_once(tmp_path: Path) -> None:
    topic = Topic(tmp_path)
    topic.send(anonymous(0, "anon-2", 0))
    topic.send(identified(0, "user-2", 1, "identify", anon="anon-2"))
    topic.send(anonymous(1, "anon-2", 3), anonymous(1, "anon-2", 3))  # late, offline: and sent twice
    topic.later(300)
    assert list(topic.sessions().values()) == [("user-2", T0, 2)]  # the identify is no activity
    valid = [row["event_id"] for row in topic.rows[VALID_EVENTS.name]]
    assert sorted(valid) == ["anon-2-0", "anon-2-1", "user-2-0"]


def test_a_late_identify_merges_what_both_ids_did_before_it(tmp_path: Path) -> None:
    topic = Topic(tmp_path)
    topic.send(anonymous(0, "anon-3", 0), anonymous(1, "anon-3", 10))
    topic.send(identified(0, "user-3", 12, "login"))  # the server knew the user before the identify arrived
    topic.send(identified(1, "user-3", 20, "identify", anon="anon-3"))
    topic.later(300)
    assert list(topic.sessions().values()) == [("user-3", T0, 3)]  # the two open sessions became one
    assert people(topic)["anon-3"] == "user-3"


def test_a_visit_closed_before_the_merge_reached_it_is_reopened_and_goes_on_under_the_person(tmp_path: Path) -> None:
    topic = Topic(tmp_path)
    topic.send(anonymous(0, "anon-r", 0), anonymous(1, "anon-r", 2))
    neighbour = next(f"anon-{i}" for i in range(99) if partition_for(f"anon-{i}", PARTITIONS) == partition_for("anon-r", PARTITIONS))
    topic.send(anonymous(0, neighbour, 60))  # the watermark of the visit's partition passes its timeout: closed
    assert [(row["user_id"], row["closed"]) for row in topic.rows[SESSIONS.name]][-1] == ("anon-r", True)
    user = next(f"user-{i}" for i in range(99) if partition_for(f"user-{i}", PARTITIONS) != partition_for("anon-r", PARTITIONS))
    topic.send(identified(0, user, 5, "signup", anon="anon-r"))  # the signup went on with the visit
    topic.later(300)
    sessions = {sid: row for sid, row in topic.sessions().items() if row[0] in ("anon-r", user)}
    assert list(sessions.values()) == [(user, T0, 3)]


def test_the_persons_events_wait_for_the_merged_ids_state(tmp_path: Path) -> None:
    topic = Topic(tmp_path)
    topic.send(anonymous(0, "anon-4", 0, path="/pricing"))
    topic.send(identified(0, "user-4", 1, "identify", "anon-4"), hold={HANDOFF_HEADER})  # the answer is on its way
    topic.send(identified(1, "user-4", 2, "signup", anon="anon-4"), hold={HANDOFF_HEADER})  # while the signup arrives
    neighbour = next(f"user-{i}" for i in range(5, 99) if partition_for(f"user-{i}", PARTITIONS) == partition_for("user-4", PARTITIONS))
    topic.send(identified(0, neighbour, 400, "login"), hold={HANDOFF_HEADER})  # the watermark passes the signup
    assert "user-4" not in funnel_users(topic, "pricing_to_paid").get(2, set())  # parked: the funnel has not seen it
    topic.deliver()
    topic.later(301)
    assert funnel_users(topic, "pricing_to_paid") == {1: {"user-4"}, 2: {"user-4"}}


@pytest.mark.parametrize("kind", ["", MERGE_HEADER, HANDOFF_HEADER, PERSON_HEADER])
def test_a_worker_killed_at_any_step_of_a_merge_ends_as_one_that_was_not(tmp_path: Path, kind: str) -> None:
    """Killed after publishing a record's outputs, before writing its state: the identify, the merge request, the
    handoff or a forwarded event is taken again by the restarted worker, and the outcome is the calm one."""
    outcomes = []
    for crash in (None, kind):
        topic = Topic(tmp_path / f"run-{crash}")
        topic.send(anonymous(0, "anon-k", 0, path="/pricing"))
        topic.crash_on(crash)
        topic.send(identified(0, "user-k", 1, "signup", anon="anon-k"))
        topic.send(anonymous(1, "anon-k", 2))  # forwarded to the person
        topic.later(300)
        assert topic._crash_kind is None  # the kill happened
        steps = sorted((r["user_id"], r["step_index"], r["event_id"]) for r in topic.rows.get(FUNNEL_STEPS.name, []))
        valid = sorted(row["event_id"] for row in topic.rows[VALID_EVENTS.name])
        outcomes.append((people(topic), list(topic.sessions().values()), sorted(set(steps)), sorted(set(valid)),
                         topic.refusals))  # fmt: skip
    assert outcomes[1] == outcomes[0]
    assert outcomes[0][1] == [("user-k", T0, 3)]


def test_merging_two_identified_users_and_placeholders_is_refused_and_counted(tmp_path: Path) -> None:
    topic = Topic(tmp_path)
    topic.send(identified(0, "user-5", 0, "login"))
    topic.send(identified(0, "user-6", 1, "login"))
    alias = identified(1, "user-6", 2, "alias")
    alias["props"] = {"previous_id": "user-5"}
    topic.send(alias)
    topic.send(identified(2, "user-6", 3, "login", anon="undefined"), identified(3, "user-6", 4, "login", anon="null"))
    assert topic.refusals == Counter({BOTH_IDENTIFIED: 1, PLACEHOLDER: 2})
    assert people(topic) == {"user-5": "user-5", "user-6": "user-6"}
    topic.send(identified(4, "user-6", 5, "login", anon="undefined"))  # known refused: not counted again
    assert topic.refusals == Counter({BOTH_IDENTIFIED: 1, PLACEHOLDER: 2})


def test_an_id_merged_into_one_person_is_refused_to_another(tmp_path: Path) -> None:
    topic = Topic(tmp_path)
    topic.send(anonymous(0, "anon-7", 0))
    topic.send(identified(0, "user-7", 1, "identify", anon="anon-7"))
    topic.send(identified(0, "user-8", 2, "identify", anon="anon-7"))  # a shared computer
    assert topic.refusals == Counter({MERGED_ELSEWHERE: 1})
    assert people(topic)["anon-7"] == "user-7"


def test_a_repeated_merge_request_changes_nothing(tmp_path: Path) -> None:
    topic = Topic(tmp_path)
    topic.send(anonymous(0, "anon-9", 0))
    identify = orjson.dumps(identified(0, "user-9", 1, "identify", anon="anon-9"))
    partition = partition_for("user-9", PARTITIONS)
    out = topic.runner.process(identify, "events", partition, topic.offsets[partition])
    topic.apply(out)
    topic.queued += topic.queued[-1:]  # the request published twice (the record handled again after a kill)
    topic.offsets[partition] += 1
    topic.deliver()
    topic.later(300)
    assert topic.refusals == Counter()
    assert list(topic.sessions().values()) == [("user-9", T0, 1)]


def test_forgetting_any_id_of_a_person_erases_every_id_and_suppresses_them_for_good(tmp_path: Path) -> None:
    topic = Topic(tmp_path)
    topic.send(anonymous(0, "anon-f", 0, path="/pricing"))
    topic.send(identified(0, "frank", 1, "signup", anon="anon-f"))
    topic.send(identified(0, "grace", 2, "login"))
    topic.queued.append((partition_for("anon-f", PARTITIONS), b"", "anon-f", {FORGET_HEADER: b""}))
    topic.deliver()
    assert sorted(key.split(b"|")[1] for key in topic.store if key.startswith(b"u")) == [b"grace"]
    topic.rows.clear()
    topic.send(anonymous(0, "anon-f", 0, path="/pricing"))  # the topic replayed, or the client resends
    topic.send(identified(3, "frank", 5, "login"))
    topic.runner = JobRunner(topic.runner._settings, topic.store)  # a restart reads the suppression list back
    topic.send(identified(4, "frank", 6, "login", anon="anon-f"))
    topic.later(300)
    assert [row["user_id"] for row in topic.rows.get(VALID_EVENTS.name, [])] == []
    assert sorted(key.split(b"|")[1] for key in topic.store if key.startswith(b"u")) == [b"grace"]
    assert all(b"frank" not in key and b"anon-f" not in key for key in topic.store)  # hashes only


@pytest.mark.parametrize(
    ("identity", "has_state", "outcome"),
    [
        (None, False, MERGED),  # never seen: its events may still be on their way
        (Identity(anonymous=True), True, MERGED),
        (None, True, BOTH_IDENTIFIED),  # state and no identity slice: a user's own id
        (Identity(person="p"), False, "already"),
        (Identity(person="q"), False, MERGED_ELSEWHERE),
    ],
)
def test_answer(identity: Identity | None, has_state: bool, outcome: str) -> None:
    assert answer(identity, has_state, "p") == outcome


def test_placeholders_and_claims() -> None:
    assert all(map(is_placeholder, ["", " null ", "undefined", "0", "[object Object]", "NaN"]))
    assert not is_placeholder("u000123")
    alias = Event("e", "alias", "u", T0, {"previous_id": "old"}, {"anonymous_id": "a"})
    assert claimed_ids(alias) == ["a", "old"]
