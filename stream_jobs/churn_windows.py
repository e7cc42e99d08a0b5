"""A user's churn-risk features in event time: day buckets and latest answers, free of Faust and Kafka.

What churn looks like in events (``../shared/metrics-catalog.md``): usage that stops or
shrinks (RET-9 dormancy, ENG-3 usage frequency, RET-1 "ceasing their logins ... or not buying
anything else", 002:228), a cancelled subscription or failed renewals (RET-1, 002:269),
unhappy survey answers (SAT-1 NPS, SAT-2 CSAT, SAT-3 CES) and unresolved support problems
(003:104). :class:`UserWindows` keeps what those need and :meth:`UserWindows.features` reads
them as of a point in event time:

- **day buckets** per UTC day index: activity events, purchases and net revenue in cents
  (integer cents, so sums do not depend on the order they were added in). Windows are whole
  days relative to the day of "now": the last 7 and 30 days, and the 30 before those.
  Frequency is counted in *active days*, not events: one binge day is not a habit, and the
  power-user curve counts days too (ENG-6, 001:686). Sessions are left to the sessions job:
  a "new session after 30 minutes of silence" count needs every event's neighbours, which an
  out-of-order arrival changes;
- **latest by event time** (ties broken by the event id's hash, as everywhere in the
  pipeline): subscription state and plan, each survey kind's answer, each ticket's status;
- **maxima and sets**: last activity, latest event, latest successful payment, failed
  payments (their times, newest :data:`MAX_FAILED_PAYMENTS`), tickets by ``ticket_id``.

Every part is a sum, a maximum, a latest-by-key or a set, so the same events in any arrival
order give the same state (property-tested). Buckets, failed payments and tickets older than
:data:`KEPT_DAYS` before the user's latest event are dropped; no event that old can still
come, since the runner refuses events behind the watermark (the allowed lateness is minutes,
not months), so pruning does not depend on arrival order either.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pulse.contract import PRODUCT_USE_TYPES, SURVEY_SCALES, Event
from stream_jobs.dedup import id_hash

DAY_MS = 86_400_000
KEPT_DAYS = 60  # today and the 59 days before: the last 30 days and the 30 before them
MAX_FAILED_PAYMENTS = 16  # newest kept; the score saturates long before

PAID = frozenset({"purchase", "subscription_started", "subscription_changed"})  # a payment went through
SUBSCRIPTION_STATUS = {
    "trial_started": "trial",
    "subscription_started": "active",
    "subscription_changed": "active",
    "subscription_cancelled": "cancelled",
}
TICKET_OPEN = {"ticket_opened": True, "ticket_reopened": True, "ticket_resolved": False}
# Product use that moves no feature but the last activity and the day's event count: page views, logins, ...
PLAIN_ACTIVITY = PRODUCT_USE_TYPES - PAID - SUBSCRIPTION_STATUS.keys()
# Every type whose events move a feature; the others (emails, ads, agents' replies, spend) only move time on.
FEATURE_TYPES = PRODUCT_USE_TYPES | SUBSCRIPTION_STATUS.keys() | TICKET_OPEN.keys() | {
    "purchase", "refund", "payment_failed", "survey_response",
}  # fmt: skip

EVENTS, PURCHASES, REVENUE = range(3)  # the fields of a day bucket

Key = tuple[int, int]  # (event time, id hash): which of two events is the later one


class Rating(NamedTuple):
    """A survey answer on its scale (CSAT and CES scales vary between surveys: the sender says which)."""

    score: float
    low: float
    high: float

    @property
    def position(self) -> float:
        """Where the answer sits on its scale, 0 at the bottom and 1 at the top."""
        return (self.score - self.low) / (self.high - self.low)


class Features(NamedTuple):
    """A user's churn-risk features as of one point in event time ("now").

    Recency, frequency and monetary value (RFM) are ``days_inactive``, ``active_days_30`` and
    ``revenue_30_cents``. A named tuple: one is built per event, and a frozen dataclass of this
    many fields costs several times as much to build.
    """

    active_days_7: int
    active_days_30: int
    active_days_prev_30: int  # the 30 days before the last 30
    purchases_30: int
    purchases_prev_30: int
    revenue_30_cents: int  # purchases minus refunds
    revenue_prev_30_cents: int
    last_activity_ms: int | None
    days_inactive: int | None  # whole days since the last activity; None if the user never was active
    subscription: str  # none, trial, active or cancelled
    plan: str | None
    mrr_cents: int  # of the latest plan, even when cancelled since
    cancelled_at_ms: int | None  # when the subscription is cancelled: the cancellation's event time
    failed_payments: int  # in the last 30 days and after the latest successful payment
    open_tickets: int
    nps: Rating | None
    csat: Rating | None
    ces: Rating | None


@dataclass
class UserWindows:
    """The order-independent state behind a user's :class:`Features`."""

    days: dict[int, list[int]] = field(default_factory=dict)  # UTC day index -> [events, purchases, revenue cents]
    latest: int | None = None  # newest event time of any kind: the pruning reference and the user's silence
    last_activity: int | None = None
    subscription: tuple[Key, str] | None = None  # latest subscription event and the status it set
    plan: tuple[Key, str, int] | None = None  # latest plan event: plan and MRR in cents
    last_paid: int | None = None  # newest event time of a successful payment
    failed_payments: list[int] = field(default_factory=list)  # event times, ascending
    tickets: dict[str, tuple[Key, bool]] = field(default_factory=dict)  # ticket id -> latest status event, open
    surveys: dict[str, tuple[Key, Rating]] = field(default_factory=dict)  # kind -> latest answer

    def add(self, event: Event) -> None:
        """Fold one event in; the order of calls does not matter."""
        ts, kind = event.ts, event.type
        if self.latest is None or ts > self.latest:
            new_day = self.latest is None or ts // DAY_MS > self.latest // DAY_MS
            self.latest = ts
            if new_day:
                self._prune()
        if self.is_plain_use(kind):
            self._use(ts)  # most events: nothing else to fold, and no id hash to take
        elif kind in FEATURE_TYPES:
            self._fold(event)

    @staticmethod
    def is_plain_use(event_type: str) -> bool:
        """Whether an event of this type is product use that moves nothing but the last activity and the day's count."""
        return event_type in PLAIN_ACTIVITY or event_type.startswith("custom.")

    @staticmethod
    def moves_features(event_type: str) -> bool:
        """Whether an event of this type changes a feature (else it only tells that time went on)."""
        return event_type in FEATURE_TYPES or event_type.startswith("custom.")

    def adds_nothing_new(self, event: Event, now: int) -> bool:
        """Whether ``event`` leaves the features read as of ``now`` (or as of its own time, if later) as they are.

        True for plain product use (a page view, a login) on a day that already had product use,
        the day of ``now`` (which is at or after every event added): the active days, purchases,
        payments and everything latest-by-time stay; the last activity moves within that day,
        where the user is 0 days inactive before and after. The job then skips scoring it, which
        is most events of an active user.
        """
        day = event.ts // DAY_MS
        if day != now // DAY_MS or not self.is_plain_use(event.type):
            return False
        bucket = self.days.get(day)
        return bucket is not None and bucket[EVENTS] > 0

    def may_move(self, now: int, until: int, min_active_days: int, min_purchases: int) -> bool:
        """Whether time alone may move a windowed signal between event times ``now`` and ``until``.

        The windowed signals are the activity and spend drops (they need ``min_active_days`` active
        days, or ``min_purchases`` purchases, in the 30 days before the last 30: counted here over
        every day that may be in that window before ``until``) and the failed payments, which age
        out of their 30 days. False lets the job skip checks that could change nothing.
        """
        if self.failed_payments and (self.last_paid is None or self.failed_payments[-1] > self.last_paid):
            return True
        first, last = now // DAY_MS - KEPT_DAYS + 1, until // DAY_MS - 30
        active = bought = 0
        for day, (events, purchases, _) in self.days.items():
            if first <= day <= last:
                active += events > 0
                bought += purchases
        return active >= min_active_days or bought >= min_purchases

    def features(self, now: int) -> Features:
        """The features as of event time ``now`` (at or after every event added)."""
        today = now // DAY_MS
        week, month, kept = today - 6, today - 29, today - KEPT_DAYS + 1  # the first day of each window
        active_7 = active_30 = active_before = purchases_30 = purchases_before = revenue_30 = revenue_before = 0
        for day, (events, bought, cents) in self.days.items():
            if day >= month:
                if events:
                    active_30 += 1
                    if day >= week:
                        active_7 += 1
                purchases_30 += bought
                revenue_30 += cents
            elif day >= kept:  # "now" may be past the latest event (a timer): older buckets may still be kept
                if events:
                    active_before += 1
                purchases_before += bought
                revenue_before += cents
        subscription_key, status = (None, "none") if self.subscription is None else self.subscription
        last_activity, plan = self.last_activity, self.plan
        paid_after = -1 if self.last_paid is None else self.last_paid
        return Features(  # positional: by keyword, a named tuple this wide costs four times as much to build
            active_7,
            active_30,
            active_before,
            purchases_30,
            purchases_before,
            revenue_30,
            revenue_before,
            last_activity,
            None if last_activity is None else (now - last_activity) // DAY_MS,  # days inactive
            status,
            None if plan is None else plan[1],
            0 if plan is None else plan[2],  # MRR in cents
            subscription_key[0] if subscription_key and status == "cancelled" else None,  # cancelled at
            sum(ts > paid_after and today - ts // DAY_MS < 30 for ts in self.failed_payments),
            sum(is_open for _, is_open in self.tickets.values()),
            self._rating("nps"),
            self._rating("csat"),
            self._rating("ces"),
        )

    # --- internals --------------------------------------------------------------------

    def _fold(self, event: Event) -> None:
        """Fold in an event that moves more than plain use does (the latest event time is already moved on)."""
        ts, kind, props = event.ts, event.type, event.props
        key = (ts, id_hash(event.event_id))
        if kind in PRODUCT_USE_TYPES:
            self._use(ts)
        if kind in PAID:
            self.last_paid = ts if self.last_paid is None else max(self.last_paid, ts)
        status = SUBSCRIPTION_STATUS.get(kind)
        if status is not None and (self.subscription is None or key > self.subscription[0]):
            self.subscription = (key, status)
        if kind in ("subscription_started", "subscription_changed") and (self.plan is None or key > self.plan[0]):
            self.plan = (key, props["plan"], _cents(props["mrr"]))
        if kind == "survey_response":
            self._answer(key, props)
        if ts // DAY_MS < self._first_kept_day():
            return  # older than anything windowed: only the latest-by-key parts above take it
        if kind == "purchase":
            bucket = self._bucket(ts)
            bucket[PURCHASES] += 1
            bucket[REVENUE] += _cents(props["amount"])
        elif kind == "refund":
            self._bucket(ts)[REVENUE] -= _cents(props["amount"])
        elif kind == "payment_failed":
            insort(self.failed_payments, ts)
            del self.failed_payments[:-MAX_FAILED_PAYMENTS]
        elif kind in TICKET_OPEN:
            ticket = props["ticket_id"]
            held = self.tickets.get(ticket)
            if held is None or key > held[0]:
                self.tickets[ticket] = (key, TICKET_OPEN[kind])

    def _use(self, ts: int) -> None:
        """Product use: the last activity, and the day's count unless the day is older than the windows."""
        if self.last_activity is None or ts > self.last_activity:
            self.last_activity = ts
        if ts // DAY_MS >= self._first_kept_day():
            self._bucket(ts)[EVENTS] += 1

    def _first_kept_day(self) -> int:
        return -1 if self.latest is None else self.latest // DAY_MS - KEPT_DAYS + 1

    def _bucket(self, ts: int) -> list[int]:
        bucket = self.days.get(ts // DAY_MS)
        if bucket is None:
            bucket = self.days[ts // DAY_MS] = [0, 0, 0]
        return bucket

    def _prune(self) -> None:
        """Drop what is older than the kept days before the latest event."""
        first = self._first_kept_day()
        if self.days and min(self.days) < first:
            self.days = {day: bucket for day, bucket in self.days.items() if day >= first}
        cutoff = first * DAY_MS
        if self.failed_payments and self.failed_payments[0] < cutoff:
            self.failed_payments = [ts for ts in self.failed_payments if ts >= cutoff]
        if self.tickets and any(key[0] < cutoff for key, _ in self.tickets.values()):
            self.tickets = {ticket: held for ticket, held in self.tickets.items() if held[0][0] >= cutoff}

    def _answer(self, key: Key, props: dict[str, Any]) -> None:
        kind = props["kind"]
        held = self.surveys.get(kind)
        if held is None or key > held[0]:
            low, high = SURVEY_SCALES[kind]
            if kind != "nps":  # validation checked the sender's scale
                low, high = props.get("scale_min", low), props.get("scale_max", high)
            self.surveys[kind] = (key, Rating(props["score"], low, high))

    def _rating(self, kind: str) -> Rating | None:
        held = self.surveys.get(kind)
        return None if held is None else held[1]

    # --- codec ----------------------------------------------------------------------------

    def to_json(self) -> list[Any]:
        return [
            list(self.days),
            list(self.days.values()),
            self.latest,
            self.last_activity,
            self.subscription,
            self.plan,
            self.last_paid,
            self.failed_payments,
            self.tickets,
            {kind: [key, list(rating)] for kind, (key, rating) in self.surveys.items()},
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> UserWindows:
        days, buckets, latest, last_activity, subscription, plan, last_paid, failed, tickets, surveys = data
        return cls(
            dict(zip(days, buckets, strict=True)),
            latest,
            last_activity,
            subscription and (tuple(subscription[0]), subscription[1]),
            plan and (tuple(plan[0]), plan[1], plan[2]),
            last_paid,
            failed,
            {ticket: (tuple(key), is_open) for ticket, (key, is_open) in tickets.items()},
            {kind: (tuple(key), Rating(*rating)) for kind, (key, rating) in surveys.items()},
        )


def _cents(amount: float) -> int:
    return round(amount * 100)
