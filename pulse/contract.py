"""The event contract, version 1: what an event is, and every way one can be wrong.

An event is a JSON object with ``event_id``, ``type``, ``user_id``, ``ts`` and the optional
``props`` and ``context`` objects. Validation collects *every* problem, each naming its
field, so a sender can fix a payload in one round trip; the first problem's code is the
low-cardinality ``reason`` used for dead letters and metrics.

A valid event is normalised into :class:`Event`: ``ts`` becomes epoch milliseconds (UTC)
and a page view's ``context.path`` is derived from ``context.url`` when only the URL came.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import urlsplit

MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z: older stamps are almost always seconds, not ms
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
MAX_ID_LENGTH = 256
CUSTOM_TYPE_PATTERN = re.compile(r"custom\.[a-z][a-z0-9_]{0,62}")
CONTEXT_STRING_FIELDS = (
    "url", "path", "referrer", "utm_source", "utm_medium", "utm_campaign", "utm_term",
    "utm_content", "device", "user_agent",
)  # fmt: skip
TOP_LEVEL_FIELDS = frozenset({"event_id", "type", "user_id", "ts", "props", "context"})
# Stamped by the pipeline itself (the HTTP collector); allowed, never required.
PIPELINE_FIELDS = frozenset({"server_received_at"})
ALLOWED_FIELDS = TOP_LEVEL_FIELDS | PIPELINE_FIELDS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)

SURVEY_SCALES: Mapping[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an event: a stable ``code``, the ``field`` and a human message."""

    code: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True, slots=True)
class Invalid:
    """The outcome of validating a bad event: all its problems, worst-first."""

    problems: tuple[Problem, ...]

    @property
    def reason(self) -> str:
        """The code of the first problem, a bounded label for counters and dead letters."""
        return self.problems[0].code


class Event(NamedTuple):
    """A valid, normalised event (``ts`` in epoch milliseconds, UTC).

    A named tuple, not a frozen dataclass: the worker builds one per event, and a frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost five times as much.
    """

    event_id: str
    type: str
    user_id: str
    ts: int
    props: dict[str, Any]
    context: dict[str, Any]
    server_received_at: int | None = None  # stamped by the HTTP collector, epoch ms

    def to_dict(self) -> dict[str, Any]:
        """The normalised wire form, as the stream jobs publish it for the sinks."""
        wire = {
            "event_id": self.event_id,
            "type": self.type,
            "user_id": self.user_id,
            "ts": self.ts,
            "props": self.props,
            "context": self.context,
        }
        if self.server_received_at is not None:
            wire["server_received_at"] = self.server_received_at
        return wire


# Ids that buggy clients send for "no id", compared case-insensitively after trimming: claiming one would
# merge every visitor that sent it into one person (PostHog refuses the same list).
PLACEHOLDER_IDS = frozenset({
    "", "null", "undefined", "none", "nil", "nan", "0", "-1", "[object object]", "anonymous", "guest",
    "true", "false", "distinct_id", "id", "not_authenticated", "email",
})  # fmt: skip


def is_placeholder(user_id: str) -> bool:
    """Whether an id is one clients send when they have none."""
    return user_id.strip().casefold() in PLACEHOLDER_IDS


# --- property rules -----------------------------------------------------------------------

PropCheck = Callable[[Any], str | None]  # returns an error message, or None when fine


def _string(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    return None


def _amount(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    if value < 0 or value != value or value == float("inf"):
        return "must be a finite number >= 0"
    return None


STRING = _string
AMOUNT = _amount

# The standard event types and the props each one requires. Documented in the README.
STANDARD_TYPES: Mapping[str, Mapping[str, PropCheck]] = {
    "page_view": {},  # needs context.url or context.path, checked below
    "signup_started": {},  # the signup form was started; props.step (a string) is customary for multi-step forms
    "signup": {},
    "login": {},
    "onboarding_step": {"step": STRING},
    "onboarding_completed": {},
    "trial_started": {"plan": STRING},
    "subscription_started": {"plan": STRING, "mrr": AMOUNT},
    "subscription_changed": {"plan": STRING, "mrr": AMOUNT},
    "subscription_cancelled": {},
    "payment_failed": {"amount": AMOUNT},
    "purchase": {"order_id": STRING, "amount": AMOUNT},
    "refund": {"order_id": STRING, "amount": AMOUNT},
    "feature_used": {"feature": STRING},
    "survey_response": {"kind": STRING},  # score checked against the kind's scale below
    "ticket_opened": {"ticket_id": STRING},
    "ticket_first_response": {"ticket_id": STRING},
    "ticket_resolved": {"ticket_id": STRING},
    "ticket_reopened": {"ticket_id": STRING},
    "ad_impression": {"campaign": STRING},
    "ad_click": {"campaign": STRING},
    "email_sent": {"campaign": STRING},
    "email_opened": {"campaign": STRING},
    "email_clicked": {"campaign": STRING},
    "marketing_spend": {"channel": STRING, "amount": AMOUNT},
}
NO_PROPS: Mapping[str, PropCheck] = {}  # what a custom type requires

# Who a user is rather than what they did: the identify, alias and group calls of the Segment API
# (producers/segment.py). Standard types too, documented in the README, but not behaviour: neither
# product use nor simulated. identify carries the user's traits in props, group the group's.
IDENTITY_TYPES: Mapping[str, Mapping[str, PropCheck]] = {
    "identify": {},
    "alias": {"previous_id": STRING},  # the id the user was known by before user_id
    "group": {"group_id": STRING},
}
_PROP_RULES: Mapping[str, Mapping[str, PropCheck]] = {**STANDARD_TYPES, **IDENTITY_TYPES}


# Product use: what a customer does in the product, not what is done to them (emails, ads,
# agents' replies, billing) nor what they tell us (surveys and tickets). A user's activity, for
# churn by inactivity and for the simulator's ground truth alike; custom events count too.
PRODUCT_USE_TYPES = frozenset({
    "page_view", "signup", "login", "onboarding_step", "onboarding_completed", "feature_used",
    "trial_started", "subscription_started", "subscription_changed", "purchase",
})  # fmt: skip


def is_product_use(event_type: str) -> bool:
    """Whether an event of this type is product use (see :data:`PRODUCT_USE_TYPES`)."""
    return event_type in PRODUCT_USE_TYPES or event_type.startswith("custom.")


def is_known_type(name: str) -> bool:
    """True for a standard type (an identity type too) or a custom one named ``custom.<snake_case>``."""
    return name in _PROP_RULES or CUSTOM_TYPE_PATTERN.fullmatch(name) is not None


# --- validation ---------------------------------------------------------------------------


def validate(obj: Any, not_after_ms: int | None = None) -> Event | Invalid:
    """Check a decoded JSON value against the contract; never raises on bad input.

    ``not_after_ms`` is the latest acceptable event time (the stage's clock plus its allowed
    skew): an event from further in the future is refused as ``future_timestamp``.

    The top-level fields are read by :func:`_plain_fields` when they are all as usual (true of
    nearly every event, and it takes a fraction of the time), else by :func:`_checked_fields`,
    which says what is wrong with each; the rules for props and context are the same either way.
    """
    if not isinstance(obj, dict):
        return Invalid((Problem("not_an_object", "$", f"an event must be a JSON object, got {_json_type(obj)}"),))
    problems: list[Problem] = []
    fields = _plain_fields(obj, not_after_ms) or _checked_fields(obj, not_after_ms, problems)
    event_id, event_type, user_id, ts, received_at, props, context = fields
    if event_type is not None and props is not None:
        _check_props(event_type, props, problems)
    if event_type == "page_view" and context is not None:
        context = _page_context(context, problems)
    if context is not None:
        _check_context(context, problems)
    if problems:
        return Invalid(tuple(problems))
    return Event(event_id, event_type, user_id, ts, props, context, received_at)  # type: ignore[arg-type]


# The top-level fields of an event: event_id, type, user_id, ts, server_received_at, props and
# context, each None where it is wrong (props and context are {} when absent). A plain tuple: the
# worker reads one per event, and a named tuple's constructor costs four times as much.
_Fields = tuple[
    str | None, str | None, str | None, int | None, int | None, dict[str, Any] | None, dict[str, Any] | None
]


def _plain_fields(obj: dict[str, Any], not_after_ms: int | None) -> _Fields | None:
    """The top-level fields when every one is plainly valid, else None (then :func:`_checked_fields` reads them).

    Plainly valid: no unknown field, ids and a known type as ``str``, ``ts`` as epoch ms in range,
    ``props`` and ``context`` objects or absent. Whatever else is valid (an RFC 3339 time, a float
    ``ts``, a ``null`` props...) is left to the full check, so this must never accept more than it
    does: tests/unit/test_contract.py compares the two on many good and bad events.
    """
    get = obj.get
    event_id, event_type, user_id, ts = get("event_id"), get("type"), get("user_id"), get("ts")
    received_at, props, context = get("server_received_at"), get("props", {}), get("context", {})
    if (
        _is_plain_id(event_id)
        and _is_plain_id(user_id)
        and type(event_type) is str
        and is_known_type(event_type)
        and type(ts) is int
        and MIN_TS_MS <= ts < MAX_TS_MS
        and (not_after_ms is None or ts <= not_after_ms)
        and (received_at is None or type(received_at) is int)
        and type(props) is dict
        and type(context) is dict
        and ALLOWED_FIELDS.issuperset(obj)
    ):
        return event_id, event_type, user_id, ts, received_at, props, context
    return None


def _is_plain_id(value: Any) -> bool:
    """Whether :func:`_required_id` would accept ``value``, for a plain ``str`` (anything else: False)."""
    return type(value) is str and len(value) <= MAX_ID_LENGTH and value.strip() != ""


def _checked_fields(obj: dict[str, Any], not_after_ms: int | None, problems: list[Problem]) -> _Fields:
    """The top-level fields, each None where it is wrong, with a problem for each mistake."""
    event_id = _required_id(obj, "event_id", problems)
    user_id = _required_id(obj, "user_id", problems)
    event_type = _event_type(obj, problems)
    ts = _timestamp(obj, problems)
    if ts is not None and not_after_ms is not None and ts > not_after_ms:
        problems.append(Problem("future_timestamp", "ts", f"{obj['ts']!r} is further in the future than allowed"))
    received_at = _received_at(obj, problems)
    props = _optional_object(obj, "props", problems)
    context = _optional_object(obj, "context", problems)
    for name in () if obj.keys() <= ALLOWED_FIELDS else obj.keys() - ALLOWED_FIELDS:
        problems.append(Problem("unknown_field", str(name), "unknown top-level field; put custom data in props"))
    return event_id, event_type, user_id, ts, received_at, props, context


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _required_id(obj: dict[str, Any], name: str, problems: list[Problem]) -> str | None:
    if name not in obj:
        problems.append(Problem("missing_field", name, "is required"))
        return None
    value = obj[name]
    if not isinstance(value, str):
        problems.append(Problem("wrong_type", name, f"must be a string, got {_json_type(value)}"))
        return None
    if not value.strip():
        problems.append(Problem("empty_field", name, "must not be empty"))
        return None
    if len(value) > MAX_ID_LENGTH:
        problems.append(Problem("too_long", name, f"must be at most {MAX_ID_LENGTH} characters"))
        return None
    return value


def _event_type(obj: dict[str, Any], problems: list[Problem]) -> str | None:
    value = _required_id(obj, "type", problems)
    if value is not None and not is_known_type(value):
        problems.append(
            Problem("unknown_type", "type", f"{value!r} is not a standard type; name custom types custom.<snake_case>")
        )
        return None
    return value


def _timestamp(obj: dict[str, Any], problems: list[Problem]) -> int | None:
    if "ts" not in obj:
        problems.append(Problem("missing_field", "ts", "is required"))
        return None
    ms = parse_timestamp(obj["ts"])
    if isinstance(ms, str):
        problems.append(Problem("bad_timestamp", "ts", ms))
        return None
    return ms


def parse_timestamp(value: Any) -> int | str:
    """Epoch milliseconds from an RFC 3339 string or an integer of epoch ms; else the error."""
    if isinstance(value, bool):
        return "must be an RFC 3339 string or epoch milliseconds, got boolean"
    if isinstance(value, int):
        ms = value
    elif isinstance(value, float) and value.is_integer():
        ms = int(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value if value[-1:] != "z" else value[:-1] + "Z")  # 3.11 reads a Z
        except ValueError:
            return f"{value!r} is not an RFC 3339 timestamp"
        if parsed.tzinfo is None:
            return f"{value!r} has no UTC offset (add Z or +hh:mm)"
        ms = (parsed - EPOCH) // ONE_MS
    else:
        return f"must be an RFC 3339 string or epoch milliseconds, got {_json_type(value)}"
    if ms < MIN_TS_MS:
        hint = " (looks like epoch seconds; send milliseconds)" if ms > MIN_TS_MS // 1000 else ""
        return f"{value!r} is before 2000-01-01{hint}"
    if ms >= MAX_TS_MS:
        return f"{value!r} is after 2100-01-01"
    return ms


def _received_at(obj: dict[str, Any], problems: list[Problem]) -> int | None:
    value = obj.get("server_received_at")
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    problems.append(Problem("wrong_type", "server_received_at", "must be epoch milliseconds"))
    return None


def _optional_object(obj: dict[str, Any], name: str, problems: list[Problem]) -> dict[str, Any] | None:
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(Problem("wrong_type", name, f"must be an object, got {_json_type(value)}"))
        return None
    return value


def _check_props(event_type: str, props: dict[str, Any], problems: list[Problem]) -> None:
    for name, check in _PROP_RULES.get(event_type, NO_PROPS).items():
        if name not in props:
            problems.append(Problem("missing_prop", f"props.{name}", f"is required for {event_type}"))
            continue
        message = check(props[name])
        if message:
            problems.append(Problem("bad_prop", f"props.{name}", message))
    if event_type == "survey_response":
        _check_survey(props, problems)


def _check_survey(props: dict[str, Any], problems: list[Problem]) -> None:
    kind = props.get("kind")
    if isinstance(kind, str) and kind and kind not in SURVEY_SCALES:
        problems.append(Problem("bad_prop", "props.kind", f"must be one of {sorted(SURVEY_SCALES)}, got {kind!r}"))
        return
    if "score" not in props:
        problems.append(Problem("missing_prop", "props.score", "is required for survey_response"))
        return
    score = props["score"]
    if isinstance(score, bool) or not isinstance(score, int | float):
        problems.append(Problem("bad_prop", "props.score", "must be a number"))
        return
    if not isinstance(kind, str) or kind not in SURVEY_SCALES:  # a kind of the wrong type is reported already
        return
    low, high = SURVEY_SCALES[kind]
    if kind != "nps":  # CSAT and CES scales vary between surveys (1-5, 1-7, 1-10): the sender says which
        low = props.get("scale_min", low)
        high = props.get("scale_max", high)
        if _amount(low) or _amount(high) or low >= high:
            problems.append(Problem("bad_prop", "props.scale_min", "scale_min and scale_max must be numbers, min < max"))
            return
    elif not float(score).is_integer():
        problems.append(Problem("bad_prop", "props.score", "an NPS score is a whole number 0-10"))
        return
    if not low <= score <= high:
        problems.append(Problem("bad_prop", "props.score", f"{score} is outside the {kind} scale {low}-{high}"))


def _page_context(context: dict[str, Any], problems: list[Problem]) -> dict[str, Any]:
    """A page view must say which page; derive ``path`` from ``url`` when only that came."""
    if isinstance(context.get("path"), str) and context["path"]:
        return context
    url = context.get("url")
    if not isinstance(url, str) or not url:
        problems.append(Problem("missing_context", "context.path", "a page_view needs context.url or context.path"))
        return context
    try:
        path = urlsplit(url).path
    except ValueError:  # "http://[" and the like: urlsplit refuses it, and bad input must not raise
        problems.append(Problem("missing_context", "context.url", f"{url[:100]!r} is not a URL"))
        return context
    return {**context, "path": path or "/"}


def _check_context(context: dict[str, Any], problems: list[Problem]) -> None:
    if _all_strings(context.values()):  # the usual case, checked in one pass
        return
    for name in CONTEXT_STRING_FIELDS:
        value = context.get(name)
        if value is not None and not isinstance(value, str):
            problems.append(Problem("wrong_type", f"context.{name}", f"must be a string, got {_json_type(value)}"))


def _all_strings(values: Iterable[Any]) -> bool:
    """Whether every value is a plain ``str`` (a loop: ``all()`` over a generator takes twice as long)."""
    for value in values:
        if type(value) is not str:
            return False
    return True
