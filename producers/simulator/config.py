"""What a simulation is asked to do: its size, its seed and every rate of the model.

Defaults come from ``/work/shared/metrics-catalog.md`` where the catalog gives a figure;
each such default names its entry ("3(b) #9" is row 9 of section 3(b), "WEB-1" a metric
entry). Rates the catalog has no figure for are plain, plausible SaaS numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

# The pipeline's allowed lateness: a line emitted further behind the stream than this is dropped.
ALLOWED_LATENESS_MINUTES = 10.0


@dataclass(frozen=True)
class Rates:
    """Every behavioural rate of the customer model (probabilities, means, prices)."""

    # Acquisition mix of new customers (no catalog figure); the four shares sum to 1.
    organic_share: float = 0.40
    paid_share: float = 0.30
    email_share: float = 0.15
    referral_share: float = 0.15
    ad_impressions_before_click: float = 1.0  # mean impression-only sessions before a paid click
    # A prospect's visit that ends on its landing page. 3(b) #9 / WEB-1: "average bounce rate is
    # between 26-70%". Visits of signed-up users and visits that start with an ad or email click
    # never qualify, so the bounce rate over all visits comes out near 30%.
    bounce: float = 0.55
    pages_per_visit: float = 6.0  # mean page views of a prospect's visit that does not bounce
    prospect_return: float = 0.65  # a visitor who did not sign up comes back
    prospect_return_days: float = 3.0  # mean days until that return
    # A prospect's non-bounce visit ends in a signup. 3(b) #2 / WEB-6: "352 ÷ 1,582 = 22.25% conversion rate".
    signup: float = 0.2225
    # Of the visits that start the signup form (signup_started), the share that leave without signing
    # up. ACT-10 has no figure (001:921 only names the behaviour): a plain plausible number, below half
    # so that most starts finish. The abandoning visits are taken from the non-bounce visits that do
    # not sign up (see abandoning_visit), so signup keeps its meaning and signup + this <= 1.
    signup_abandonment: float = 0.30
    # Signed-up users who finish onboarding. 3(b) #22 / ACT-2: "half ... did not complete the setup process".
    onboarding_completion: float = 0.5
    trial_after_onboarding: float = 0.9  # onboarded users who start a trial
    # 3(b) #15 / ACT-6: a free trial lasts "two weeks or one month".
    trial_days: float = 14.0
    # 3(b), derived fixture "Trial-to-paid for 40 of 200 trials = 20%".
    trial_to_paid: float = 0.20
    # 3(b) #19 / ENG-7 put power-user cadence between "once a week" (reporting SaaS) and "daily":
    # power users here come daily, casual users every few days.
    power_user_share: float = 0.30
    power_visit_days: float = 1.0  # mean days between visits
    casual_visit_days: float = 3.0
    power_features_per_visit: float = 10.0
    casual_features_per_visit: float = 4.0
    lapse: float = 0.25  # after a visit without trial or subscription, the user stops coming
    # A user who stops coming also leaves the newsletter (through the mail provider, so no event)
    # and goes silent: not a single event more, which the pipeline calls churn after 30 days (RET-9).
    silent_on_lapse: float = 0.50
    pricing_before_signup: float = 0.50  # a visit to the signup form passes by /pricing just before /signup
    # 3(b) #10 / RET-1: "average churn rate of 25%" a year (card and cable companies): the voluntary
    # churn of a subscriber who is not a detractor and whose charges never failed.
    annual_churn: float = 0.25
    # Churn risk (RET-10: look at the behaviour leading up to churn, 003:62; "Plummeting NPS" is
    # an early warning, 003:88): a subscriber's hazard of cancelling is annual_churn's times these.
    detractor_churn_factor: float = 4.0  # the subscriber would answer NPS 0-6
    failed_payment_churn_factor: float = 2.0  # after each failed charge, recovered or not
    # Before a voluntary cancellation the activity fades (RET-9 "unhealthy accounts (i.e. those who
    # haven't used the product in a while and are at risk of cancelling)"): over the last fade_days
    # the mean gap between visits grows and the features used per visit shrink, linearly down to
    # fade_floor of the usual at the cancellation (so gaps up to 1 / fade_floor times longer).
    fade_days: float = 21.0
    fade_floor: float = 0.15
    plan_change_per_month: float = 0.10  # subscribers who up- or downgrade in a month
    upgrade_share: float = 0.70  # of plan changes, the upgrades
    payment_failure: float = 0.08  # a renewal charge fails
    payment_recovery: float = 0.60  # the retry three days later succeeds; else the subscription is cancelled
    addon_per_visit: float = 0.03  # a signed-up user buys an add-on during a visit
    refund: float = 0.03  # a purchase is refunded within days
    ticket_per_visit: float = 0.03  # a signed-up user opens a support ticket during a visit
    # 3(b) #6 / SUP-1: first response "under one hour" (the reply comes >= 45 min after the visit).
    first_response_minutes: float = 30.0
    # 3(b) #7 / SUP-2: "resolve most inquiries under 24 hours".
    resolution_hours: float = 6.0
    # 3(b) #8 / SUP-4: Net Resolution Rate "85-90%+ is good", so about 12% are reopened.
    reopen: float = 0.12
    nps_per_visit: float = 0.10  # an in-app NPS survey is answered (once per user)
    # 3(b) #3 / SAT-1 and the derived fixture 50 promoters, 30 passives, 20 detractors: NPS +30.
    nps_promoters: float = 0.50
    nps_passives: float = 0.30
    csat_after_ticket: float = 0.50  # a resolved ticket's CSAT survey is answered
    # 3(b) #5 / SAT-2: CSAT "above 80% is considered good".
    csat_satisfied: float = 0.82
    ces_after_onboarding: float = 0.40  # a CES survey (1-7) is answered after onboarding
    ces_after_ticket: float = 0.25  # and after a resolved ticket
    newsletter_open: float = 0.35
    newsletter_click: float = 0.30  # of opened newsletters
    # Marketing spend per acquired customer, USD (ACQ-7 CAC has no figure in the catalog).
    paid_cost_per_customer: float = 40.0
    email_cost_per_customer: float = 3.0
    referral_cost_per_customer: float = 15.0
    # The customers who signed up before the window (no catalog figure).
    existing_free_share: float = 0.15  # their trial ended before the window without a subscription
    nps_answered_before_window: float = 0.50  # not asked again inside the window (NPS is asked once)

    def __post_init__(self) -> None:
        mix = self.organic_share + self.paid_share + self.email_share + self.referral_share
        if abs(mix - 1.0) > 1e-9:
            raise ValueError(f"the acquisition shares must sum to 1, not {mix}")
        if not (0 <= self.annual_churn < 1 and 0 <= self.plan_change_per_month < 1):
            raise ValueError("annual_churn and plan_change_per_month are shares of a population: 0 <= share < 1")
        if not 0 < self.fade_floor <= 1 or self.fade_days < 0:
            raise ValueError("fade_floor must be in (0, 1] and fade_days at least 0")
        if not 0 <= self.signup_abandonment < 1 or self.signup + self.signup_abandonment > 1:
            raise ValueError(
                "signup_abandonment must be in [0, 1) and signup + signup_abandonment at most 1: the abandoned "
                "starts are drawn from the visits that do not sign up"
            )

    @property
    def abandoning_visit(self) -> float:
        """The share of non-bounce prospect visits without a signup that start the form and abandon it.

        Of such visits ``signup`` sign up (after a start each) and ``(1 - signup) * p`` abandon, so
        abandoned / started = ``signup_abandonment`` for p = signup * a / ((1 - a) * (1 - signup)),
        which is at most 1 exactly when signup + a <= 1. Taking the abandoners from the visits that
        did not sign up anyway leaves every other decision of the model, and its random draws, as
        they were.
        """
        share = self.signup_abandonment
        if share == 0:
            return 0.0
        return self.signup * share / ((1 - share) * (1 - self.signup))


@dataclass(frozen=True)
class Imperfections:
    """The share of imperfect input, each per valid event; ``none()`` gives a clean stream."""

    late_share: float = 0.02  # emitted out of order, up to late_max_minutes after its place
    late_max_minutes: float = 5.0
    duplicate_share: float = 0.01  # the same line (same event_id) emitted again within minutes
    malformed_share: float = 0.005  # an extra bad line: truncated JSON, missing field, wrong type, future ts

    def __post_init__(self) -> None:
        if not 0 < self.late_max_minutes < ALLOWED_LATENESS_MINUTES:
            raise ValueError(
                f"late_max_minutes must be in (0, {ALLOWED_LATENESS_MINUTES}): the pipeline drops later lines"
            )
        if self.late_share + self.duplicate_share + self.malformed_share > 1:
            raise ValueError("the imperfection shares must sum to at most 1")

    @classmethod
    def none(cls) -> Imperfections:
        return cls(late_share=0.0, duplicate_share=0.0, malformed_share=0.0)


@dataclass(frozen=True)
class SimulationConfig:
    """A whole run; the same config always gives byte-identical lines and truth.

    ``customers`` arrive inside the window (first touch to churn); on top of them come the
    existing customers, signed up before the window: ``existing_customers`` of them, or when
    that is None ``existing_share`` of ``customers`` (300 for the default 3,000). Their history
    before the window is not emitted, only what they do inside it.
    """

    customers: int = 3_000
    days: int = 30
    seed: int = 42
    start_ms: int = 1_761_955_200_000  # 2025-11-01T00:00:00Z, fixed rather than "now" for reproducibility
    rates: Rates = field(default_factory=Rates)
    imperfections: Imperfections = field(default_factory=Imperfections)
    existing_customers: int | None = None
    existing_share: float = 0.10
    # The churn truth's inactivity rule, the pipeline's default (pulse.settings ChurnTuning.inactive_days):
    # a user with no event for this long before the window's end is churned.
    inactive_days: float = 30.0
    # Send events as a Segment-style browser SDK does (producers/simulator/devices.py): a new customer is known by
    # an anonymous id until the signup, which carries both ids; the truth is the same, counted by customer.
    anonymous_visits: bool = False

    def __post_init__(self) -> None:
        if self.existing_share < 0 or (self.existing_customers is not None and self.existing_customers < 0):
            raise ValueError("existing_customers and existing_share cannot be negative")

    @property
    def existing_count(self) -> int:
        """How many existing customers the run has."""
        if self.existing_customers is not None:
            return self.existing_customers
        return round(self.customers * self.existing_share)

    @property
    def end_ms(self) -> int:
        """The end of the simulated window (exclusive): no valid event is this late."""
        return self.start_ms + self.days * DAY
