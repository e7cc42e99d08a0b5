"""Anonymous visits: the events as a customer's browser sends them, with a Segment-style SDK.

Until a new customer signs up, the site does not know who they are: every event of theirs
carries the browser's anonymous id as ``user_id`` and as ``context.anonymous_id`` (what the
collector's Segment API makes of a call with only an ``anonymousId``). The signup is the
first event under the customer's own id, and like every later event from the browser (those
with a ``context.device``) it still carries the anonymous id: the pipeline links the two
there (identity stitching), so its sessions and funnels are the customer's only if it does.
Events from back-office systems (billing, support, email) carry the customer's id alone; an
existing customer, signed up before the window, is known from the start.

The model and the ground truth stay as they are: the truth counts by customer, which is
what a pipeline that stitches correctly counts by person.
"""

from __future__ import annotations

from collections.abc import Iterable

from producers.simulator.bursts import Event


def anonymous_id_of(user_id: str) -> str:
    """The anonymous id of customer ``u000123``'s browser: ``a000123``."""
    return f"a{user_id[1:]}"


def customer_of(person_id: str) -> str:
    """The customer a person of the stream is: a visitor never identified is known by the browser's id alone."""
    return f"u{person_id[1:]}" if person_id.startswith("a") else person_id


class Browsers:
    """Rewrites each customer's bursts, which come in time order, as their browser sends them."""

    def __init__(self, known: Iterable[str]) -> None:
        self._identified = set(known)  # customers whose signup was seen, or who signed up before the window

    def sent(self, user_id: str, events: list[Event]) -> list[Event]:
        """The burst as sent: anonymous before the signup, the anonymous id beside the user id after it."""
        anonymous_id = anonymous_id_of(user_id)
        sent = []
        for event in events:
            if event["type"] == "signup":
                self._identified.add(user_id)
            context = event.get("context") or {}
            if user_id not in self._identified:
                sent.append({**event, "user_id": anonymous_id, "context": {**context, "anonymous_id": anonymous_id}})
            elif "device" in context:
                sent.append({**event, "context": {**context, "anonymous_id": anonymous_id}})
            else:
                sent.append(event)
        return sent
