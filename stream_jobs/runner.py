"""The one runner of a worker: every record of the events topic through every job, state behind a mapping.

Per record, once for all jobs: decode and validate each event (dead-lettering bad ones),
drop resent events, and judge lateness **event by event in partition order**: each event is
compared with the watermark as it stands after the events before it, so the verdict does
not depend on how a producer packed events into records. Then each user's new on-time
events go to every job in event-time order, the timers fire for users whose deadline the
watermark passed, and each touched user gets **one** state write: the envelope of
:mod:`stream_jobs.envelope`, or a delete when every slice is empty.

The result says what to publish and what to write; the caller publishes first and writes
state after, so a crash at any point either replays the record in full or finds its effects
in the state. Each user's state records the last input offset applied to it: a record at or
below that offset is a **replay** for that user, so its events are not applied again; the
events that were new in it are republished, with every job's current rows. Its new events
still move the partition's clock (a no-op if the clock already holds them), so the other
users of the record are judged against the same watermark as the first time.

Identity stitching (:mod:`stream_jobs.identity`) and erasure (``pulse forget``) run here too,
as records the runner sends the events topic and takes back (:meth:`JobRunner.handle`): a
user's events claiming another id start a merge, an id merged into a person forwards its
events there, and a forgotten id's events are dropped.

State keys (:mod:`stream_jobs.state_keys`): one per user, the partition's suppression list of
forgotten ids, and the partition's clock, written last. Timers live in memory; after an
assignment, :meth:`JobRunner.index_partition` rebuilds them from the slice headers in steps,
so the event loop never stalls on a store of a million users, and a tick queued after it
fires what came due meanwhile.
"""

from __future__ import annotations

import time
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import orjson

from pulse.contract import Event, is_placeholder
from pulse.dead_letter import DeadLetter
from pulse.outputs import VALID_EVENTS, OutputSpec
from pulse.settings import Settings, SettingsError
from stream_jobs.churn_job import ChurnJob
from stream_jobs.churn_scoring import ChurnRules
from stream_jobs.dedup import DedupSlice, id_hash
from stream_jobs.envelope import Envelope, RawSlice, decode_envelope, slice_headers
from stream_jobs.funnels import load_funnels
from stream_jobs.funnels_job import FunnelsJob
from stream_jobs.identity import (
    ALREADY,
    FORGOTTEN,
    MERGED,
    PLACEHOLDER,
    Identity,
    IdentitySlice,
    answer,
    claimed_ids,
    person_row,
)
from stream_jobs.job import Job, Row
from stream_jobs.sessionizer import SessionRules
from stream_jobs.sessions_job import SessionsJob
from stream_jobs.state_cache import StateCache
from stream_jobs.state_keys import clock_key, forgotten_key, user_key
from stream_jobs.timers import Timers
from stream_jobs.user_state import UserState
from stream_jobs.validation import check_record
from stream_jobs.watermark import PartitionClock

# users read per step of a timer rebuild before the event loop gets a turn: about 5 ms. Faust's agent
# handles one record per turn, so this is what a record waits at most while a partition is indexed
INDEX_STEP = 500
CACHED_USERS = 5_000  # users whose decoded state is kept between records (see stream_jobs.state_cache): ~7 KB each


class StateReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def keys(self) -> Iterable[bytes]: ...


class Reroute(NamedTuple):
    """A record for the events topic itself, keyed by ``user_id``: forwarded events or a step of a merge."""

    user_id: str
    value: bytes
    headers: list[tuple[str, bytes]]


# headers of the records the runner sends to the events topic (see stream_jobs.identity)
PERSON_HEADER = "pulse.person"  # events of an id merged into this person, forwarded to it
MERGE_HEADER = "pulse.merge"  # a request to merge this id into a person: its value names them
HANDOFF_HEADER = "pulse.handoff"  # the answer: the outcome, the merged id's slices as the value
FORGET_HEADER = "pulse.forget"  # erase this id's state and suppress its events from now on (pulse forget)


@dataclass
class Output:
    """What one record (or tick) produced, and the state to write after publishing it."""

    # by output, in publish order: a row's values, or its JSON line when the input already held it (valid events)
    rows: dict[OutputSpec, list[dict[str, Any] | bytes]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    writes: dict[bytes, bytes | None] = field(default_factory=dict)  # None deletes; the clock last
    events_in: int = 0
    duplicates: int = 0
    too_late: int = 0
    valid_times: list[int] = field(default_factory=list)  # event time of each valid event published
    reroutes: list[Reroute] = field(default_factory=list)
    merge_refusals: Counter[str] = field(default_factory=Counter)  # by reason
    suppressed: int = 0  # events of forgotten ids, dropped
    forgotten: int = 0  # ids whose state this record erased

    def add(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.rows.setdefault(row.output, []).append(row.values)

    def valid(self, line: bytes, ts: int) -> None:
        """Publish a valid event (its JSON line) to the valid-events output."""
        self.rows.setdefault(VALID_EVENTS, []).append(line)
        self.valid_times.append(ts)

    def apply_writes(self, store: MutableMapping[bytes, bytes]) -> None:
        """Write the state into a plain mapping, as runs without Kafka do (the worker holds changelog records too)."""
        for key, value in self.writes.items():
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value


def default_jobs(settings: Settings) -> tuple[Job[Any], ...]:
    """The jobs the settings switch on, in the order they see a user's events."""
    retention_ms = int(settings.sessions.user_retention_days * 86_400_000)
    jobs: list[Job[Any]] = []
    tuning = settings.sessions
    if tuning.enabled:
        rules = SessionRules(int(tuning.timeout_minutes * 60_000), int(tuning.max_length_hours * 3_600_000))
        jobs.append(SessionsJob(rules, retention_ms))
    if settings.funnels.enabled:
        jobs.append(FunnelsJob(load_funnels(settings.funnels.definitions_path), retention_ms))
    if settings.churn.enabled:
        churn = settings.churn
        try:
            rules = ChurnRules.from_tuning(churn)
        except ValueError as exc:
            raise SettingsError(f"churn: {exc}") from None
        jobs.append(ChurnJob(rules, int(churn.user_retention_days * 86_400_000),
                             int(settings.sessions.allowed_lateness_minutes * 60_000)))  # fmt: skip
    return tuple(jobs)


@dataclass
class PartitionState:
    """What the runner keeps in memory for one partition it holds."""

    clock: PartitionClock
    timers: Timers = field(default_factory=Timers)
    # per slice, how many users (indexed or written since) hold each non-zero live value
    live: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    indexed: bool = False
    # users written before the index reached them: their live counts as stored before the first write
    written_while_indexing: dict[str, dict[str, int]] = field(default_factory=dict)
    forgotten: set[int] = field(default_factory=set)  # id hashes of erased users: their events are dropped


class JobRunner:
    """Runs validation, de-duplication and every job over records of the events topic."""

    def __init__(self, settings: Settings, store: StateReader, jobs: Sequence[Job[Any]] | None = None,
                 cached_users: int = CACHED_USERS) -> None:  # fmt: skip
        self._settings = settings
        self._store = store
        self.jobs = tuple(default_jobs(settings) if jobs is None else jobs)
        self._dedup = DedupSlice(int(settings.dedup.retention_hours * 3_600_000), settings.dedup.max_ids_per_user)
        self._identity = IdentitySlice(int(settings.sessions.user_retention_days * 86_400_000))
        self._slices: tuple[Job[Any], ...] = (self._dedup, self._identity, *self.jobs)
        self._slice_names = frozenset(slice_.name for slice_ in self._slices)
        self._lateness_ms = int(settings.sessions.allowed_lateness_minutes * 60_000)
        self._idle_ms = int(settings.sessions.idle_close_seconds * 1000)
        self._partitions: dict[int, PartitionState] = {}
        # the partitions' live counts summed, kept as they change: gauges read them from another thread
        self._live: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self._cache = StateCache(cached_users)

    @property
    def outputs(self) -> tuple[OutputSpec, ...]:
        """Every output the runner publishes to: valid events, then each job's."""
        return (VALID_EVENTS, *self._identity.outputs, *(spec for job in self.jobs for spec in job.outputs))

    def live(self, slice_name: str) -> int:
        """The live count of a slice (e.g. open sessions) over the partitions held."""
        return sum(value * users for value, users in self.live_values(slice_name).items())

    def live_values(self, slice_name: str) -> Counter[int]:
        """Users by the live value of their slice over the partitions held (e.g. users by churn tier).

        Safe to call from another thread (a metrics scrape): the items are copied in one step.
        """
        return Counter({value: users for value, users in list(self._live.get(slice_name, {}).items()) if users})

    def users_with(self, slice_name: str, value: int) -> int:
        """Users whose slice holds live value ``value`` over the partitions held; safe from another thread."""
        return self._live.get(slice_name, {}).get(value, 0)

    def keep_only(self, partitions: Iterable[int]) -> None:
        """Forget every partition but ``partitions``: handed to another worker, or their state read anew.

        What the runner keeps in memory for a partition (timers, live counts, the clock) is
        derived from its state, so it stays valid only while the store holds the same state.
        """
        kept = set(partitions)
        for partition in [p for p in self._partitions if p not in kept]:
            part = self._partitions.pop(partition)
            for name, values in part.live.items():
                self._live[name].subtract(values)
            self._cache.drop_prefix(user_key(partition, ""))

    def unindexed(self, held: Iterable[int]) -> list[int]:
        """The partitions of ``held`` whose timers are not rebuilt since their assignment."""
        return [p for p in held if not ((part := self._partitions.get(p)) and part.indexed)]

    # --- records --------------------------------------------------------------------

    def process(self, value: bytes | None, topic: str, partition: int, offset: int, person: str | None = None) -> Output:
        """One record of the events topic; ``person``: its events were forwarded to this person (merged ids)."""
        with self._touching() as users:
            return self._process(value, f"{topic}/{partition}@{offset}", partition, offset, person, users)

    def _process(self, value: bytes | None, source: str, partition: int, offset: int, person: str | None,
                 users: dict[str, UserState]) -> Output:  # fmt: skip
        checked = check_record(value, source, self._settings.not_after_ms())
        out = Output(dead_letters=checked.dead_letters, events_in=checked.events_in)
        part = self._partition(partition)
        wall_ms = time.time_ns() // 1_000_000
        forwards: dict[str, list[bytes]] = {}  # by person: the events of ids merged into them
        merged_into: dict[str, str] = {}
        for event, line in zip(checked.events, checked.lines, strict=True):
            user_id = person or event.user_id
            if part.forgotten and id_hash(user_id) in part.forgotten:
                out.suppressed += 1  # erased by pulse forget: a resend or a replay must not bring it back
                continue
            user = users.get(user_id)
            if user is None:
                user = users[user_id] = self._load(partition, user_id)
                if user.envelope.applied_offset >= offset:
                    user.replayed = set()
                if (identity := self._identity_of(user)) is not None and identity.person is not None:
                    merged_into[user_id] = identity.person
            if user_id in merged_into:  # an id merged into a person: the event is the person's
                forwards.setdefault(merged_into[user_id], []).append(line)
                continue
            self._admit(event, line, user, offset, part.clock, wall_ms, out)
        for into, lines in forwards.items():
            out.reroutes.append(Reroute(into, b"\n".join(lines), [(PERSON_HEADER, into.encode())]))
        for user in users.values():
            if user.replayed is not None:
                out.add(row for job in self.jobs for row in job.current_rows(user.user_id, user.get(job)))
            elif user.user_id in merged_into:
                continue  # every event of it was forwarded: nothing of it changed
            else:
                user.envelope.applied_offset = offset
                user.on_time.sort()  # by event time, then id hash: the order whatever the arrival order
                self._run_jobs(user, self._stitch(user, person is None, out), out)
            user.changed = True
        self._fire_timers(partition, part, users, out)
        self._write(partition, part, users, out)
        return out

    def handle(self, value: bytes | None, topic: str, partition: int, offset: int, key: bytes | None,
               headers: dict[str, bytes]) -> Output:  # fmt: skip
        """Any record of the events topic but a tick: events, or a step of a merge or an erasure (by its headers)."""
        if (outcome := headers.get(HANDOFF_HEADER)) is not None:
            person = (key or b"").decode()
            return self.handoff(value or b"", headers[MERGE_HEADER].decode(), outcome.decode(), person, partition, offset)
        if MERGE_HEADER in headers:
            return self.merge_request(value or b"", partition, offset)
        if FORGET_HEADER in headers:
            return self.forget((key or b"").decode(), partition, offset)
        person = headers.get(PERSON_HEADER)
        return self.process(value, topic, partition, offset, person and person.decode())

    def merge_request(self, value: bytes, partition: int, offset: int) -> Output:
        """Step 2 of a merge (:mod:`stream_jobs.identity`): an id of this partition asked to merge into a person.

        The answer goes to the person's partition: the id's slices if it merges (the id then
        keeps only the link), else the refusal.
        """
        request = orjson.loads(value)
        merged_id, person, ts = request["id"], request["person"], request["ts"]
        out = Output()
        part = self._partition(partition)
        with self._touching() as users:
            user = users[merged_id] = self._load(partition, merged_id)
            if user.envelope.applied_offset >= offset:  # answered, and the answer is in Kafka
                return out
            identity = self._identity_of(user)
            has_state = any(name != self._identity.name for name in user.envelope.slices)
            outcome = FORGOTTEN if id_hash(merged_id) in part.forgotten else answer(identity, has_state, person)
            handed = b""
            if outcome == MERGED:
                handed = self._hand_over(user)
                identity = identity or Identity()
                identity.person, identity.anonymous = person, False
                identity.last_day = max(identity.last_day, ts // 86_400_000)
                self._keep_identity(user, identity)
                out.add([person_row(merged_id, person, ts)])
            headers = [(HANDOFF_HEADER, outcome.encode()), (MERGE_HEADER, merged_id.encode())]
            out.reroutes.append(Reroute(person, handed, headers))
            user.envelope.applied_offset = offset
            user.changed = True
            self._write(partition, part, users, out)
        return out

    def handoff(self, value: bytes, merged_id: str, outcome: str, person: str, partition: int, offset: int) -> Output:
        """Step 3 of a merge: the answer for ``merged_id`` reached the person; merge its slices, free the parked events."""
        out = Output()
        part = self._partition(partition)
        with self._touching() as users:
            user = users[person] = self._load(partition, person)
            identity = self._identity_of(user)
            if user.envelope.applied_offset >= offset or identity is None or merged_id not in identity.awaiting:
                return out  # applied already, or an answer nobody waits for (to a repeated request)
            identity.awaiting.remove(merged_id)
            if outcome in (MERGED, ALREADY):
                identity.linked.append(merged_id)
                handed = decode_envelope(value) if value else Envelope()
                for slice_ in self._slices:
                    raw = handed.slices.get(slice_.name)
                    if raw is not None and slice_ is not self._identity:
                        other = slice_.decode(raw.data, raw.version)
                        out.add(slice_.merge(person, user.get(slice_), merged_id, other))
                        user.acted(slice_)
            else:
                identity.refused.append(merged_id)
                out.merge_refusals[outcome] += 1
            if not identity.awaiting and identity.parked:
                parked = check_record(b"\n".join(identity.parked), f"parked {person}")
                identity.parked = []
                self._run_jobs(user, sorted(parked.events, key=lambda e: (e.ts, id_hash(e.event_id))), out)
            self._keep_identity(user, identity)
            user.envelope.applied_offset = offset
            user.changed = True
            self._fire_timers(partition, part, users, out)
            self._write(partition, part, users, out)
        return out

    def tick(self, partition: int, wall_ms: int) -> Output:
        """A wall-clock tick: on a quiet partition, event time follows the clock; due timers fire.

        Timers fire even when the clock stays: after a restart, a user's deadline may have
        passed before the index rebuilt its timer, and the tick that follows the index
        (see :meth:`index_partition`) is what fires it without waiting for new events.
        """
        out = Output()
        part = self._partition(partition)
        moved = part.clock.tick(wall_ms, self._idle_ms)
        with self._touching() as users:
            self._fire_timers(partition, part, users, out)
            if moved or users:
                self._write(partition, part, users, out)
        return out

    def index_partition(self, partition: int) -> Iterator[int]:
        """Rebuild a held partition's timers and gauges from the slice headers; yields users read after each step.

        The caller gives the event loop a turn between steps. Records handled meanwhile
        schedule their own users and count their own changes; the scan counts a user it
        reaches after such a write by its value before the write, so nobody counts twice.
        A deadline the watermark passed before the scan reached its user fires on the
        partition's next record or tick, so the caller queues a tick once the scan is done.
        """
        part = self._partition(partition)
        if part.indexed:
            return
        prefix = user_key(partition, "")
        keys = [key for key in self._store.keys() if key.startswith(prefix)]
        for start in range(0, len(keys), INDEX_STEP):
            if self._partitions.get(partition) is not part:
                return  # released meanwhile
            for key in keys[start : start + INDEX_STEP]:
                user_id = key[len(prefix) :].decode()
                before_write = part.written_while_indexing.get(user_id)
                if before_write is not None:  # its writes counted the change; the stored value counts the rest
                    self._count_live(part, before_write, 1)
                    continue
                value = self._store.get(key)
                if value is not None:
                    deadline, live = self._headers(user_id, key, value)
                    part.timers.schedule(user_id, deadline)
                    self._count_live(part, live, 1)
            yield min(start + INDEX_STEP, len(keys))
        part.indexed = True
        part.written_while_indexing.clear()

    def _headers(self, user_id: str, key: bytes, value: bytes) -> tuple[int | None, dict[str, int]]:
        """A stored user's earliest deadline over the runner's slices, and each slice's live count, as stored.

        Read from the slice headers alone: a rebuild reads every user of the partition.
        """
        headers = slice_headers(value)
        if headers is None:  # the layout before envelopes: no headers, decode it
            user = UserState(user_id, key, decode_envelope(value), self._slices)
            return user.deadline(self._slices), user.live_before
        names = self._slice_names
        deadline = min((due for name, _, due in headers if due is not None and name in names), default=None)
        return deadline, {name: live for name, live, _ in headers}

    def forget(self, user_id: str, partition: int, offset: int) -> Output:
        """Erase an id's state and suppress its events from now on (``pulse forget``, GDPR/CCPA erasure).

        The ids of the same person are told too (the person an id merged into, the ids merged
        into a person), so forgetting any id of a person forgets all of them, in every
        partition. The suppression list keeps only a hash of the id, written after the state's
        erasure; a repeated request (a replay, or the person's ids telling each other) erases
        what is left, which is nothing, and tells nobody: the ids to tell were in the state.
        """
        out = Output()
        part = self._partition(partition)
        key = id_hash(user_id)
        with self._touching() as users:
            user = users[user_id] = self._load(partition, user_id)
            identity = self._identity_of(user)
            if identity is not None:
                for other in ([identity.person] if identity.person else []) + identity.linked:
                    out.reroutes.append(Reroute(other, b"", [(FORGET_HEADER, b"")]))
            for slice_ in self._slices:
                user.decoded[slice_.name] = slice_.empty()
                user.acted(slice_)
            user.envelope.applied_offset = offset
            user.changed = True
            self._write(partition, part, users, out)
        out.forgotten = int(key not in part.forgotten)
        part.forgotten.add(key)
        clock = out.writes.pop(clock_key(partition))
        out.writes[forgotten_key(partition)] = array("q", sorted(part.forgotten)).tobytes()
        out.writes[clock_key(partition)] = clock  # the clock last, as always
        return out

    # --- internals --------------------------------------------------------------------

    @contextmanager
    def _touching(self) -> Iterator[dict[str, UserState]]:
        """The users a record or tick loads; if handling it fails, their cached state is dropped.

        Their decoded slices may be half changed while nothing was written, so the next
        record reads them from the store again.
        """
        users: dict[str, UserState] = {}
        try:
            yield users
        except Exception:
            self._cache.drop([user.key for user in users.values()])
            raise

    def _run_jobs(self, user: UserState, events: list[Event], out: Output) -> None:
        """Hand a user's events, in event-time order, to every slice that takes them."""
        for slice_ in self._slices:
            if slice_.event_types is None or any(event.type in slice_.event_types for event in events):
                out.add(slice_.on_events(user.user_id, user.get(slice_), events))
                user.acted(slice_)

    def _stitch(self, user: UserState, own: bool, out: Output) -> list[Event]:
        """Step 1 of a merge: note the ids the user's new events claim and ask for them; the events for the jobs.

        ``own``: the events are the user's own, not forwarded from an id merged into them. While
        an answer is awaited the events are parked (and the jobs get none): no job sees the
        person's events before what a merged id brings.
        """
        new_id = not user.envelope.slices
        if new_id and own and user.on_time:
            out.add([person_row(user.user_id, user.user_id, user.on_time[0][0])])
        identity = self._identity_of(user)
        if identity is None and not (own and any("anonymous_id" in event.context or event.type == "alias"
                                                 for _, _, event, _ in user.on_time)):  # fmt: skip
            return [event for _, _, event, _ in user.on_time]  # an identified user, no other id: nothing to stitch
        identity = identity or Identity()
        changed = False
        for ts, _, event, _ in user.on_time if own else ():
            changed = identity.saw(event, new_id) or changed
            for claimed in claimed_ids(event):
                if claimed in identity.linked or claimed in identity.refused or claimed in identity.awaiting:
                    continue
                changed = True
                if is_placeholder(claimed):
                    identity.refused.append(claimed)
                    out.merge_refusals[PLACEHOLDER] += 1
                    continue
                identity.awaiting.append(claimed)
                request = orjson.dumps({"id": claimed, "person": user.user_id, "ts": ts})
                out.reroutes.append(Reroute(claimed, request, [(MERGE_HEADER, b"")]))
        if identity.awaiting:
            identity.parked += [line for _, _, _, line in user.on_time]
            changed = True
        if changed:
            self._keep_identity(user, identity)
        return [] if identity.awaiting else [event for _, _, event, _ in user.on_time]

    def _identity_of(self, user: UserState) -> Identity | None:
        """The user's identity slice, or None when they have none (an identified id with nothing merged)."""
        name = self._identity.name
        if name in user.decoded or name in user.envelope.slices:
            return user.get(self._identity)
        return None

    def _keep_identity(self, user: UserState, identity: Identity) -> None:
        user.decoded[self._identity.name] = identity
        user.acted(self._identity)

    def _hand_over(self, user: UserState) -> bytes:
        """Every slice but the identity, encoded for the person the user merges into; the user keeps none."""
        handed = Envelope()
        for slice_ in self._slices:
            if slice_ is self._identity:
                continue
            state = user.get(slice_)
            if not slice_.is_empty(state):
                handed.slices[slice_.name] = RawSlice(slice_.version, None, None, slice_.encode(state))
            user.decoded[slice_.name] = slice_.empty()
            user.acted(slice_)
        return handed.to_bytes()

    def _admit(self, event: Event, line: bytes, user: UserState, offset: int, clock: PartitionClock, wall_ms: int,
               out: Output) -> None:  # fmt: skip
        """Sort one event: republished (replay), duplicate, too late, or on time for the jobs."""
        key = id_hash(event.event_id)
        seen = user.get(self._dedup)
        if user.replayed is not None:
            if seen.first_offset(key) in (offset, None) and key not in user.replayed:
                user.replayed.add(key)
                out.valid(line, event.ts)
                clock.observe(event.ts, wall_ms)
            return
        if not seen.admit(key, event.ts, offset):
            out.duplicates += 1
            return
        out.valid(line, event.ts)
        watermark = clock.watermark(self._lateness_ms)
        if self.jobs and watermark is not None and event.ts < watermark:
            out.dead_letters.append(_too_late(event, line, watermark))
            out.too_late += 1
            return
        clock.observe(event.ts, wall_ms)
        user.on_time.append((event.ts, key, event, line))

    def _fire_timers(self, partition: int, part: PartitionState, users: dict[str, UserState], out: Output) -> None:
        watermark = part.clock.watermark(self._lateness_ms)
        if watermark is None:
            return
        for user in users.values():  # so what this record made due fires now, whatever the packing
            part.timers.schedule(user.user_id, user.deadline(self._slices))
            user.scheduled = True
        for user_id in part.timers.due(watermark):
            user = users.get(user_id)
            if user is None:
                user = users[user_id] = self._load(partition, user_id)
            user.scheduled = False  # its timer entry is used up
            for slice_ in user.due_slices(self._slices, watermark):
                out.add(slice_.on_watermark(user_id, user.get(slice_), watermark))
                user.acted(slice_)
                user.changed = True
            if not user.changed:  # woke early for a deadline that moved later: look again then
                part.timers.schedule(user_id, user.deadline(self._slices))

    def _write(self, partition: int, part: PartitionState, users: dict[str, UserState], out: Output) -> None:
        for user in users.values():
            if not user.changed:
                continue
            value = out.writes[user.key] = user.encode(self._slices)
            if value is None:
                self._cache.drop((user.key,))
            else:
                self._cache.put(user.key, user.envelope, user.decoded)
            if not user.scheduled:
                part.timers.schedule(user.user_id, user.deadline(self._slices))
            if not part.indexed:
                part.written_while_indexing.setdefault(user.user_id, user.live_before)
            after = user.live_after()
            if after != user.live_before:
                self._count_live(part, user.live_before, -1)
                self._count_live(part, after, 1)
        out.writes[clock_key(partition)] = part.clock.to_bytes()

    def _partition(self, partition: int) -> PartitionState:
        part = self._partitions.get(partition)
        if part is None:
            part = self._partitions[partition] = PartitionState(PartitionClock.from_bytes(self._store.get(clock_key(partition))))
            packed = self._store.get(forgotten_key(partition))
            part.forgotten = set(array("q", packed)) if packed else set()
        return part

    def _count_live(self, part: PartitionState, values: dict[str, int], sign: int) -> None:
        """Count (``sign`` 1) or uncount (-1) a user's live value per slice; a zero value counts nowhere."""
        for name, value in values.items():
            if value:
                part.live[name][value] += sign
                self._live[name][value] += sign

    def _load(self, partition: int, user_id: str) -> UserState:
        key = user_key(partition, user_id)
        cached = self._cache.get(key)
        if cached is not None:
            return UserState(user_id, key, cached[0], self._slices, cached[1])
        return UserState(user_id, key, decode_envelope(self._store.get(key)), self._slices)


def _too_late(event: Event, line: bytes, watermark: int) -> DeadLetter:
    """A too-late letter's id names the event, not the record: a replay or another packing folds into it."""
    message = f"event time {event.ts} is behind the watermark {watermark} by more than the allowed lateness"
    return DeadLetter.failed(line, "too_late", message, f"user {event.user_id}", f"too_late:{event.user_id}:{event.event_id}")
