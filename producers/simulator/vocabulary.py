"""The fixed names the simulated product uses: pages, plans, features, channels, reasons."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Channel:
    """A marketing channel: its ``marketing_spend`` name and the UTM tags of its links."""

    name: str  # props.channel of marketing_spend, and utm_source of the links
    medium: str
    campaign: str

    def utm(self) -> dict[str, str]:
        return {"utm_source": self.name, "utm_medium": self.medium, "utm_campaign": self.campaign}


PAID_CHANNELS = (Channel("google", "cpc", "q4_leadgen"), Channel("linkedin", "cpc", "q4_abm"))
PAID_WEIGHTS = (0.7, 0.3)
NURTURE = Channel("newsletter", "email", "q4_nurture")  # the email that acquires a prospect
DIGEST = Channel("newsletter", "email", "weekly_digest")  # the weekly email to signed-up users
REFERRAL_PROGRAM = Channel("partners", "referral", "partner_program")  # payouts booked as marketing spend
REFERRERS = (
    "https://www.g2.com/products/customer-pulse/reviews",
    "https://news.ycombinator.com/item?id=4242",
    "https://www.producthunt.com/posts/customer-pulse",
    "https://partner-blog.example.com/best-analytics-tools",
)

BLOG = tuple(f"/blog/{slug}" for slug in ("bounce-rate", "churn-rate", "nps-guide", "utm-tracking", "clv-formula"))
DOCS = tuple(f"/docs/{slug}" for slug in ("quickstart", "events", "funnels", "api", "integrations"))
MARKETING_PAGES = ("/", "/pricing", "/features", "/customers", *BLOG, *DOCS)
MARKETING_WEIGHTS = (4, 4, 4, 1, *(1,) * len(BLOG), *(1,) * len(DOCS))
# Where a visit lands, per acquisition source: ads point at sales pages, emails at content.
LANDING = {
    "organic": ("/", *BLOG),
    "paid": ("/pricing", "/features", "/"),
    "email": BLOG,
    "referral": ("/", "/features"),
}
APP_PAGES = ("/app", "/app/dashboards", "/app/reports", "/app/segments", "/app/settings")
HELP_PAGE = "/help"
BILLING_PAGE = "/settings/billing"

DEVICES = ("desktop", "mobile", "tablet")
DEVICE_WEIGHTS = (0.6, 0.32, 0.08)

ONBOARDING_STEPS = ("profile", "connect_source", "invite_team", "first_dashboard")
FEATURES = ("dashboards", "reports", "alerts", "segments", "funnels", "exports", "integrations")
FEATURE_WEIGHTS = (5, 4, 2, 2, 2, 1, 1)

PLANS = ("starter", "pro", "business")  # cheapest first: an upgrade moves one step right
PLAN_MRR_CENTS = {"starter": 2_900, "pro": 9_900, "business": 29_900}
PLAN_WEIGHTS = (0.5, 0.4, 0.1)
ADDON_CENTS = (1_900, 4_900, 9_900)  # template pack, extra seats, priority support
CURRENCY = "USD"

# RET-10: the catalog's churn reasons (002:239-245, 002:470-476).
CANCEL_REASONS = (
    "competitor_lower_price", "need_no_longer_exists", "money_is_tight", "dissatisfied_with_product",
    "poor_customer_service", "promotional_period_ended",
)  # fmt: skip
PAYMENT_FAILED_REASON = "payment_failed"

# CES answers on 1-7 (the contract's default scale), leaning easy.
CES_WEIGHTS = (0.03, 0.05, 0.08, 0.14, 0.25, 0.25, 0.20)
