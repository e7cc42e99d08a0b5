"""The Kafka topics of the pipeline, named once so every stage agrees on them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """Topic names under one prefix (``PULSE_TOPIC_PREFIX``; tests use a fresh one each)."""

    events: str
    valid_events: str
    sessions: str
    dead_letters: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(
            events=f"{prefix}events",
            valid_events=f"{prefix}events.valid",
            sessions=f"{prefix}sessions",
            dead_letters=f"{prefix}dead-letters",
        )

    def all(self) -> tuple[str, ...]:
        """Every topic, in the order data flows through them."""
        return (self.events, self.valid_events, self.sessions, self.dead_letters)

    def sink_inputs(self) -> tuple[str, ...]:
        """The topics the ClickHouse sink consumes."""
        return (self.valid_events, self.sessions, self.dead_letters)
