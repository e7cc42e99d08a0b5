"""The ground truth: what a correct pipeline must compute from the stream, read off the model.

Every burst the model generated is exactly one session (see :mod:`producers.simulator.bursts`),
so sessions are taken from the bursts; every other figure is a sum over the generated events.
Nothing here parses the emitted lines or borrows pipeline code: the truth is an independent
witness of what the stream contains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from producers.simulator.bursts import Event
from producers.simulator.config import SimulationConfig
from producers.simulator.emission import EmissionCounts

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


@dataclass(slots=True)
class UserTruth:
    """One user_id: its sessions in time order, funnel, churn and money."""

    sessions: list[Session] = field(default_factory=list)
    funnel: dict[str, int] = field(default_factory=dict)  # step -> first time reached
    churned_at: int | None = None
    revenue_cents: int = 0  # purchases minus refunds
    purchases: int = 0
    mrr_cents: int = 0  # of the subscription at the end

    @property
    def first_touch(self) -> Source:
        return self.sessions[0].source

    def to_dict(self) -> dict[str, Any]:
        return {
            "sessions": [session.to_dict() for session in self.sessions],
            "funnel": self.funnel,
            "churned_at": self.churned_at,
            "revenue": self.revenue_cents / 100,
            "purchases": self.purchases,
            "first_touch": self.first_touch.to_dict(),
        }


@dataclass(frozen=True)
class GroundTruth:
    """The truth of one run: ``totals`` over the whole stream and every user's own figures."""

    config: SimulationConfig
    totals: dict[str, Any]
    users: dict[str, UserTruth]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (for orjson): ``config``, ``totals`` and ``users`` by user_id."""
        return {
            "config": asdict(self.config),
            "totals": self.totals,
            "users": {user_id: user.to_dict() for user_id, user in self.users.items()},
        }


class Tally:
    """Builds the ground truth one burst at a time, as the model generates them."""

    def __init__(self) -> None:
        self.users: dict[str, UserTruth] = {}
        self.events_by_type: dict[str, int] = {}
        self.sessions = self.visits = self.bounces = 0
        self.spend_cents: dict[str, int] = {}
        self.answers = dict.fromkeys(SURVEY_VALUES, 0)
        self.answer_values = dict.fromkeys(SURVEY_VALUES, 0)
        self._handlers = {
            "signup": self._funnel_step,
            "onboarding_completed": self._funnel_step,
            "trial_started": self._funnel_step,
            "subscription_started": self._subscription_started,
            "subscription_changed": self._mrr,
            "subscription_cancelled": self._cancelled,
            "purchase": self._purchase,
            "refund": self._refund,
            "survey_response": self._survey,
            "marketing_spend": self._spend,
        }

    def add(self, user_id: str, events: list[Event]) -> None:
        """One burst (one session) of ``user_id``, its events in time order."""
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = UserTruth()
        by_type, handlers = self.events_by_type, self._handlers
        page_views = 0
        entry_path = exit_path = None
        for event in events:
            event_type = event["type"]
            by_type[event_type] = by_type.get(event_type, 0) + 1
            if event_type == "page_view":
                page_views += 1
                exit_path = event["context"]["path"]
                entry_path = entry_path or exit_path
            elif event_type in handlers:
                handlers[event_type](user, event)
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
            "paying_customers": sum(user.purchases > 0 for user in users),
            "churned_customers": sum(user.churned_at is not None for user in users),
            "revenue": sum(user.revenue_cents for user in users) / 100,
            "mrr": sum(user.mrr_cents for user in users) / 100,
            "marketing_spend": {channel: cents / 100 for channel, cents in sorted(self.spend_cents.items())},
            **surveys,  # nps, csat, ces (None without answers) and their numbers of responses
            "tickets_opened": by_type.get("ticket_opened", 0),
            "tickets_resolved": by_type.get("ticket_resolved", 0),
            "tickets_reopened": by_type.get("ticket_reopened", 0),
        }
        return GroundTruth(config, totals, self.users)

    # --- per event type ---------------------------------------------------------------

    def _funnel_step(self, user: UserTruth, event: Event) -> None:
        user.funnel.setdefault(event["type"], event["ts"])

    def _subscription_started(self, user: UserTruth, event: Event) -> None:
        self._funnel_step(user, event)
        self._mrr(user, event)

    def _mrr(self, user: UserTruth, event: Event) -> None:
        user.mrr_cents = _cents(event["props"]["mrr"])

    def _cancelled(self, user: UserTruth, event: Event) -> None:
        if user.churned_at is None:
            user.churned_at = event["ts"]
        user.mrr_cents = 0

    def _purchase(self, user: UserTruth, event: Event) -> None:
        user.revenue_cents += _cents(event["props"]["amount"])
        user.purchases += 1

    def _refund(self, user: UserTruth, event: Event) -> None:
        user.revenue_cents -= _cents(event["props"]["amount"])

    def _survey(self, user: UserTruth, event: Event) -> None:
        kind, score = event["props"]["kind"], event["props"]["score"]
        self.answers[kind] += 1
        self.answer_values[kind] += SURVEY_VALUES[kind](score)

    def _spend(self, user: UserTruth, event: Event) -> None:
        channel = event["props"]["channel"]
        self.spend_cents[channel] = self.spend_cents.get(channel, 0) + _cents(event["props"]["amount"])
