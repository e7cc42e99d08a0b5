"""Segment calls as events of the contract (producers/segment.py, producers/segment_spec.py)."""

from __future__ import annotations

from typing import Any

import pytest

from producers.segment import MAX_MESSAGE_BYTES, SCREEN_TYPE, Arrival, custom_type, snake_case, to_event
from producers.segment_spec import UNKNOWN
from pulse.contract import PRODUCT_USE_TYPES, STANDARD_TYPES, Event, Invalid, is_product_use, validate

RECEIVED = 1_700_000_000_000  # 2023-11-14T22:13:20Z
ARRIVAL = Arrival(received_at=RECEIVED, source="web", key_name="web-2026")


def mapped(message: dict[str, Any], arrival: Arrival = ARRIVAL) -> dict[str, Any]:
    """The event of a call, which must also pass the contract as the collector checks it."""
    event = to_event(message, arrival).event
    assert isinstance(event, dict), event
    assert isinstance(validate(event), Event), validate(event)
    return event


def refused(message: Any, arrival: Arrival = ARRIVAL) -> tuple[str, str]:
    """The reason and field of a call the contract or Segment refuses."""
    event = to_event(message, arrival).event
    checked = event if isinstance(event, Invalid) else validate(event)
    assert isinstance(checked, Invalid), checked
    return checked.reason, checked.problems[0].field


def track(event: str, properties: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": event,
        "userId": "u1",
        "messageId": "m1",
        "properties": properties or {},
        **fields,
    }


# --- every kind of call ---------------------------------------------------------------------


def test_a_track_call_keeps_its_ids_props_and_time() -> None:
    event = mapped(track("Song Played", {"title": "Get Right"}, anonymousId="a1", timestamp="2023-11-14T22:00:00.125Z"))
    assert event["event_id"] == "m1" and event["user_id"] == "u1"
    assert event["type"] == "custom.song_played" and event["props"] == {"title": "Get Right"}
    assert event["ts"] == RECEIVED - 800_000 + 125 and event["server_received_at"] == RECEIVED
    assert event["context"] == {
        "user_id": "u1",
        "anonymous_id": "a1",
        "source": "web",
        "key_name": "web-2026",
        "segment": {"type": "track", "event": "Song Played"},
    }


def test_an_anonymous_call_uses_the_anonymous_id_as_user_and_says_so() -> None:
    event = mapped({"type": "track", "event": "Clicked", "anonymousId": "anon-9"})
    assert event["user_id"] == "anon-9"
    assert event["context"]["anonymous_id"] == "anon-9" and "user_id" not in event["context"]


def test_numeric_ids_become_strings() -> None:
    event = mapped({"type": "track", "event": "Clicked", "userId": 42, "messageId": 7})
    assert (event["user_id"], event["event_id"], event["context"]["user_id"]) == ("42", "7", "42")


def test_a_page_call_is_a_page_view_with_its_page_and_campaign_in_our_context_keys() -> None:
    message = {
        "type": "page",
        "userId": "u1",
        "name": "Pricing",
        "category": "Docs",
        "properties": {
            "url": "https://acme.test/pricing?plan=pro",
            "title": "Pricing - Acme",
            "referrer": "https://g.test/",
        },
        "context": {
            "page": {"url": "https://acme.test/old", "search": "?plan=pro"},
            "campaign": {
                "source": "google",
                "medium": "cpc",
                "name": "spring",
                "term": "crm",
                "content": "ad1",
                "x": "y",
            },
            "userAgent": "Mozilla/5.0",
            "device": {"type": "mobile", "model": "Pixel"},
            "ip": "203.0.113.9",
            "library": {"name": "analytics.js", "version": "5.0"},
        },
    }
    event = mapped(message)
    assert event["type"] == "page_view"
    assert event["props"] == {**message["properties"], "name": "Pricing", "category": "Docs"}
    context = event["context"]
    assert {key: context[key] for key in ("url", "title", "referrer", "user_agent", "device")} == {
        "url": "https://acme.test/pricing?plan=pro",  # the page call's own properties win over context.page
        "title": "Pricing - Acme",
        "referrer": "https://g.test/",
        "user_agent": "Mozilla/5.0",
        "device": "mobile",
    }
    assert [context[f"utm_{name}"] for name in ("source", "medium", "campaign", "term", "content")] == [
        "google", "cpc", "spring", "crm", "ad1",
    ]  # fmt: skip
    # what has no key of ours stays, under segment.context
    assert context["segment"] == {
        "type": "page",
        "context": {
            "page": {"search": "?plan=pro"},
            "campaign": {"x": "y"},
            "device": {"model": "Pixel"},
            "ip": "203.0.113.9",
            "library": {"name": "analytics.js", "version": "5.0"},
        },
    }
    assert validate(event).context["path"] == "/pricing"  # type: ignore[union-attr]  # the contract derives it


def test_a_page_call_without_its_page_is_refused_as_the_contract_refuses_page_views() -> None:
    assert refused({"type": "page", "userId": "u1", "name": "Home"}) == ("missing_context", "context.path")


def test_any_call_takes_its_page_and_campaign_from_context() -> None:
    context = {"page": {"path": "/cart", "referrer": "https://news.test/"}, "campaign": {"source": "news"}}
    event = mapped(track("Cart Viewed", context=context))
    assert {k: event["context"].get(k) for k in ("path", "referrer", "utm_source")} == {
        "path": "/cart", "referrer": "https://news.test/", "utm_source": "news",
    }  # fmt: skip


def test_a_screen_call_is_a_custom_screen_view_that_counts_as_product_use() -> None:
    event = mapped({"type": "screen", "userId": "u1", "name": "Home", "properties": {"tab": "feed"}})
    assert event["type"] == SCREEN_TYPE == "custom.screen_viewed"
    assert event["props"] == {"tab": "feed", "name": "Home"} and is_product_use(SCREEN_TYPE)


def test_identify_keeps_the_traits_as_props() -> None:
    traits = {"email": "ada@example.com", "plan": "pro", "address": {"city": "Paris"}}
    event = mapped({"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": traits})
    assert (event["type"], event["props"]) == ("identify", traits)
    assert event["context"]["anonymous_id"] == "a1" and event["context"]["user_id"] == "u1"


def test_alias_keeps_the_previous_id() -> None:
    event = mapped({"type": "alias", "userId": "u1", "previousId": "anon-1"})
    assert (event["type"], event["user_id"], event["props"]) == ("alias", "u1", {"previous_id": "anon-1"})
    assert refused({"type": "alias", "anonymousId": "a", "previousId": "anon-1"}) == ("missing_field", "userId")
    assert refused({"type": "alias", "userId": "u1"}) == ("missing_field", "previousId")


def test_group_keeps_the_group_id_and_its_traits() -> None:
    event = mapped(
        {"type": "group", "userId": "u1", "groupId": "acct_1", "traits": {"name": "Initech", "employees": 420}}
    )
    assert (event["type"], event["props"]) == ("group", {"name": "Initech", "employees": 420, "group_id": "acct_1"})
    assert refused({"type": "group", "userId": "u1"}) == ("missing_field", "groupId")


def test_identity_types_are_standard_but_not_product_use() -> None:
    for event_type in ("identify", "alias", "group"):
        assert event_type not in PRODUCT_USE_TYPES and not is_product_use(event_type)


def test_the_batch_context_is_merged_under_each_calls_own() -> None:
    arrival = Arrival(RECEIVED, context={"campaign": {"source": "batch"}, "ip": "1.1.1.1", "locale": "fr-FR"})
    event = mapped(track("Clicked", context={"ip": "2.2.2.2"}), arrival)
    assert event["context"]["utm_source"] == "batch"
    assert event["context"]["segment"]["context"] == {"ip": "2.2.2.2", "locale": "fr-FR"}


def test_without_write_keys_no_source_is_named() -> None:
    context = mapped(track("Clicked"), Arrival(RECEIVED))["context"]
    assert "source" not in context and "key_name" not in context


# --- track names of Segment's specs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "properties", "event_type", "props"),
    [
        ("Order Completed", {"order_id": "o1", "revenue": 22.5, "total": 27.5, "currency": "USD"}, "purchase",
         {"order_id": "o1", "amount": 22.5}),
        ("Order Completed", {"order_id": "o1", "total": 27.5}, "purchase", {"amount": 27.5}),
        ("order completed", {"order_id": "o1", "amount": 9.0, "revenue": 22.5}, "purchase", {"amount": 9.0}),
        ("Order Refunded", {"order_id": "o1", "total": 30}, "refund", {"order_id": "o1", "amount": 30}),
        ("Signed Up", {"type": "organic"}, "signup", {"type": "organic"}),
        ("Signed In", {"username": "ada"}, "login", {}),
        ("Trial Started", {"trial_plan_name": "Business"}, "trial_started", {"plan": "Business"}),
        ("Subscription Started", {"plan_name": "Pro", "mrr": 49}, "subscription_started", {"plan": "Pro", "mrr": 49}),
        ("Subscription Updated", {"plan": "Team", "mrr": 99}, "subscription_changed", {"plan": "Team"}),
        ("Subscription Cancelled", {"reason": "price"}, "subscription_cancelled", {"reason": "price"}),
        ("Subscription Canceled", {}, "subscription_cancelled", {}),
        ("Payment Failed", {"total": 49}, "payment_failed", {"amount": 49}),
        ("Email Delivered", {"campaign_name": "Spring"}, "email_sent", {"campaign": "Spring"}),
        ("Email Opened", {"campaign_id": "c9"}, "email_opened", {"campaign": "c9"}),
        ("Email Link Clicked", {"campaign_name": "Spring"}, "email_clicked", {"campaign": "Spring"}),
        # a name that is one of our standard types in words is that type
        ("Feature Used", {"feature": "export"}, "feature_used", {"feature": "export"}),
        ("Ticket Opened", {"ticket_id": "t1"}, "ticket_opened", {"ticket_id": "t1"}),
        # spec'd names without a standard type of ours are custom events
        ("Product Viewed", {"product_id": "p1"}, "custom.product_viewed", {"product_id": "p1"}),
        ("Checkout Started", {}, "custom.checkout_started", {}),
        ("Account Created", {"account_name": "Initech"}, "custom.account_created", {"account_name": "Initech"}),
    ],
)  # fmt: skip
def test_spec_track_names_map_to_standard_types(
    name: str, properties: dict[str, Any], event_type: str, props: dict[str, Any]
) -> None:
    event = mapped(track(name, properties))
    assert event["type"] == event_type
    assert event["props"] == {**properties, **props}  # the properties are all kept
    assert event["context"]["segment"]["event"] == name


def test_every_spec_mapping_names_a_standard_type() -> None:
    from producers.segment_spec import SPEC_EVENTS

    assert {spec.type for spec in SPEC_EVENTS.values()} <= set(STANDARD_TYPES)


def test_a_page_view_cannot_be_claimed_by_a_track_name() -> None:
    assert mapped(track("Page View", {"path": "/x"}))["type"] == "custom.page_view"


# --- placeholders ---------------------------------------------------------------------------


def test_missing_labels_get_the_unknown_placeholder() -> None:
    assert mapped(track("Trial Started"))["props"] == {"plan": UNKNOWN}
    assert mapped(track("Email Opened"))["props"] == {"campaign": UNKNOWN}


def test_an_order_without_its_id_is_named_after_the_event() -> None:
    assert mapped(track("Order Completed", {"revenue": 10}))["props"] == {"revenue": 10, "order_id": "m1", "amount": 10}


def test_amounts_are_never_made_up() -> None:
    assert refused(track("Order Completed", {"order_id": "o1"})) == ("missing_prop", "props.amount")
    assert refused(track("Subscription Started", {"plan": "Pro"})) == ("missing_prop", "props.mrr")
    assert refused(track("Order Completed", {"order_id": "o1", "revenue": "22.50"})) == ("bad_prop", "props.amount")


def test_a_call_without_message_id_gets_an_id_made_of_the_call() -> None:
    call = {"type": "track", "event": "Clicked", "userId": "u1", "timestamp": "2023-11-14T22:00:00Z"}
    first = mapped(call)["event_id"]
    assert first.startswith("seg-") and len(first) == 36
    assert mapped({**call, "sentAt": "2023-11-14T22:10:00Z"})["event_id"] == first  # a retry: the same id
    assert mapped({**call, "event": "Scrolled"})["event_id"] != first
    assert mapped(call, Arrival(RECEIVED, key_name="other"))["event_id"] != first


# --- custom type names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "snake"),
    [
        ("Song Played", "song_played"),
        ("songPlayed", "song_played"),
        ("HTTPError Shown", "http_error_shown"),
        ("add-to-cart", "add_to_cart"),
        ("  Vidéo  lue !", "video_lue"),
        ("already_snake", "already_snake"),
    ],
)
def test_snake_case(name: str, snake: str) -> None:
    assert snake_case(name) == snake


def test_custom_types_fit_the_contract() -> None:
    assert custom_type("404_seen") == "custom.event_404_seen"
    long = custom_type("a_" * 50)
    assert long is not None and len(long) == len("custom.") + 63 and not long.endswith("_")
    assert custom_type("") is None
    assert refused(track("日本語")) == ("unknown_type", "event")


# --- event time -----------------------------------------------------------------------------


def test_timestamp_wins() -> None:
    call = track("Clicked", timestamp="2023-11-14T22:00:00+01:00", originalTimestamp="2020-01-01T00:00:00Z")
    assert mapped(call)["ts"] == RECEIVED - 800_000 - 3_600_000


def test_original_timestamp_is_corrected_for_the_clients_clock_skew() -> None:
    # the device's clock is 1 h ahead: it says it sent at 23:13:20 what arrived at 22:13:20, an event of 23:13:00
    call = track("Clicked", originalTimestamp="2023-11-14T23:13:00Z", sentAt="2023-11-14T23:13:20Z")
    assert mapped(call)["ts"] == RECEIVED - 20_000
    batch_sent = Arrival(RECEIVED, sent_at="2023-11-14T23:13:20Z")  # sentAt of the batch
    assert mapped(track("Clicked", originalTimestamp="2023-11-14T23:13:00Z"), batch_sent)["ts"] == RECEIVED - 20_000


def test_original_timestamp_without_sent_at_is_taken_as_sent() -> None:
    assert mapped(track("Clicked", originalTimestamp="2023-11-14T22:00:00Z"))["ts"] == RECEIVED - 800_000


def test_without_any_time_the_arrival_is_the_event_time() -> None:
    assert mapped(track("Clicked"))["ts"] == RECEIVED


def test_a_timestamp_without_offset_is_utc() -> None:
    assert mapped(track("Clicked", timestamp="2023-11-14T22:00:00.5"))["ts"] == RECEIVED - 800_000 + 500


@pytest.mark.parametrize("field", ["timestamp", "originalTimestamp", "sentAt"])
def test_bad_timestamps_are_refused(field: str) -> None:
    call = track("Clicked", originalTimestamp="2023-11-14T22:00:00Z", sentAt="2023-11-14T22:00:01Z")
    assert refused({**call, field: "yesterday"}) == ("bad_timestamp", field)


def test_a_timestamp_far_in_the_future_is_refused_by_the_contract() -> None:
    event = to_event(track("Clicked", timestamp="2099-01-01T00:00:00Z"), ARRIVAL).event
    assert isinstance(event, dict)
    checked = validate(event, not_after_ms=RECEIVED + 3_600_000)
    assert isinstance(checked, Invalid) and checked.reason == "future_timestamp"


# --- what Segment refuses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason", "field"),
    [
        ("hello", "not_an_object", "$"),
        ({"event": "Clicked", "userId": "u1"}, "unknown_type", "type"),
        ({"type": "delete", "userId": "u1"}, "unknown_type", "type"),
        ({"type": "track", "event": "Clicked"}, "missing_field", "userId"),
        ({"type": "track", "event": "Clicked", "userId": " ", "anonymousId": ""}, "missing_field", "userId"),
        ({"type": "track", "userId": "u1"}, "missing_field", "event"),
        ({"type": "track", "event": "", "userId": "u1"}, "missing_field", "event"),
        ({"type": "track", "event": "Clicked", "userId": "u1", "properties": [1]}, "wrong_type", "properties"),
        ({"type": "identify", "userId": "u1", "traits": "vip"}, "wrong_type", "traits"),
    ],
)
def test_calls_segment_refuses(message: Any, reason: str, field: str) -> None:
    assert refused(message) == (reason, field)


def test_a_call_over_32_kb_is_refused_and_kept_whole() -> None:
    fits = track("Clicked", {"pad": ""})
    size = len(to_event(fits, ARRIVAL).raw)
    at_limit = track("Clicked", {"pad": "x" * (MAX_MESSAGE_BYTES - size)})
    assert len(to_event(at_limit, ARRIVAL).raw) == MAX_MESSAGE_BYTES
    assert isinstance(to_event(at_limit, ARRIVAL).event, dict)
    over = track("Clicked", {"pad": "x" * (MAX_MESSAGE_BYTES - size + 1)})
    raw, event = to_event(over, ARRIVAL)
    assert isinstance(event, Invalid) and event.reason == "too_large" and len(raw) == MAX_MESSAGE_BYTES + 1
