"""The churn-risk score: a transparent weighted sum of bounded signals, with the reasons in words.

Each signal is a number in (0, 1] read from :class:`stream_jobs.churn_windows.Features`. The
score is ``min(1, sum(weight * signal))`` over the signals adding at least 0.01, rounded to two
decimals: finer moves are noise and would only multiply rows. The weights (:class:`ChurnRules`,
from ``settings.churn``) need not sum to 1, so one strong signal can raise the tier on its own.
Definitions come from ``../shared/metrics-catalog.md``; ``000:319`` is line 319 of
``seeds/000_...txt``. The signals, their default weights, reasons, and why:

- **inactivity**, 1.0, "no activity for 16 days". Silence is churn in the making: "unhealthy
  accounts (i.e. those who haven't used the product in a while)" (RET-9, 000:1507). 0 for the
  first ``grace_days`` (4), then linear up to 1 at ``inactive_days`` (30), the churn point: silence
  alone spans the whole score, medium after 15 quiet days (about the two weeks of 000:319), high
  after 23. In whole days, so time moves the score once a day (see :func:`next_change`).
- **activity drop**, 0.35, "activity down 70% on the previous 30 days". Weakening use comes
  before silence (ENG-3; "weak engagement ... leads to churn", 003:51). Active days of the last 30
  against the 30 before, taking the better of the 30- and the 7-day rate so that a user already
  back to their old rhythm is not flagged; only for a user with ``min_active_days`` (4) active
  days before. Below inactivity because a drop is noisier than silence: alone it stays low.
- **spend drop**, 0.2, "spend down 60% on the previous 30 days". "Not buying anything else" is
  churn too (RET-1, 002:228). Net revenue of the last 30 days against the 30 before, for a repeat
  buyer (``min_purchases``, 2, before). Weak: many customers pay by subscription, not purchases.
- **failed payments**, 0.45, "2 failed payments". Involuntary churn: subscribers who "failed to
  renew" (RET-1, 002:269). Failures of the last 30 days after the latest successful payment; two
  (``failed_payments_full``) reach medium on their own, the strongest signal after silence.
- **NPS detractor**, 0.35, "NPS detractor (3)". Detractors answer 0-6 (SAT-1, 003:40) and a
  "plummeting NPS" warns of churn (003:88). ``(7 - score) / 7`` of the latest answer: a 0 alone is
  just below medium, with almost any other signal above it.
- **low CSAT**, 0.25, "low CSAT (2 of 5)". CSAT informs the health score that tells "whether a
  customer is healthy or at risk of churning" (SAT-2, 004:52). Satisfied is the top of the scale
  (4-5 of 5), so the signal grows from the scale's middle (0) to its bottom (1). One interaction's
  answer: weaker than NPS, which asks about the product as a whole.
- **high effort**, 0.2, "high effort (CES 2 of 7)". CES asks "how easy" the product was (SAT-3,
  001:1016; the contract's 1-7 has 7 for easiest); read like CSAT, from the middle down.
- **open tickets**, 0.2, "2 open support tickets". Unresolved problems; "sudden support ticket
  spikes" (003:104). Open tickets by id, two (``open_tickets_full``) saturate. Low: an open ticket
  is also ordinary support.

Tiers: **churned** when the latest subscription event is a cancellation (RET-1: "canceling a
subscription", 002:228; a new trial or subscription undoes it) or nothing was used for
``inactive_days``; else **high** from ``high_at`` (0.7), **medium** from ``medium_at`` (0.4),
**low** below. A churned user scores 1. Reasons: the signals that contributed, largest first
(ties in the order above), at most three; for a churned user the cause comes first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import cached_property
from operator import itemgetter
from typing import NamedTuple

from pulse.settings import ChurnTuning
from stream_jobs.churn_windows import DAY_MS, Features, Rating

TIERS = ("low", "medium", "high", "churned")  # in rising order of risk
RANK = {tier: rank for rank, tier in enumerate(TIERS)}
MAX_REASONS = 3
MIN_CONTRIBUTION = 0.01  # a signal adding less is noise at two decimals: it neither counts nor is named


@dataclass(frozen=True)
class ChurnRules(ChurnTuning):
    """Thresholds and weights of the score (see the module docstring for why each): the ``churn``
    settings, checked, plus the counts the settings do not expose."""

    min_active_days: int = 4  # active days in the previous 30 below which a drop is noise
    min_purchases: int = 2  # purchases in the previous 30 days that make a repeat buyer
    failed_payments_full: int = 2  # this many failed payments give the full signal
    open_tickets_full: int = 2

    def __post_init__(self) -> None:
        if not 0 < self.medium_at < self.high_at <= 1:
            raise ValueError(f"churn tiers need 0 < medium_at < high_at <= 1, got {self.medium_at} and {self.high_at}")
        if not 0 <= self.grace_days < self.inactive_days:
            raise ValueError(f"churn grace_days must be >= 0 and below inactive_days ({self.inactive_days})")
        if any(getattr(self, f.name) < 0 for f in fields(self) if f.name != "enabled"):
            raise ValueError("churn weights, counts and durations must not be negative")
        if self.failed_payments_full < 1 or self.open_tickets_full < 1:
            raise ValueError("failed_payments_full and open_tickets_full must be at least 1")

    @classmethod
    def from_tuning(cls, tuning: ChurnTuning) -> ChurnRules:
        """The rules the settings give; the counts the settings do not name keep their defaults."""
        return cls(**{f.name: getattr(tuning, f.name) for f in fields(tuning)})

    @cached_property  # read at every check and score
    def inactive_ms(self) -> int:
        return round(self.inactive_days * DAY_MS)

    @property
    def cooldown_ms(self) -> int:
        return round(self.alert_cooldown_hours * 3_600_000)


class Assessment(NamedTuple):
    """A user's churn risk at one point in event time (a named tuple: one is built per event)."""

    score: float  # in [0, 1], two decimals
    tier: str  # one of TIERS
    reasons: list[str]  # in words, most important first, at most MAX_REASONS


def score(features: Features, now_ms: int, rules: ChurnRules) -> Assessment:
    """The churn risk of a user with these features (read as of ``now_ms``)."""
    signals = [
        (weight * signal, reason) for weight, signal, reason in _signals(features, rules)
        if weight * signal >= MIN_CONTRIBUTION
    ]  # fmt: skip
    signals.sort(key=itemgetter(0), reverse=True)  # stable: equal contributions keep the docstring's order
    reasons = [reason for _, reason in signals]
    cause = _churn_cause(features, now_ms, rules)
    if cause is not None:
        reasons = [cause, *(reason for reason in reasons if reason != cause)]
        return Assessment(1.0, "churned", reasons[:MAX_REASONS])
    total = round(min(1.0, sum((contribution for contribution, _ in signals), 0.0)), 2)
    tier = "high" if total >= rules.high_at else "medium" if total >= rules.medium_at else "low"
    return Assessment(total, tier, reasons[:MAX_REASONS])


def next_change(last_activity_ms: int | None, tier: str, now_ms: int, rules: ChurnRules) -> int | None:
    """The event time after ``now_ms`` at which the assessment may change with no new event; None for never.

    The next whole day of silence (each moves the inactivity signal, and the windows are read
    again then), or the churn point if that comes first. A churned user stays churned until an
    event says otherwise, and a user never active has no silence to count.
    """
    if tier == "churned" or last_activity_ms is None:
        return None
    next_day = last_activity_ms + ((now_ms - last_activity_ms) // DAY_MS + 1) * DAY_MS
    return min(next_day, last_activity_ms + rules.inactive_ms)


def _churn_cause(features: Features, now_ms: int, rules: ChurnRules) -> str | None:
    """Why the user is churned, or None while they are not."""
    if features.subscription == "cancelled":
        return "subscription cancelled"
    last = features.last_activity_ms
    if last is not None and now_ms - last >= rules.inactive_ms:
        return _silence((now_ms - last) // DAY_MS)
    return None


def _signals(features: Features, rules: ChurnRules) -> Iterator[tuple[float, float, str]]:
    """(weight, signal in (0, 1], reason) of each signal present, in the docstring's order."""
    days = features.days_inactive
    if days is not None and days > rules.grace_days:
        ramp = (days - rules.grace_days) / (rules.inactive_days - rules.grace_days)
        yield rules.weight_inactivity, min(1.0, ramp), _silence(days)
    if features.active_days_prev_30 >= rules.min_active_days:
        rate = max(features.active_days_30 / 30, features.active_days_7 / 7)
        drop = 1 - rate / (features.active_days_prev_30 / 30)
        if drop > 0:
            yield rules.weight_activity_drop, drop, f"activity down {drop:.0%} on the previous 30 days"
    if features.purchases_prev_30 >= rules.min_purchases and features.revenue_prev_30_cents > 0:
        drop = 1 - max(features.revenue_30_cents, 0) / features.revenue_prev_30_cents
        if drop > 0:
            yield rules.weight_spend_drop, drop, f"spend down {drop:.0%} on the previous 30 days"
    if failed := features.failed_payments:
        yield (
            rules.weight_failed_payments,
            min(1, failed / rules.failed_payments_full),
            _count(failed, "failed payment"),
        )
    if features.nps is not None and features.nps.score <= 6:
        yield rules.weight_nps, (7 - features.nps.score) / 7, f"NPS detractor ({features.nps.score:g})"
    if features.csat is not None and (low := _below_middle(features.csat)) > 0:
        yield rules.weight_csat, low, f"low CSAT ({_on_scale(features.csat)})"
    if features.ces is not None and (hard := _below_middle(features.ces)) > 0:
        yield rules.weight_ces, hard, f"high effort (CES {_on_scale(features.ces)})"
    if tickets := features.open_tickets:
        yield (
            rules.weight_open_tickets,
            min(1, tickets / rules.open_tickets_full),
            _count(tickets, "open support ticket"),
        )


def _silence(days: int) -> str:
    return f"no activity for {_count(days, 'day')}"


def _below_middle(rating: Rating) -> float:
    """How far below the middle of its scale an answer is: 1 at the bottom, 0 at the middle, negative above."""
    return 1 - 2 * rating.position


def _on_scale(rating: Rating) -> str:
    return f"{rating.score:g} of {rating.high:g}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
