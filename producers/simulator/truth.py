"""The ground truth: what a correct pipeline must compute from the stream, read off the model.

Every burst the model generated is exactly one session (see :mod:`producers.simulator.bursts`),
so sessions are taken from the bursts; every other figure is a sum over the generated events.
Funnels and churn are worked out from each user's generated events by the definitions below
(:func:`window_funnel`, :class:`ChurnWitness`), which also answer for hand-built event lists.
Nothing here parses the emitted lines or borrows pipeline code: the truth is an independent
witness of what the stream contains.

``totals`` holds, besides the counts, ``funnels`` and ``churn``::

    "funnels": {name: {"steps": [{"type": ..., "where": {...}}, ...], "window_ms": int,
                       "users_per_step": [users whose furthest step >= 1, >= 2, ...],
                       "per_user": {user_id: {"level": int, "step_ts": [ms, ...]}}}}
    "churn": {"inactive_days": float, "as_of_ms": int, "churned_users": int,
              "cancelled": int, "inactive": int,
              "per_user": {user_id: {"churned_at_ms": int, "reason": "cancelled" | "inactive"}}}
    "signup_outcomes": {"timeout_ms": int, "as_of_ms": int, "starters": int,
                        "finished": int, "abandoned": int, "in_progress": int}

``per_user`` names only users who entered the funnel (level >= 1), or who churned.

Each user also has its signup starts (:class:`SignupStart`: abandoned when its visit ended
without the signup), whose first one has an outcome by the rule of :func:`signup_outcome` (as of
the newest event, in ``signup_outcomes``), and what product adoption needs: its first and last
product use, its first payment and its last feature use (:attr:`UserTruth.repeat_user`,
:attr:`UserTruth.intended_use`).
"""

from __future__ import annotations

from array import array
from bisect import insort
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from itertools import pairwise
from typing import Any

from producers.simulator.bursts import Event
from producers.simulator.config import DAY, HOUR, SimulationConfig
from producers.simulator.emission import EmissionCounts
from pulse.contract import is_product_use

FUNNEL_STEPS = ("signup", "onboarding_completed", "trial_started", "subscription_started")
# Each survey figure is the mean of a value per answer: NPS counts +100 for a promoter (9-10) and
# -100 for a detractor (0-6), so the mean is %promoters - %detractors; CSAT counts 100 for a
# satisfied answer (4-5), so the mean is the satisfied share in percent; CES is the mean score.
SURVEY_VALUES: dict[str, Callable[[int], int]] = {
    "nps": lambda score: 100 * (score >= 9) - 100 * (score <= 6),
    "csat": lambda score: 100 * (score >= 4),
    "ces": lambda score: score,
}


def _cents(amount: float) -> int:
    return round(amount * 100)


# --- funnels ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelStep:
    """An event a funnel step counts: its type and, in ``where``, values it must have.

    ``where`` maps ``context.<key>`` or ``props.<key>`` to the string the event's field must equal.
    """

    type: str
    where: Mapping[str, str] = field(default_factory=dict)

    def matches(self, event: Event) -> bool:
        if event["type"] != self.type:
            return False
        for section, key, value in self._conditions:
            if (event.get(section) or {}).get(key) != value:
                return False
        return True

    @cached_property
    def _conditions(self) -> tuple[tuple[str, str, str], ...]:
        """``where`` as (``context`` or ``props``, key, value)."""
        split = ((path.partition("."), value) for path, value in self.where.items())
        return tuple((section, key, value) for (section, _, key), value in split)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "where": dict(self.where)} if self.where else {"type": self.type}


@dataclass(frozen=True)
class FunnelDefinition:
    """A named sequence of steps that must all fall within ``window_ms`` of the first."""

    name: str
    steps: tuple[FunnelStep, ...]
    window_ms: int

    def matches(self, event: Event) -> Iterable[tuple[int, int]]:
        """``(ts, step index from 0)`` for each step ``event`` counts as (ClickHouse adds one per condition met)."""
        return [(event["ts"], index) for index, step in enumerate(self.steps) if step.matches(event)]


FUNNELS = (
    FunnelDefinition(
        "pricing_to_paid",
        (
            FunnelStep("page_view", {"context.path": "/pricing"}),
            FunnelStep("signup"),
            FunnelStep("onboarding_completed"),
            FunnelStep("trial_started"),
            FunnelStep("subscription_started"),
        ),
        14 * DAY,
    ),
    FunnelDefinition("signup_to_purchase", (FunnelStep("signup"), FunnelStep("purchase")), 30 * DAY),
)


@dataclass(frozen=True, slots=True)
class FunnelProgress:
    """How far one user got in one funnel: ``level`` steps (0: none), each reached at ``step_ts``."""

    level: int
    step_ts: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "step_ts": list(self.step_ts)}


def window_funnel(matches: Iterable[tuple[int, int]], steps: int, window_ms: int) -> FunnelProgress:
    """ClickHouse's ``windowFunnel(window_ms)`` in its default mode, over ``(ts, step index)`` matches.

    The matches are taken in time order, a lower step first among equal times. Step 1 starts a
    chain (and a later step 1 a new one); step k+1 extends the latest chain that reached step k
    if it comes at most ``window_ms`` after that chain's step 1 (``ts - start <= window``); other
    events in between do not matter. The level is the furthest step any chain reached, and
    ``step_ts`` the step times of the chain that got there first (ClickHouse, too, stops at the
    first chain to complete the funnel).
    """
    reached: list[tuple[int, ...] | None] = [None] * steps  # step k: the times of the latest chain to reach it
    best: tuple[int, ...] = ()
    for ts, index in sorted(matches):
        if index == 0:
            chain: tuple[int, ...] = (ts,)
        else:
            previous = reached[index - 1]
            if previous is None or ts > previous[0] + window_ms:
                continue
            chain = (*previous, ts)
        reached[index] = chain
        if len(chain) > len(best):
            best = chain
            if len(best) == steps:
                break
    return FunnelProgress(len(best), best)


def funnel_progress(events: Iterable[Event], funnel: FunnelDefinition) -> FunnelProgress:
    """How far the user whose events these are got in ``funnel``."""
    return window_funnel((match for event in events for match in funnel.matches(event)), len(funnel.steps),
                         funnel.window_ms)  # fmt: skip


# --- churn --------------------------------------------------------------------------------

CANCELLED = "cancelled"
INACTIVE = "inactive"
SUBSCRIPTION_TYPES = frozenset({"trial_started", "subscription_started", "subscription_changed", "subscription_cancelled"})


@dataclass(frozen=True, slots=True)
class Churn:
    """When and why a user churned."""

    churned_at_ms: int
    reason: str  # CANCELLED or INACTIVE

    def to_dict(self) -> dict[str, Any]:
        return {"churned_at_ms": self.churned_at_ms, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ChurnSpell:
    """A time the user is churned for one reason: from ``churn.churned_at_ms`` until ``until_ms`` (None: still)."""

    churn: Churn
    until_ms: int | None


class ChurnWitness:
    """What decides whether and when one user churned, gathered from its events in any order.

    A user is churned while either of two spells lasts:

    - **cancelled**: from a cancellation (``subscription_cancelled``) until a trial or
      subscription is started or changed at a later time (one at the same time does not undo
      it); further cancellations in between change nothing;
    - **inactive**: from ``inactive_ms`` after a product use (:func:`pulse.contract.is_product_use`:
      not emails, billing, surveys or tickets) until the next one, when that comes strictly more
      than ``inactive_ms`` later (or never).

    The user *enters* churn at the start of each stretch of time covered by spells; a product
    use ends an inactive spell and a start ends a cancelled one (both are product use), so a
    user may churn, come back and churn again. :meth:`entries` lists those moments;
    :meth:`verdict` reads the spells still open after the last event. The witness keeps every
    product use's time (8 bytes each, in an ``array``: a gap longer than ``inactive_ms`` may lie
    between any two, and ``inactive_ms`` is only known when asked) and every subscription event.
    """

    __slots__ = ("_subscriptions", "_uses")

    def __init__(self) -> None:
        self._uses = array("q")  # product-use times, in time order
        self._subscriptions: list[tuple[int, bool]] = []  # (ts, is a cancellation), in arrival order

    def see(self, event: Event) -> None:
        if is_product_use(event["type"]):
            self.active(event["ts"])
        if event["type"] in SUBSCRIPTION_TYPES:
            self.subscription(event)

    def active(self, ts: int) -> None:
        """Product use by the user at ``ts``."""
        if not self._uses or ts >= self._uses[-1]:
            self._uses.append(ts)  # the simulator's events come in time order: the usual case
        else:
            insort(self._uses, ts)

    def subscription(self, event: Event) -> None:
        """A cancellation, or a trial or subscription started or changed (which ends a cancelled spell)."""
        self._subscriptions.append((event["ts"], event["type"] == "subscription_cancelled"))

    def verdict(self, as_of_ms: int, inactive_ms: int) -> Churn | None:
        """Whether, since when and why the user is churned after its last event, as of ``as_of_ms``.

        A cancelled spell still open decides (at its first cancellation), though an inactive one
        may have begun earlier: the reason is the cause that holds now. Otherwise an inactive
        spell still open counts once ``as_of_ms`` is strictly past its start. ``as_of_ms`` only
        ages the silence: every event seen is taken, so it is meant to be after the last one.
        """
        cancelled, inactive = self._cancelled_spells(), self._inactive_spells(inactive_ms)
        for spells in (cancelled, inactive):
            if spells and spells[-1].until_ms is None and spells[-1].churn.churned_at_ms < as_of_ms:
                return spells[-1].churn
        return None

    def entries(self, as_of_ms: int, inactive_ms: int) -> list[Churn]:
        """Each moment before ``as_of_ms`` the user entered churn, in time order, with the spell that began it.

        Spells that overlap or touch make one stretch of churn, entered once; among spells
        beginning together, a cancellation names the reason (as in :meth:`verdict`).
        """
        spells = sorted((*self._cancelled_spells(), *self._inactive_spells(inactive_ms)),
                        key=lambda spell: (spell.churn.churned_at_ms, spell.churn.reason != CANCELLED))  # fmt: skip
        entries: list[Churn] = []
        churned_until: int | None = None  # the end of the latest stretch of churn (None: open-ended)
        for spell in spells:
            start = spell.churn.churned_at_ms
            if start >= as_of_ms:
                break
            if not entries or (churned_until is not None and start > churned_until):
                entries.append(spell.churn)
                churned_until = spell.until_ms
            elif churned_until is not None:
                churned_until = None if spell.until_ms is None else max(churned_until, spell.until_ms)
        return entries

    def _cancelled_spells(self) -> list[ChurnSpell]:
        """From each cancellation after a start (or the first ever) until the next start strictly later."""
        spells: list[ChurnSpell] = []
        since: int | None = None  # the cancellation the open spell began with
        # At a tie a start (False) sorts first: one at the time of a cancellation does not undo it.
        for ts, cancelled in sorted(self._subscriptions):
            if cancelled and since is None:
                since = ts
            elif not cancelled and since is not None:
                spells.append(ChurnSpell(Churn(since, CANCELLED), ts))
                since = None
        if since is not None:
            spells.append(ChurnSpell(Churn(since, CANCELLED), None))
        return spells

    def _inactive_spells(self, inactive_ms: int) -> list[ChurnSpell]:
        """From ``inactive_ms`` after each product use until the next, if that is strictly more than ``inactive_ms`` later."""
        uses = self._uses
        spells = [ChurnSpell(Churn(used + inactive_ms, INACTIVE), after)
                  for used, after in pairwise(uses) if after - used > inactive_ms]  # fmt: skip
        if uses:
            spells.append(ChurnSpell(Churn(uses[-1] + inactive_ms, INACTIVE), None))
        return spells


def churned_alerts(entries: Iterable[Churn], cooldown_ms: int) -> list[Churn]:
    """The churn entries a job alerting on each rise to churned raises, with none within ``cooldown_ms`` of the last.

    The cool-down counts from the last entry that alerted, not the last entry: an entry it
    silenced does not extend it (``stream_jobs.churn_job``: at most one alert per tier within it).
    """
    alerts: list[Churn] = []
    for entry in entries:
        if not alerts or entry.churned_at_ms - alerts[-1].churned_at_ms >= cooldown_ms:
            alerts.append(entry)
    return alerts


def inactive_ms_of(days: float) -> int:
    return round(days * DAY)


def churn_of(events: Iterable[Event], as_of_ms: int, inactive_days: float = 30.0) -> Churn | None:
    """Whether, when and why the user whose events these are had churned at ``as_of_ms``."""
    witness = ChurnWitness()
    for event in events:
        witness.see(event)
    return witness.verdict(as_of_ms, inactive_ms_of(inactive_days))


@dataclass(frozen=True, slots=True)
class Source:
    """Where a session came from: the UTM tags and referrer of its first event."""

    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    referrer: str | None = None

    @classmethod
    def of(cls, context: dict[str, Any]) -> Source:
        if not context.keys() & SOURCE_FIELDS:
            return NO_SOURCE
        return cls(context.get("utm_source"), context.get("utm_medium"), context.get("utm_campaign"),
                   context.get("referrer"))  # fmt: skip

    def to_dict(self) -> dict[str, str | None]:
        return {
            "utm_source": self.utm_source,
            "utm_medium": self.utm_medium,
            "utm_campaign": self.utm_campaign,
            "referrer": self.referrer,
        }


SOURCE_FIELDS = frozenset(Source.__dataclass_fields__)
NO_SOURCE = Source()


@dataclass(frozen=True, slots=True)
class Session:
    """One session of one user, as the pipeline's 30-minute / 24-hour rule must find it."""

    start: int
    end: int
    events: int
    page_views: int
    entry_path: str | None  # the first page view's path
    exit_path: str | None  # the last page view's path
    source: Source
    device: str | None  # context.device of the first event

    @property
    def bounce(self) -> bool:
        """Exactly one page view and nothing else."""
        return self.page_views == 1 and self.events == 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "events": self.events,
            "page_views": self.page_views,
            "bounce": self.bounce,
            "entry_path": self.entry_path,
            "exit_path": self.exit_path,
            "source": self.source.to_dict(),
            "device": self.device,
        }


# --- signup abandonment --------------------------------------------------------------------

FINISHED = "finished"
ABANDONED = "abandoned"
IN_PROGRESS = "in_progress"
SIGNUP_TIMEOUT_MS = DAY  # docs/metrics.md, signup abandonment (ACT-10)


def signup_outcome(
    started_ms: int, signed_up_ms: int | None, as_of_ms: int, timeout_ms: int = SIGNUP_TIMEOUT_MS
) -> str:
    """How a user's first ``signup_started`` at ``started_ms`` ended, as known at ``as_of_ms``.

    FINISHED when the signup came at or after the start and at most ``timeout_ms`` later (the edge
    included); otherwise ABANDONED once ``as_of_ms`` is strictly past the timeout, before that
    IN_PROGRESS: a signup may still come. ``signed_up_ms`` is the user's signup (a user signs up
    once), None without one.
    """
    deadline = started_ms + timeout_ms
    if signed_up_ms is not None and started_ms <= signed_up_ms <= deadline:
        return FINISHED
    return ABANDONED if as_of_ms > deadline else IN_PROGRESS


@dataclass(frozen=True, slots=True)
class SignupStart:
    """A ``signup_started``: when, and whether it was abandoned (no signup after it in its visit)."""

    ts: int
    abandoned: bool

    def to_dict(self) -> dict[str, Any]:
        return {"ts": self.ts, "abandoned": self.abandoned}


@dataclass(slots=True)
class UserTruth:
    """One user_id: its sessions in time order, funnel, churn, money, signup starts and product use."""

    sessions: list[Session] = field(default_factory=list)
    funnel: dict[str, int] = field(default_factory=dict)  # step -> first time reached
    churned_at: int | None = None
    revenue_cents: int = 0  # purchases minus refunds
    purchases: int = 0
    mrr_cents: int = 0  # of the subscription at the end
    signup_starts: list[SignupStart] = field(default_factory=list)  # in time order
    first_use_ms: int | None = None  # product use, as pulse.contract.is_product_use
    last_use_ms: int | None = None
    paid_ms: int | None = None  # the first purchase or subscription_started
    last_feature_ms: int | None = None  # the last feature_used

    @property
    def first_touch(self) -> Source:
        return self.sessions[0].source

    @property
    def repeat_user(self) -> bool:
        """Product use on two UTC days or more: a repeat user (ACT-4, 000:397), not a one-time one."""
        first, last = self.first_use_ms, self.last_use_ms
        return first is not None and last is not None and first // DAY != last // DAY

    @property
    def intended_use(self) -> bool:
        """Paid, and used a feature at or after paying: the product used for its intended use (ACT-4, 001:836)."""
        return self.paid_ms is not None and self.last_feature_ms is not None and self.last_feature_ms >= self.paid_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "sessions": [session.to_dict() for session in self.sessions],
            "funnel": self.funnel,
            "churned_at": self.churned_at,
            "revenue": self.revenue_cents / 100,
            "purchases": self.purchases,
            "first_touch": self.first_touch.to_dict(),
            "signup_starts": [start.to_dict() for start in self.signup_starts],
            "repeat_user": self.repeat_user,
            "intended_use": self.intended_use,
        }


@dataclass(frozen=True)
class GroundTruth:
    """The truth of one run: ``totals`` over the whole stream and every user's own figures."""

    config: SimulationConfig
    totals: dict[str, Any]
    users: dict[str, UserTruth]
    activity: dict[str, ChurnWitness] = field(default_factory=dict, repr=False, compare=False)

    def churn_as_of(self, as_of_ms: int, inactive_days: float | None = None) -> dict[str, Churn]:
        """Who had churned at another moment than the window's end (``totals["churn"]`` is at its end)."""
        days = self.config.inactive_days if inactive_days is None else inactive_days
        verdicts = {
            user_id: witness.verdict(as_of_ms, inactive_ms_of(days)) for user_id, witness in self.activity.items()
        }
        return {user_id: churn for user_id, churn in verdicts.items() if churn is not None}

    def churn_entries(self, as_of_ms: int, inactive_days: float | None = None) -> dict[str, list[Churn]]:
        """Every moment before ``as_of_ms`` each user entered churn (:meth:`ChurnWitness.entries`), for users who did."""
        inactive_ms = inactive_ms_of(self.config.inactive_days if inactive_days is None else inactive_days)
        entries = {user_id: witness.entries(as_of_ms, inactive_ms) for user_id, witness in self.activity.items()}
        return {user_id: churns for user_id, churns in entries.items() if churns}

    def signup_outcomes(self, as_of_ms: int | None = None) -> dict[str, str]:
        """Each signup starter's :func:`signup_outcome`, by default as of the newest event (as ``totals``)."""
        as_of = self.totals["signup_outcomes"]["as_of_ms"] if as_of_ms is None else as_of_ms
        return {user_id: signup_outcome(user.signup_starts[0].ts, user.funnel.get("signup"), as_of)
                for user_id, user in self.users.items() if user.signup_starts}  # fmt: skip

    def churned_alerts(self, as_of_ms: int, cooldown_hours: float,
                       inactive_days: float | None = None) -> dict[str, list[Churn]]:  # fmt: skip
        """The alerts of a rise to churned before ``as_of_ms``, none within ``cooldown_hours`` of the user's last.

        Medium and high alerts follow the job's weighted score, which has no independent
        definition here: only a rise to churned has one.
        """
        cooldown_ms = round(cooldown_hours * HOUR)
        return {user_id: churned_alerts(entries, cooldown_ms)
                for user_id, entries in self.churn_entries(as_of_ms, inactive_days).items()}  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (for orjson): ``config``, ``totals`` and ``users`` by user_id."""
        return {
            "config": asdict(self.config),
            "totals": self.totals,
            "users": {user_id: user.to_dict() for user_id, user in self.users.items()},
        }


class Tally:
    """Builds the ground truth one burst at a time, as the model generates them."""

    def __init__(self, funnels: tuple[FunnelDefinition, ...] = FUNNELS) -> None:
        self.users: dict[str, UserTruth] = {}
        self.funnels = funnels
        self._funnel_matches: dict[str, list[list[tuple[int, int]]]] = {}  # user -> funnel -> (ts, step)
        self._steps_by_type: dict[str, list[tuple[int, int, FunnelStep]]] = {}  # type -> (funnel, index, step)
        for number, funnel in enumerate(funnels):
            for index, step in enumerate(funnel.steps):
                self._steps_by_type.setdefault(step.type, []).append((number, index, step))
        self.activity: dict[str, ChurnWitness] = {}
        self.events_by_type: dict[str, int] = {}
        self.sessions = self.visits = self.bounces = 0
        self.spend_cents: dict[str, int] = {}
        self.answers = dict.fromkeys(SURVEY_VALUES, 0)
        self.answer_values = dict.fromkeys(SURVEY_VALUES, 0)
        self._visit_starts: list[int] = []  # the signup starts of the burst being added, settled at its end
        self.newest_ms = 0  # the newest event's time
        self._handlers = {
            "signup_started": self._signup_started,
            "signup": self._funnel_step,
            "onboarding_completed": self._funnel_step,
            "trial_started": self._funnel_step,
            "subscription_started": self._subscription_started,
            "subscription_changed": self._mrr,
            "subscription_cancelled": self._cancelled,
            "purchase": self._purchase,
            "refund": self._refund,
            "feature_used": self._feature_used,
            "survey_response": self._survey,
            "marketing_spend": self._spend,
        }

    def add(self, user_id: str, events: list[Event]) -> None:
        """One burst (one session) of ``user_id``, its events in time order."""
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = UserTruth()
            self.activity[user_id] = ChurnWitness()
            self._funnel_matches[user_id] = [[] for _ in self.funnels]
        witness, funnel_matches = self.activity[user_id], self._funnel_matches[user_id]
        by_type, handlers, steps_by_type = self.events_by_type, self._handlers, self._steps_by_type
        page_views = 0
        entry_path = exit_path = None
        for event in events:
            event_type = event["type"]
            if is_product_use(event_type):
                witness.active(event["ts"])
                if user.first_use_ms is None:
                    user.first_use_ms = event["ts"]
                user.last_use_ms = event["ts"]
            by_type[event_type] = by_type.get(event_type, 0) + 1
            if event_type in steps_by_type:
                for number, index, step in steps_by_type[event_type]:
                    if step.matches(event):
                        funnel_matches[number].append((event["ts"], index))
            if event_type in SUBSCRIPTION_TYPES:
                witness.subscription(event)
            if event_type == "page_view":
                page_views += 1
                exit_path = event["context"]["path"]
                entry_path = entry_path or exit_path
            elif event_type in handlers:
                handlers[event_type](user, event)
        if self._visit_starts:
            self._settle_signup_starts(user, events)
        self.newest_ms = max(self.newest_ms, events[-1]["ts"])
        context = events[0].get("context", {})
        session = Session(events[0]["ts"], events[-1]["ts"], len(events), page_views, entry_path, exit_path,
                          Source.of(context), context.get("device"))  # fmt: skip
        user.sessions.append(session)
        self.sessions += 1
        self.visits += page_views > 0
        self.bounces += session.bounce

    def finish(self, config: SimulationConfig, counts: EmissionCounts) -> GroundTruth:
        """The truth, once every burst was added and the emitter has counted its lines."""
        users = self.users.values()
        by_type = self.events_by_type
        reached = {step: sum(step in user.funnel for user in users) for step in FUNNEL_STEPS}
        surveys: dict[str, float | int | None] = {}
        for kind, answers in self.answers.items():
            surveys[kind] = self.answer_values[kind] / answers if answers else None
            surveys[f"{kind}_responses"] = answers
        totals = {
            "lines": counts.lines,
            "events": sum(by_type.values()),
            "duplicate_lines": counts.duplicates,
            "malformed_lines": dict(counts.malformed),
            "late_lines": counts.late,
            "events_by_type": dict(sorted(by_type.items())),
            "users": len(self.users),
            "sessions": self.sessions,
            "visits": self.visits,  # sessions with at least one page view
            "bounces": self.bounces,
            "bounce_rate": self.bounces / self.visits if self.visits else None,  # of visits
            "signups": reached["signup"],
            "onboarding_completions": reached["onboarding_completed"],
            "trials": reached["trial_started"],
            "trial_conversions": sum(
                "trial_started" in user.funnel and "subscription_started" in user.funnel for user in users
            ),
            "signup_starts": sum(len(user.signup_starts) for user in users),
            "signup_abandonments": sum(start.abandoned for user in users for start in user.signup_starts),
            "product_users": sum(user.first_use_ms is not None for user in users),
            "repeat_users": sum(user.repeat_user for user in users),
            "intended_use_users": sum(user.intended_use for user in users),
            "paying_customers": sum(user.purchases > 0 for user in users),
            "churned_customers": sum(user.churned_at is not None for user in users),
            "revenue": sum(user.revenue_cents for user in users) / 100,
            "mrr": sum(user.mrr_cents for user in users) / 100,
            "marketing_spend": {channel: cents / 100 for channel, cents in sorted(self.spend_cents.items())},
            **surveys,  # nps, csat, ces (None without answers) and their numbers of responses
            "tickets_opened": by_type.get("ticket_opened", 0),
            "tickets_resolved": by_type.get("ticket_resolved", 0),
            "tickets_reopened": by_type.get("ticket_reopened", 0),
            "funnels": self._funnels(),
            "churn": self._churn(config),
            "signup_outcomes": self._signup_outcomes(),
        }
        return GroundTruth(config, totals, self.users, self.activity)

    def _funnels(self) -> dict[str, Any]:
        figures = {}
        for number, funnel in enumerate(self.funnels):
            per_user = {}
            for user_id, matches in self._funnel_matches.items():
                if matches[number]:
                    progress = window_funnel(matches[number], len(funnel.steps), funnel.window_ms)
                    if progress.level:
                        per_user[user_id] = progress.to_dict()
            levels = [progress["level"] for progress in per_user.values()]
            figures[funnel.name] = {
                "steps": [step.to_dict() for step in funnel.steps],
                "window_ms": funnel.window_ms,
                "users_per_step": [sum(level >= step for level in levels) for step in range(1, len(funnel.steps) + 1)],
                "per_user": per_user,
            }
        return figures

    def _churn(self, config: SimulationConfig) -> dict[str, Any]:
        """Churn at the window's end (``config.end_ms``) by ``config.inactive_days`` of inactivity."""
        inactive_ms = inactive_ms_of(config.inactive_days)
        per_user = {}
        for user_id, witness in self.activity.items():
            churn = witness.verdict(config.end_ms, inactive_ms)
            if churn is not None:
                per_user[user_id] = churn.to_dict()
        reasons = [churn["reason"] for churn in per_user.values()]
        return {
            "inactive_days": config.inactive_days,
            "as_of_ms": config.end_ms,
            "churned_users": len(per_user),
            CANCELLED: reasons.count(CANCELLED),
            INACTIVE: reasons.count(INACTIVE),
            "per_user": per_user,
        }

    def _settle_signup_starts(self, user: UserTruth, events: list[Event]) -> None:
        """The visit's signup starts, each abandoned unless a signup comes after it in the visit."""
        signed_up = [event["ts"] for event in events if event["type"] == "signup"]
        for ts in self._visit_starts:
            user.signup_starts.append(SignupStart(ts, not any(signup >= ts for signup in signed_up)))
        self._visit_starts.clear()

    def _signup_outcomes(self) -> dict[str, Any]:
        """The signup starters by the outcome of their first start, as of the newest event."""
        outcomes = [signup_outcome(user.signup_starts[0].ts, user.funnel.get("signup"), self.newest_ms)
                    for user in self.users.values() if user.signup_starts]  # fmt: skip
        return {
            "timeout_ms": SIGNUP_TIMEOUT_MS,
            "as_of_ms": self.newest_ms,
            "starters": len(outcomes),
            **{outcome: outcomes.count(outcome) for outcome in (FINISHED, ABANDONED, IN_PROGRESS)},
        }

    # --- per event type ---------------------------------------------------------------

    def _signup_started(self, user: UserTruth, event: Event) -> None:
        self._visit_starts.append(event["ts"])

    def _funnel_step(self, user: UserTruth, event: Event) -> None:
        user.funnel.setdefault(event["type"], event["ts"])

    def _subscription_started(self, user: UserTruth, event: Event) -> None:
        self._funnel_step(user, event)
        self._mrr(user, event)
        self._paid(user, event)

    def _paid(self, user: UserTruth, event: Event) -> None:
        if user.paid_ms is None:
            user.paid_ms = event["ts"]

    def _feature_used(self, user: UserTruth, event: Event) -> None:
        user.last_feature_ms = event["ts"]

    def _mrr(self, user: UserTruth, event: Event) -> None:
        user.mrr_cents = _cents(event["props"]["mrr"])

    def _cancelled(self, user: UserTruth, event: Event) -> None:
        if user.churned_at is None:
            user.churned_at = event["ts"]
        user.mrr_cents = 0

    def _purchase(self, user: UserTruth, event: Event) -> None:
        user.revenue_cents += _cents(event["props"]["amount"])
        user.purchases += 1
        self._paid(user, event)

    def _refund(self, user: UserTruth, event: Event) -> None:
        user.revenue_cents -= _cents(event["props"]["amount"])

    def _survey(self, user: UserTruth, event: Event) -> None:
        kind, score = event["props"]["kind"], event["props"]["score"]
        self.answers[kind] += 1
        self.answer_values[kind] += SURVEY_VALUES[kind](score)

    def _spend(self, user: UserTruth, event: Event) -> None:
        channel = event["props"]["channel"]
        self.spend_cents[channel] = self.spend_cents.get(channel, 0) + _cents(event["props"]["amount"])
