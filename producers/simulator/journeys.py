"""The customer model: what one customer does, burst by burst, from first touch to churn.

A :class:`Customer` is a small state machine whose actions each fill one burst and schedule
what follows on the customer's :class:`~producers.simulator.bursts.Agenda` (the next visit, a
ticket reply, a renewal). Every decision draws from one seeded ``Random`` in a fixed order,
so a seed always tells the same story. The signup form's own draws (the ``signup_started``
pause, and the abandoned starts) come from a second one, so adding the form changed no other
draw: the same seed still tells the same story around it.

New customers arrive inside the window; existing ones (:meth:`Customer.carry_over`) signed up
before it and are met mid-story, on a monthly plan or after a trial that lapsed. Churn has
explicit causes:

* a subscriber cancels when its *cancellation clock* runs out: an exponential draw at the
  hazard of ``annual_churn`` times its risk. The risk is ``detractor_churn_factor`` for a
  subscriber who would answer NPS 0-6 (the score is drawn when the customer signs up and the
  survey reports it) and grows by ``failed_payment_churn_factor`` with each failed charge.
  A rise of risk races a second clock for the extra hazard (the earlier one wins), which is
  exactly a constant hazard that steps up, so no draw is ever taken back;
* because the cancellation time is known ahead, the activity before it fades: over the
  last ``fade_days`` the visits thin out and use fewer features (:meth:`Customer._vigour`);
* a failed charge that also fails its retry cancels the subscription (involuntary churn);
* a member without a trial or plan who stops coming may leave the newsletter as well and
  go silent: no event at all any more, churn by inactivity without a cancellation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from itertools import accumulate
from random import Random
from typing import Any

from producers.simulator.bursts import Agenda, Burst, Event, EventIds
from producers.simulator.config import DAY, HOUR, MINUTE, SECOND, Rates, SimulationConfig
from producers.simulator.vocabulary import (
    ADDON_CENTS,
    APP_PAGES,
    BILLING_PAGE,
    BLOG,
    CANCEL_REASONS,
    CES_WEIGHTS,
    CURRENCY,
    DEVICE_WEIGHTS,
    DEVICES,
    DIGEST,
    FEATURE_WEIGHTS,
    FEATURES,
    HELP_PAGE,
    LANDING,
    MARKETING_PAGES,
    MARKETING_WEIGHTS,
    NURTURE,
    ONBOARDING_STEPS,
    PAID_CHANNELS,
    PAID_WEIGHTS,
    PAYMENT_FAILED_REASON,
    PLAN_MRR_CENTS,
    PLAN_WEIGHTS,
    PLANS,
    REFERRAL_PROGRAM,
    REFERRERS,
    Channel,
)  # fmt: skip

SYSTEM_USER = "system"
SOURCES = ("organic", "paid", "email", "referral")
WEEK = 7 * DAY
MONTH = 30 * DAY
NEWSLETTER_AT_MS = 15 * HOUR  # the weekly email goes out at 15:00 UTC, every 7 days from the start
SPEND_AT_MS = 23 * HOUR + 55 * MINUTE  # the ad platforms book a day's spend at its end, in one go
PAYMENT_RETRY_MS = 3 * DAY
MAX_PAGES = 20  # per visit; with MAX_FEATURES the longest visit stays below MAX_BURST_EVENTS
MAX_FEATURES = 15
LONG_PAUSE_SHARE = 0.03  # pages read for 5-19 minutes: long pauses, still inside the visit


def _cumulative(weights: Sequence[float]) -> list[float]:
    return list(accumulate(weights))


MARKETING_CUMULATIVE = _cumulative(MARKETING_WEIGHTS)
FEATURE_CUMULATIVE = _cumulative(FEATURE_WEIGHTS)
DEVICE_CUMULATIVE = _cumulative(DEVICE_WEIGHTS)
PLAN_CUMULATIVE = _cumulative(PLAN_WEIGHTS)
PAID_CUMULATIVE = _cumulative(PAID_WEIGHTS)
CES_CUMULATIVE = _cumulative(CES_WEIGHTS)


def user_id_of(number: int) -> str:
    """The user_id of customer ``number``: new customers first, then the existing ones."""
    return f"u{number:06d}"


def generate_bursts(config: SimulationConfig, ids: EventIds) -> Iterator[tuple[str, list[Event]]]:
    """Every burst of the run as ``(user_id, events)``: each customer's in time order, then the spend.

    The existing customers draw from a ``Random`` of their own, so their number never changes
    what the new customers do (nor the spend). The signup form draws from a third, which only
    prospects use (an existing customer signed up before the window).
    """
    rng = Random(f"{config.seed}/model")
    form_rng = Random(f"{config.seed}/signup")
    for number in range(config.customers):
        user_id = user_id_of(number)
        agenda = Agenda()
        arrival = config.start_ms + int(rng.random() * config.days * DAY)
        Customer(user_id, rng, form_rng, config.rates, config.start_ms, agenda).acquire(arrival)
        for events in agenda.run(user_id, config.end_ms, ids):
            yield user_id, events
    base_rng = Random(f"{config.seed}/existing")
    for number in range(config.customers, config.customers + config.existing_count):
        user_id = user_id_of(number)
        agenda = Agenda()
        Customer(user_id, base_rng, form_rng, config.rates, config.start_ms, agenda).carry_over()
        for events in agenda.run(user_id, config.end_ms, ids):
            yield user_id, events
    for events in _spend(config, rng, ids):
        yield SYSTEM_USER, events


def _spend(config: SimulationConfig, rng: Random, ids: EventIds) -> Iterator[list[Event]]:
    """One ``marketing_spend`` per channel a day, all at the same time: one session a day."""
    rates = config.rates
    per_day = config.customers / config.days
    budgets = [
        *((channel, rates.paid_share * weight * rates.paid_cost_per_customer)
          for channel, weight in zip(PAID_CHANNELS, PAID_WEIGHTS, strict=True)),
        (NURTURE, rates.email_share * rates.email_cost_per_customer),
        (REFERRAL_PROGRAM, rates.referral_share * rates.referral_cost_per_customer),
    ]  # fmt: skip
    for day in range(config.days):
        burst = Burst(SYSTEM_USER, config.start_ms + day * DAY + SPEND_AT_MS, config.end_ms, ids)
        for channel, per_customer in budgets:
            cents = round(per_day * per_customer * rng.uniform(0.85, 1.15) * 100)
            burst.add("marketing_spend", {"channel": channel.name, "amount": cents / 100, "campaign": channel.campaign})
        yield burst.events


def _daily_hazard(share: float, days: float) -> float:
    """The constant hazard per day under which ``share`` of a population is gone after ``days``."""
    return -math.log(1.0 - share) / days


class Customer:
    """One customer's state and the actions that make its bursts."""

    def __init__(self, user_id: str, rng: Random, form_rng: Random, rates: Rates, window_start_ms: int,
                 agenda: Agenda) -> None:  # fmt: skip
        self.user_id = user_id
        self.rng = rng
        self.form_rng = form_rng  # the signup form's draws, apart from the rest (see the module's docstring)
        self.rates = rates
        self.agenda = agenda
        self.window_start_ms = window_start_ms
        self.device = {"device": rng.choices(DEVICES, cum_weights=DEVICE_CUMULATIVE)[0]}
        self.signed_up = False
        self.power_user = False
        self.visit_pending = False  # a chain of returning visits is scheduled
        self.on_mailing_list = False
        self.trial_plan = ""
        self.trial_end_ms = 0
        self.plan: str | None = None
        self.mrr_cents = 0
        self.churned = False
        self.silent = False  # left the newsletter and stopped coming: emits nothing more
        self.nps_score = 0  # the score the member would give the NPS survey, drawn at signup
        self.risk = 1.0  # the subscriber's churn hazard, in multiples of annual_churn's
        self.cancel_at: int | None = None  # when the cancellation clock runs out
        self.nps_answered = False
        self.orders = 0
        self.tickets = 0

    # --- acquisition ------------------------------------------------------------------

    def acquire(self, arrival_ms: int) -> None:
        """Schedule the first visit and the touches that led to it."""
        rng, rates = self.rng, self.rates
        source = rng.choices(
            SOURCES, (rates.organic_share, rates.paid_share, rates.email_share, rates.referral_share)
        )[0]
        if source == "paid":
            channel = rng.choices(PAID_CHANNELS, cum_weights=PAID_CUMULATIVE)[0]
            for _ in range(self._count(rates.ad_impressions_before_click)):
                self._before(arrival_ms, self._touch, "ad_impression", channel)
            self.agenda.at(arrival_ms, self._ad_click_visit, channel)
        elif source == "email":
            self._before(arrival_ms, self._email_sent, NURTURE)
            self.agenda.at(arrival_ms, self._open_email, NURTURE, True)
            self._join_mailing_list(arrival_ms)
        elif source == "referral":
            self.agenda.at(arrival_ms, self._prospect_visit, {"referrer": rng.choice(REFERRERS)}, LANDING[source])
        else:
            self.agenda.at(arrival_ms, self._prospect_visit, None, LANDING[source])

    def _before(self, arrival_ms: int, action: Any, *args: Any) -> None:
        """A touch 1-72 h before the first visit, unless that falls before the window."""
        due = arrival_ms - self.rng.uniform(HOUR, 72 * HOUR)
        if due >= self.window_start_ms:
            self.agenda.at(due, action, *args)

    def _touch(self, burst: Burst, event_type: str, channel: Channel) -> None:
        """An ad or email event, tagged with the channel's UTM like the link it carries."""
        burst.add(event_type, {"campaign": channel.campaign}, {**channel.utm(), **self.device})

    def _ad_click_visit(self, burst: Burst, channel: Channel) -> None:
        self._touch(burst, "ad_impression", channel)
        burst.pause(self.rng.uniform(2 * SECOND, 30 * SECOND))
        self._touch(burst, "ad_click", channel)
        self._prospect_visit(burst, channel.utm(), LANDING["paid"])

    def _email_sent(self, burst: Burst, channel: Channel) -> None:
        burst.add("email_sent", {"campaign": channel.campaign}, channel.utm())

    def _open_email(self, burst: Burst, channel: Channel, clicks: bool) -> None:
        """An email is opened and, if ``clicks``, its link starts a visit."""
        if self.silent:
            return
        self._touch(burst, "email_opened", channel)
        if not clicks:
            return
        burst.pause(self.rng.uniform(5 * SECOND, 60 * SECOND))
        self._touch(burst, "email_clicked", channel)
        if self.signed_up:
            self._member_visit(burst, channel.utm())
        else:
            self._prospect_visit(burst, channel.utm(), LANDING["email"])

    def carry_over(self) -> None:
        """An existing customer, met at the window's start: a subscriber or a lapsed trial.

        Its signup, trial and earlier charges lie before the window and are not emitted; inside
        it come its visits, newsletters, tickets and surveys and, for a subscriber, the monthly
        renewal (due on a day of the first 30 drawn uniformly), plan changes and the churn clock.
        """
        rng, rates, start = self.rng, self.rates, self.window_start_ms
        self._become_member(start)
        self.nps_answered = rng.random() < rates.nps_answered_before_window
        if rng.random() >= rates.existing_free_share:
            self.plan = rng.choices(PLANS, cum_weights=PLAN_CUMULATIVE)[0]
            self.mrr_cents = PLAN_MRR_CENTS[self.plan]
            self.agenda.at(start + rng.random() * MONTH, self._renew)
            self._start_clocks(start)
        self._schedule_visit(start, self._visit_days(start))

    # --- visits -----------------------------------------------------------------------

    def _prospect_visit(self, burst: Burst, touch: dict[str, str] | None, landing: Sequence[str]) -> None:
        """A visit before signup: a landing page, then a bounce, some browsing, a signup or an abandoned one.

        A visit that abandons the signup form leaves like any other that did not sign up: the
        prospect may come back.
        """
        rng, rates = self.rng, self.rates
        self._page(burst, rng.choice(landing), touch)
        browsed = rng.random() >= rates.bounce
        if browsed:
            for _ in range(min(1 + self._count(rates.pages_per_visit - 2), MAX_PAGES)):
                self._page(burst, rng.choices(MARKETING_PAGES, cum_weights=MARKETING_CUMULATIVE)[0])
            if rng.random() < rates.signup:
                self._sign_up(burst)
                return
        if not self.visit_pending and rng.random() < rates.prospect_return:
            self._schedule_visit(burst.now, rates.prospect_return_days)
        # Last, and from the form's own draws: the abandoned form moves none of the model's draws or times.
        if browsed and self.form_rng.random() < rates.abandoning_visit:
            self._abandon_signup(burst)

    def _return_visit(self, burst: Burst) -> None:
        """The next visit of the chain, typed in directly (no campaign, no referrer)."""
        self.visit_pending = False
        if self.signed_up:
            self._member_visit(burst, None)
        else:
            self._prospect_visit(burst, None, LANDING["organic"])

    def _schedule_visit(self, now_ms: int, mean_days: float) -> None:
        self.visit_pending = True
        self.agenda.at(now_ms + self.rng.expovariate(1.0 / mean_days) * DAY, self._return_visit)

    def _member_visit(self, burst: Burst, touch: dict[str, str] | None) -> None:
        """A signed-up user's visit: log in, use the app, now and then a ticket, survey or add-on."""
        rng, rates = self.rng, self.rates
        if touch:
            self._page(burst, rng.choice(BLOG), touch)
        self._log_in(burst)
        self._use_app(burst)
        if rng.random() < rates.ticket_per_visit:
            self._open_ticket(burst)
        if not self.nps_answered and rng.random() < rates.nps_per_visit:
            self.nps_answered = True
            self._survey(burst, "nps", self.nps_score)
        if rng.random() < rates.addon_per_visit:
            self._page(burst, "/checkout")
            self._purchase(burst, rng.choice(ADDON_CENTS), self.device)
        self._come_back(burst)

    def _come_back(self, burst: Burst) -> None:
        """Keep one chain of visits going while the user has a reason to come back.

        A user without a trial or plan may stop coming, and then may go silent as well.
        """
        if self.visit_pending or self.churned:
            return
        if not self._has_product(burst.now) and self.rng.random() < self.rates.lapse:
            self.silent = self.rng.random() < self.rates.silent_on_lapse
            return
        self._schedule_visit(burst.now, self._visit_days(burst.now))

    def _visit_days(self, now_ms: int) -> float:
        """The mean days until the next visit: the user's cadence, stretched while the activity fades."""
        rates = self.rates
        return (rates.power_visit_days if self.power_user else rates.casual_visit_days) / self._vigour(now_ms)

    def _vigour(self, now_ms: int) -> float:
        """1, or over the last ``fade_days`` before the cancellation down linearly to ``fade_floor``."""
        if self.cancel_at is None or self.churned:
            return 1.0
        fade_ms = self.rates.fade_days * DAY
        left = self.cancel_at - now_ms
        if left >= fade_ms:
            return 1.0
        return max(self.rates.fade_floor, left / fade_ms)

    def _has_product(self, now_ms: int) -> bool:
        return now_ms < self.trial_end_ms or (self.plan is not None and not self.churned)

    def _page(self, burst: Burst, path: str, touch: dict[str, str] | None = None, rng: Random | None = None) -> None:
        """A page view after the reading time of the previous page, drawn from ``rng`` (the model's by default)."""
        self._dwell(burst, rng or self.rng)
        context = {"path": path, **touch, **self.device} if touch else {"path": path, **self.device}
        burst.add("page_view", None, context)

    def _act(self, burst: Burst, event_type: str, props: dict[str, Any] | None = None,
             rng: Random | None = None) -> None:  # fmt: skip
        """A user action inside a visit, a short while after the previous event (the pause from ``rng``)."""
        burst.pause((rng or self.rng).uniform(2 * SECOND, 40 * SECOND))
        burst.add(event_type, props, self.device)

    def _log_in(self, burst: Burst) -> None:
        self._page(burst, "/login")
        self._act(burst, "login")

    def _use_app(self, burst: Burst) -> None:
        rng, rates = self.rng, self.rates
        self._page(burst, "/app")
        if not self._has_product(burst.now):
            self._page(burst, rng.choice(APP_PAGES))
            return
        mean = rates.power_features_per_visit if self.power_user else rates.casual_features_per_visit
        for _ in range(min(self._count(mean * self._vigour(burst.now)), MAX_FEATURES)):
            if rng.random() < 0.5:
                self._page(burst, rng.choice(APP_PAGES))
            feature = rng.choices(FEATURES, cum_weights=FEATURE_CUMULATIVE)[0]
            self._dwell(burst, rng)
            burst.add("feature_used", {"feature": feature}, self.device)

    # --- signup, onboarding, trial ----------------------------------------------------

    def _sign_up(self, burst: Burst) -> None:
        rng, rates = self.rng, self.rates
        self._to_signup_page(burst, rng)
        self._fill_in_signup_form(burst)
        self._become_member(burst.now)
        if self._onboard(burst) and rng.random() < rates.trial_after_onboarding:
            self._start_trial(burst)
        self._use_app(burst)
        self._come_back(burst)

    def _to_signup_page(self, burst: Burst, rng: Random) -> None:
        """To the signup page, some by way of /pricing, drawn from ``rng``."""
        if rng.random() < self.rates.pricing_before_signup:
            self._page(burst, "/pricing", rng=rng)
        self._page(burst, "/signup", rng=rng)

    def _fill_in_signup_form(self, burst: Burst) -> None:
        """``signup_started``, then the ``signup``, a user action's pause after the page.

        The signup comes exactly when it did before the form had an event (the same draw); the
        start falls part way through that pause, drawn from the form's own ``Random``.
        """
        pause = int(self.rng.uniform(2 * SECOND, 40 * SECOND))
        started = int(pause * self.form_rng.random())
        burst.pause(started)
        burst.add("signup_started", None, self.device)
        burst.pause(pause - started)
        burst.add("signup", None, self.device)

    def _abandon_signup(self, burst: Burst) -> None:
        """To the signup page, the form started and left: every draw from the form's own ``Random``."""
        self._to_signup_page(burst, self.form_rng)
        self._act(burst, "signup_started", rng=self.form_rng)

    def _become_member(self, now_ms: int) -> None:
        """Signed up: a power or casual user with an opinion of the product, on the newsletter."""
        self.signed_up = True
        self.power_user = self.rng.random() < self.rates.power_user_share
        self.nps_score = self._nps_score()
        self._join_mailing_list(now_ms)

    def _onboard(self, burst: Burst) -> bool:
        """The onboarding steps, right after signup; returns whether all were completed."""
        rng, rates = self.rng, self.rates
        keep_going = rates.onboarding_completion ** (1 / len(ONBOARDING_STEPS))
        for step in ONBOARDING_STEPS:
            if rng.random() >= keep_going:
                return False
            self._act(burst, "onboarding_step", {"step": step})
        self._act(burst, "onboarding_completed")
        if rng.random() < rates.ces_after_onboarding:
            self._survey(burst, "ces", rng.choices(range(1, 8), cum_weights=CES_CUMULATIVE)[0])
        return True

    def _start_trial(self, burst: Burst) -> None:
        rng, rates = self.rng, self.rates
        self.trial_plan = rng.choices(PLANS, cum_weights=PLAN_CUMULATIVE)[0]
        self._act(burst, "trial_started", {"plan": self.trial_plan})
        trial_ms = rates.trial_days * DAY
        self.trial_end_ms = burst.now + int(trial_ms)
        if rng.random() < rates.trial_to_paid:
            self.agenda.at(burst.now + trial_ms * rng.uniform(0.5, 1.0), self._subscribe)

    # --- subscription and money -------------------------------------------------------

    def _subscribe(self, burst: Burst) -> None:
        """The trial converts: a checkout visit that starts the subscription and charges it."""
        self.silent = False
        self._log_in(burst)
        self._page(burst, "/pricing")
        self._page(burst, "/checkout")
        self.plan, self.mrr_cents = self.trial_plan, PLAN_MRR_CENTS[self.trial_plan]
        self._act(burst, "subscription_started", {"plan": self.plan, "mrr": self.mrr_cents / 100})
        self._purchase(burst, self.mrr_cents, self.device)
        self.agenda.at(burst.now + MONTH, self._renew)
        self._start_clocks(burst.now)

    def _start_clocks(self, now_ms: int) -> None:
        """A subscription from ``now_ms``: its cancellation clock and its plan-change clock."""
        rates = self.rates
        self.risk = rates.detractor_churn_factor if self.nps_score <= 6 else 1.0
        self._race_cancellation(now_ms, self.risk)
        if rates.plan_change_per_month > 0:
            due = now_ms + self.rng.expovariate(_daily_hazard(rates.plan_change_per_month, 30)) * DAY
            self.agenda.at(due, self._change_plan)

    def _raise_risk(self, now_ms: int, factor: float) -> None:
        """Multiply the churn hazard by ``factor`` from now on: race a clock for the extra hazard."""
        extra = self.risk * (factor - 1)
        self.risk *= factor
        self._race_cancellation(now_ms, extra)

    def _race_cancellation(self, now_ms: int, risk: float) -> None:
        """A cancellation clock at ``risk`` times the base hazard; it counts if it runs out first."""
        if self.rates.annual_churn <= 0 or risk <= 0:
            return
        due = now_ms + int(self.rng.expovariate(_daily_hazard(self.rates.annual_churn, 365) * risk) * DAY)
        if self.cancel_at is None or due < self.cancel_at:
            self.cancel_at = due
            self.agenda.at(due, self._cancel, due)

    def _renew(self, burst: Burst) -> None:
        """The monthly charge (back office); a failed one is retried three days later and raises the risk."""
        if self.churned:
            return
        if self.rng.random() < self.rates.payment_failure:
            burst.add("payment_failed", {"amount": self.mrr_cents / 100, "currency": CURRENCY})
            self._raise_risk(burst.now, self.rates.failed_payment_churn_factor)
            self.agenda.at(burst.now + PAYMENT_RETRY_MS, self._retry_payment)
            return
        self._purchase(burst, self.mrr_cents, None)
        self.agenda.at(burst.now + MONTH, self._renew)

    def _retry_payment(self, burst: Burst) -> None:
        if self.churned:
            return
        if self.rng.random() < self.rates.payment_recovery:
            self._purchase(burst, self.mrr_cents, None)
            self.agenda.at(burst.now + MONTH - PAYMENT_RETRY_MS, self._renew)
            return
        burst.add("subscription_cancelled", {"reason": PAYMENT_FAILED_REASON})
        self.churned = True

    def _cancel(self, burst: Burst, due: int) -> None:
        """The cancellation clock that ran out at ``due``, unless an earlier one replaced it."""
        if self.churned or due != self.cancel_at:
            return
        self._log_in(burst)
        self._page(burst, BILLING_PAGE)
        self._act(burst, "subscription_cancelled", {"reason": self.rng.choice(CANCEL_REASONS)})
        self.churned = True

    def _change_plan(self, burst: Burst) -> None:
        if self.churned or self.plan is None:
            return
        rank = PLANS.index(self.plan)
        upgrade = rank == 0 or (rank < len(PLANS) - 1 and self.rng.random() < self.rates.upgrade_share)
        previous_cents = self.mrr_cents
        self.plan = PLANS[rank + 1 if upgrade else rank - 1]
        self.mrr_cents = PLAN_MRR_CENTS[self.plan]
        self._log_in(burst)
        self._page(burst, "/pricing")
        props = {"plan": self.plan, "mrr": self.mrr_cents / 100, "previous_mrr": previous_cents / 100}
        self._act(burst, "subscription_changed", props)

    def _purchase(self, burst: Burst, cents: int, context: dict[str, str] | None) -> None:
        """A charge; some are refunded days later. ``context`` is None for back-office charges."""
        self.orders += 1
        order_id = f"{self.user_id}-o{self.orders}"
        burst.pause(self.rng.uniform(2 * SECOND, 20 * SECOND))
        burst.add("purchase", {"order_id": order_id, "amount": cents / 100, "currency": CURRENCY}, context)
        if self.rng.random() < self.rates.refund:
            self.agenda.at(burst.now + self.rng.uniform(1, 7) * DAY, self._refund, order_id, cents)

    def _refund(self, burst: Burst, order_id: str, cents: int) -> None:
        burst.add("refund", {"order_id": order_id, "amount": cents / 100, "currency": CURRENCY})

    # --- support and surveys ----------------------------------------------------------

    def _open_ticket(self, burst: Burst) -> None:
        self.tickets += 1
        ticket_id = f"{self.user_id}-t{self.tickets}"
        self._page(burst, HELP_PAGE)
        self._act(burst, "ticket_opened", {"ticket_id": ticket_id})
        due = burst.now + self.rng.expovariate(1.0 / self.rates.first_response_minutes) * MINUTE
        self.agenda.at(due, self._first_response, ticket_id)

    def _first_response(self, burst: Burst, ticket_id: str) -> None:
        burst.add("ticket_first_response", {"ticket_id": ticket_id})
        self._schedule_resolution(burst.now, ticket_id, False)

    def _schedule_resolution(self, now_ms: int, ticket_id: str, reopened: bool) -> None:
        due = now_ms + self.rng.expovariate(1.0 / self.rates.resolution_hours) * HOUR
        self.agenda.at(due, self._resolve, ticket_id, reopened)

    def _resolve(self, burst: Burst, ticket_id: str, reopened: bool) -> None:
        """Resolved; the user may answer the CSAT survey in the email, and may reopen (once)."""
        rng, rates = self.rng, self.rates
        burst.add("ticket_resolved", {"ticket_id": ticket_id})
        if rng.random() < rates.csat_after_ticket:
            burst.pause(rng.uniform(MINUTE, 10 * MINUTE))
            satisfied = rng.random() < rates.csat_satisfied
            self._survey(burst, "csat", rng.randint(4, 5) if satisfied else rng.randint(1, 3), ticket_id=ticket_id)
        if rng.random() < rates.ces_after_ticket:
            burst.pause(rng.uniform(MINUTE, 10 * MINUTE))
            self._survey(burst, "ces", rng.choices(range(1, 8), cum_weights=CES_CUMULATIVE)[0], ticket_id=ticket_id)
        if not reopened and rng.random() < rates.reopen:
            self.agenda.at(burst.now + rng.uniform(2 * HOUR, 48 * HOUR), self._reopen, ticket_id)

    def _reopen(self, burst: Burst, ticket_id: str) -> None:
        burst.add("ticket_reopened", {"ticket_id": ticket_id}, self.device)
        self._schedule_resolution(burst.now, ticket_id, True)

    def _survey(self, burst: Burst, kind: str, score: int, **props: str) -> None:
        self._act(burst, "survey_response", {"kind": kind, "score": score, **props})

    def _nps_score(self) -> int:
        rng, rates = self.rng, self.rates
        bucket = rng.random()
        if bucket < rates.nps_promoters:
            return rng.randint(9, 10)
        if bucket < rates.nps_promoters + rates.nps_passives:
            return rng.randint(7, 8)
        return rng.randint(0, 6)

    # --- the weekly newsletter -------------------------------------------------------

    def _join_mailing_list(self, now_ms: int) -> None:
        if not self.on_mailing_list:
            self.on_mailing_list = True
            self.agenda.at(self._next_newsletter(now_ms), self._newsletter)

    def _next_newsletter(self, now_ms: int) -> int:
        first = self.window_start_ms + NEWSLETTER_AT_MS
        return first if now_ms < first else first + ((now_ms - first) // WEEK + 1) * WEEK

    def _newsletter(self, burst: Burst) -> None:
        """The weekly email until the user cancels: a nurture email before signup, then the digest.

        Some open it, fewer click through to a visit.
        """
        if self.churned:
            return
        self.agenda.at(self._next_newsletter(burst.now), self._newsletter)
        if self.silent:
            return  # off the list for now; a new subscription would bring the user back on it
        channel = DIGEST if self.signed_up else NURTURE
        self._email_sent(burst, channel)
        rng = self.rng
        if rng.random() < self.rates.newsletter_open:
            due = burst.now + rng.expovariate(1.0 / (6 * HOUR))
            self.agenda.at(due, self._open_email, channel, rng.random() < self.rates.newsletter_click)

    # --- draws ------------------------------------------------------------------------

    def _count(self, mean: float) -> int:
        """A whole number with about this mean, heavy-tailed like most usage counts."""
        return int(self.rng.expovariate(1.0 / mean) + 0.5) if mean > 0 else 0

    def _dwell(self, burst: Burst, rng: Random) -> None:
        """Reading time before the next page: mostly under a minute, now and then a long pause."""
        if not burst.events:
            return
        if rng.random() < LONG_PAUSE_SHARE:
            burst.pause(rng.uniform(5 * MINUTE, 19 * MINUTE))
        else:
            burst.pause(2 * SECOND + rng.expovariate(1.0 / (40 * SECOND)))
