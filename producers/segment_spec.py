"""Segment ``track`` names that mean one of our standard types, and how their properties map.

Segment's specs name the events products send most (E-commerce v2: ``Order Completed``; B2B SaaS:
``Signed Up``, ``Trial Started``; Email: ``Email Opened``). Where the contract has a standard type
for the same fact, the event becomes that type, so the KPIs, funnels and churn scores count it;
every other name becomes a custom type (:func:`producers.segment.custom_type`).

A spec's properties are all optional while some of our types require props, so each required
prop is taken from the first spec property present, in order. When none is:

- a label (a plan, a campaign) becomes :data:`UNKNOWN`, so the event still counts;
- a purchase's ``order_id`` becomes the event id: an order is one ``Order Completed``;
- an amount is never made up: the event is refused (``missing_prop``) and dead-lettered.

Names are matched by their snake_case (``Order Completed``, ``order completed`` and
``order_completed`` are one name). A name whose snake_case is itself a standard type
(``Feature Used`` -> ``feature_used``) is that type with its properties as sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pulse.contract import STANDARD_TYPES

UNKNOWN = "(unknown)"  # a required label the sender did not give


class Fallback(Enum):
    """What a required prop becomes when no property gives it."""

    REFUSE = "refuse"  # nothing: validation refuses the event (missing_prop)
    UNKNOWN = "unknown"  # the placeholder UNKNOWN
    EVENT_ID = "event_id"  # the event's own id


@dataclass(frozen=True)
class Prop:
    """One required prop of a standard type: the spec properties it is read from, first present wins."""

    sources: tuple[str, ...] = ()  # besides the prop's own name, which wins when sent
    fallback: Fallback = Fallback.REFUSE


@dataclass(frozen=True)
class SpecEvent:
    """What a spec'd ``track`` name becomes: a standard type and where its required props come from
    when the sender did not use our names (a prop missing from ``props`` is refused by validation)."""

    type: str
    props: Mapping[str, Prop] = field(default_factory=dict)


_PLAN = Prop(("plan_name",), Fallback.UNKNOWN)
_CAMPAIGN = Prop(("campaign_name", "campaign_id"), Fallback.UNKNOWN)

# keyed by the snake_case of the name, grouped by the spec that names it
SPEC_EVENTS: Mapping[str, SpecEvent] = {
    # E-commerce v2
    "order_completed": SpecEvent(
        "purchase", {"order_id": Prop((), Fallback.EVENT_ID), "amount": Prop(("revenue", "total"))}
    ),
    "order_refunded": SpecEvent("refund", {"amount": Prop(("total", "revenue"))}),
    # B2B SaaS
    "signed_up": SpecEvent("signup"),
    "signed_in": SpecEvent("login"),
    "trial_started": SpecEvent("trial_started", {"plan": Prop(("trial_plan_name", "plan_name"), Fallback.UNKNOWN)}),
    # not in a Segment spec, but the names subscription products use
    "subscription_started": SpecEvent("subscription_started", {"plan": _PLAN}),
    "subscription_changed": SpecEvent("subscription_changed", {"plan": _PLAN}),
    "subscription_updated": SpecEvent("subscription_changed", {"plan": _PLAN}),
    "subscription_cancelled": SpecEvent("subscription_cancelled"),
    "subscription_canceled": SpecEvent("subscription_cancelled"),
    "payment_failed": SpecEvent("payment_failed", {"amount": Prop(("total",))}),
    # Email
    "email_delivered": SpecEvent("email_sent", {"campaign": _CAMPAIGN}),
    "email_opened": SpecEvent("email_opened", {"campaign": _CAMPAIGN}),
    "email_link_clicked": SpecEvent("email_clicked", {"campaign": _CAMPAIGN}),
}

# Standard types no track name may claim: a page view comes from a page call, with its page
NOT_BY_NAME = frozenset({"page_view"})


def spec_event(snake_name: str) -> SpecEvent | None:
    """The standard type a ``track`` name (in snake_case) stands for, or None: a custom event."""
    found = SPEC_EVENTS.get(snake_name)
    if found is not None:
        return found
    if snake_name in STANDARD_TYPES and snake_name not in NOT_BY_NAME:
        return SpecEvent(snake_name)
    return None


def spec_props(spec: SpecEvent, properties: Mapping[str, Any], event_id: str) -> dict[str, Any]:
    """The event's props: the properties as sent, plus each required prop the spec maps.

    The properties are kept whole (``revenue`` stays next to the ``amount`` read from it); a
    required prop found nowhere is left out, for validation to refuse.
    """
    props = dict(properties)
    for name, prop in spec.props.items():
        if props.get(name) is not None:
            continue
        value = next((properties[source] for source in prop.sources if properties.get(source) is not None), None)
        if value is None and prop.fallback is Fallback.UNKNOWN:
            value = UNKNOWN
        elif value is None and prop.fallback is Fallback.EVENT_ID:
            value = event_id
        if value is not None:
            props[name] = value
    return props
