"""The churn-risk job: each user's features (:mod:`stream_jobs.churn_windows`), scored (:mod:`.churn_scoring`).

Slice ``churn``: the user's windows, the latest assessment as published, the event time it
holds at, the row version and when each tier last alerted, as a compact JSON array.

**When a user is assessed.** After every one of their events, as of the latest event time
seen: a record is an accident of packing, so scoring per event makes the rows the same
however the producer split the events (property-tested). Time also moves the score with no
event (a day more of silence, the churn point: :func:`.churn_scoring.next_change`). Those
**checks** run when the watermark passes them (the timer), or before an event of the user is
taken in if the check is behind that event by the allowed lateness: either way no event from
before the check can still arrive, so a check never judges a user on half of their past (no
"churned at day 30" for lack of a login from day 29 still on its way), and it runs on the same
state whichever of the two got to it first. In order, the rows are therefore the same however
the events were packed, other users' events in the records included.

**Rows.** A ``churn_scores`` row whenever the score (two decimals), tier or reasons change;
its ``version`` is a counter of those changes, but never below the row's event time in ms:
when a churned user's slice was dropped and the user comes back, the new rows still outrank
the old ones in ``ReplacingMergeTree(version)``. A ``churn_alerts`` row when the tier rises
(low < medium < high < churned; a user's first assessment rises from low), with an id derived
from the user, the new tier and the event time, so a replay or a re-run publishes the same id;
at most one per tier of a user within the cool-down. A falling tier (the user came back) gets
a score row and no alert.

**Replays** republish the current score row (:meth:`ChurnJob.current_rows`), never alerts: an
alert marks an edge, the moment the tier rose, and the first attempt published it already;
publishing it again from the current state would invent a second rise (or, after the
cool-down, an alert nobody raised) rather than repeat the first.

**Retention.** A user with nothing left to check (churned, or never active) whose last event is
older than ``retention_ms`` is forgotten, by the timer or when they come back after longer:
their churned row stays in ClickHouse, and they start anew, as a customer back after a long
absence should (RET-4, 000:50 in ``../shared/metrics-catalog.md``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any

import orjson

from pulse.contract import Event
from pulse.outputs import CHURN_ALERTS, CHURN_SCORES
from stream_jobs.churn_scoring import RANK, Assessment, ChurnRules, next_change, score
from stream_jobs.churn_windows import DAY_MS, KEPT_DAYS, UserWindows
from stream_jobs.job import Row

CHURN_SLICE = "churn"


@dataclass
class ChurnState:
    """One user's churn slice."""

    windows: UserWindows = field(default_factory=UserWindows)
    now: int | None = None  # the event time the latest assessment holds at
    current: Assessment | None = None  # the latest assessment, as published
    published_at: int | None = None  # the event time of the row that published it
    version: int = 0  # of that row
    alerted: dict[str, int] = field(default_factory=dict)  # tier -> event time of its latest alert
    # ChurnJob._next_check as of the state as it is, boxed (a check may be None); None: to work out again.
    # Not encoded: it spares the work for the deadline, which the runner asks after each record and on_events first
    next_check: tuple[int | None] | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> list[Any]:
        current = self.current and [self.current.score, self.current.tier, self.current.reasons]
        return [self.windows.to_json(), self.now, current, self.published_at, self.version, self.alerted]

    @classmethod
    def from_json(cls, data: list[Any]) -> ChurnState:
        windows, now, current, published_at, version, alerted = data
        assessment = current and Assessment(*current)
        return cls(UserWindows.from_json(windows), now, assessment, published_at, version, alerted)

    def add(self, event: Event) -> None:
        """Fold an event into the windows; the next check may move with them."""
        self.windows.add(event)
        self.next_check = None

    def forget(self) -> None:
        """Become the slice of a user never seen (so the runner drops it)."""
        vars(self).update(vars(ChurnState()))


@dataclass(frozen=True)
class ChurnJob:
    """Churn risk per user: scores as they change, alerts as tiers rise.

    ``lateness_ms`` must be at least the runner's allowed lateness: checks are run before an
    event only when they are that far behind it.
    """

    rules: ChurnRules
    retention_ms: int
    lateness_ms: int

    name = CHURN_SLICE
    version = 1
    outputs = (CHURN_SCORES, CHURN_ALERTS)
    event_types = None  # any event: even an email moves the time a score is as of

    def __post_init__(self) -> None:
        if self.retention_ms <= 0:
            raise ValueError("the churn job's retention must be positive")
        if not 0 <= self.lateness_ms < KEPT_DAYS * DAY_MS:
            raise ValueError(f"the churn job's lateness must be >= 0 and below the {KEPT_DAYS} days it keeps")

    def empty(self) -> ChurnState:
        return ChurnState()

    def decode(self, data: bytes, version: int) -> ChurnState:
        if version != 1:
            raise ValueError(f"churn slice version {version} is newer than this worker reads (1)")
        return ChurnState.from_json(orjson.loads(data))

    def encode(self, state: ChurnState) -> bytes:
        return orjson.dumps(state.to_json())

    def is_empty(self, state: ChurnState) -> bool:
        return state.windows.latest is None

    def live(self, state: ChurnState) -> int:
        """The tier's rank from 1 (low) to 4 (churned), 0 before any assessment: users by tier for a gauge."""
        return 0 if state.current is None else RANK[state.current.tier] + 1

    def on_events(self, user_id: str, state: ChurnState, events: Sequence[Event]) -> list[Row]:
        rows: list[Row] = []
        due = self._next_check(state)  # plain activity only moves it later: it stays a lower bound
        for event in events:
            before = event.ts - self.lateness_ms
            if due is None or due < before:
                self._catch_up(user_id, state, before, rows)
                due = self._next_check(state)
            if state.now is not None and self._stands(state, event, due):
                state.add(event)  # the assessment stands: only its time moves
                state.now = max(state.now, event.ts)
                continue
            state.add(event)
            self._assess(user_id, state, event.ts if state.now is None else max(state.now, event.ts), rows)
            due = self._next_check(state)
        return rows

    def deadline(self, state: ChurnState) -> int | None:
        due = self._next_check(state)
        if due is not None or state.windows.latest is None:
            return due
        return state.windows.latest + self.retention_ms

    def on_watermark(self, user_id: str, state: ChurnState, watermark: int) -> list[Row]:
        rows: list[Row] = []
        self._catch_up(user_id, state, watermark, rows)
        return rows

    def current_rows(self, user_id: str, state: ChurnState) -> list[Row]:
        if state.current is None or state.published_at is None:
            return []
        return [_score_row(user_id, state.current, state.published_at, state.version)]

    def merge(self, user_id: str, state: ChurnState, other_id: str, other: ChurnState) -> list[Row]:
        """A person with no activity of their own takes the merged id's windows and score; else theirs stand.

        Risk is about a customer's own use: an anonymous visitor merged into a customer who is
        already scored adds page views from before they signed in, which the windows cannot
        place among the customer's days without replaying both; they are left out.
        """
        if not self.is_empty(state) or self.is_empty(other):
            return []
        vars(state).update(vars(other))
        return self.current_rows(user_id, state)

    # --- internals --------------------------------------------------------------------

    def _next_check(self, state: ChurnState) -> int | None:
        """:meth:`_first_change`, worked out once until the state changes."""
        if state.next_check is None:
            state.next_check = (self._first_change(state),)
        return state.next_check[0]

    def _first_change(self, state: ChurnState) -> int | None:
        """The next event time the assessment may change without a new event.

        A day of silence moves the inactivity signal only after the grace days; until then only
        the windowed signals can change the score, so when they cannot move either the check waits
        for the first day that counts (most users, whose history is short or calm).
        """
        if state.current is None or state.now is None:
            return None
        last = state.windows.last_activity
        due = next_change(last, state.current.tier, state.now, self.rules)
        if due is not None and last is not None:
            counted = last + (math.floor(self.rules.grace_days) + 1) * DAY_MS  # the first silent day that counts
            rules = self.rules
            if due < counted and not state.windows.may_move(state.now, counted, rules.min_active_days, rules.min_purchases):
                due = min(counted, last + rules.inactive_ms)
        return due

    def _stands(self, state: ChurnState, event: Event, due: int | None) -> bool:
        """Whether the assessment as of ``event`` (folded in) is the current one, so scoring it can be skipped.

        Plain product use on a day that already had some changes nothing. Nor does plain use that
        moves time on for a user with no signal (the usual first use of a day), while no windowed
        signal may move up to it: use only lowers the signals it touches (the silence, an activity
        drop), so none appears. An event that moves no feature (an email, an ad) only moves time
        on: before ``due`` (at most the next check, when a day of silence or the churn point may
        change the score) the score stands, unless the event starts a new UTC day while a windowed
        signal may move. With no next check, a user never active has no silence to count either; a
        churned one has, and each event says again for how many days they were silent: it is scored.
        """
        now, current = state.now, state.current
        assert now is not None and current is not None
        windows, rules = state.windows, self.rules
        if windows.adds_nothing_new(event, now):
            return True
        if windows.is_plain_use(event.type):
            quiet = not current.reasons and event.ts >= now  # no signal; a use at or after "now" leaves no silence
            return quiet and not windows.may_move(now, event.ts, rules.min_active_days, rules.min_purchases)
        if windows.moves_features(event.type):
            return False
        later = max(now, event.ts)
        if current.reasons if due is None else later >= due:  # None and a reason: churned
            return False
        return later // DAY_MS == now // DAY_MS or not windows.may_move(now, later, rules.min_active_days, rules.min_purchases)

    def _catch_up(self, user_id: str, state: ChurnState, before: int, rows: list[Row]) -> None:
        """Run the checks due before event time ``before`` in order; forget the user if the retention passed too.

        The timer calls it with the watermark, :meth:`on_events` with an event's time less the
        lateness: whichever shows first that time passed, the outcome is the same.
        """
        due = self._next_check(state)
        while due is not None and due < before:
            self._assess(user_id, state, due, rows)
            due = self._next_check(state)
        latest = state.windows.latest
        if due is None and latest is not None and latest + self.retention_ms < before:
            state.forget()

    def _assess(self, user_id: str, state: ChurnState, now: int, rows: list[Row]) -> None:
        """Score the user as of ``now``; publish a row if that changed, and an alert if the tier rose."""
        state.now, state.next_check = now, None
        assessment = score(state.windows.features(now), now, self.rules)
        previous = state.current
        if assessment == previous:
            return
        state.current, state.published_at, state.version = assessment, now, max(state.version + 1, now)
        rows.append(_score_row(user_id, assessment, now, state.version))
        old_tier = "low" if previous is None else previous.tier
        tier = assessment.tier
        last_alert = state.alerted.get(tier)
        if RANK[tier] > RANK[old_tier] and (last_alert is None or now - last_alert >= self.rules.cooldown_ms):
            state.alerted[tier] = now
            rows.append(Row(CHURN_ALERTS, {
                "alert_id": alert_id(user_id, tier, now),
                "user_id": user_id,
                "old_tier": old_tier,
                "new_tier": tier,
                "score": assessment.score,
                "reasons": assessment.reasons,
                "ts": now,
                "emitted_at": time.time_ns() // 1_000_000,
            }))  # fmt: skip


def _score_row(user_id: str, assessment: Assessment, ts: int, version: int) -> Row:
    return Row(CHURN_SCORES, {
        "user_id": user_id,
        "score": assessment.score,
        "tier": assessment.tier,
        "reasons": assessment.reasons,
        "ts": ts,
        "version": version,
    })  # fmt: skip


def alert_id(user_id: str, tier: str, ts: int) -> str:
    """Deterministic from the user, the new tier and the event time of the rise: a replay publishes the same id."""
    return blake2b(f"{user_id}\x00{tier}\x00{ts}".encode(), digest_size=16).hexdigest()
