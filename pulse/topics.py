"""The Kafka topics of the pipeline, named once so every stage agrees on them."""

from __future__ import annotations

from dataclasses import dataclass

from pulse.outputs import DEAD_LETTERS, OUTPUTS, OutputSpec


@dataclass(frozen=True)
class Topics:
    """Topic names under one prefix (``PULSE_TOPIC_PREFIX``; tests use a fresh one each)."""

    prefix: str

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(prefix)

    @property
    def events(self) -> str:
        """Raw events from every producer: the worker's input."""
        return f"{self.prefix}events"

    @property
    def dead_letters(self) -> str:
        return DEAD_LETTERS.topic(self.prefix)

    def output(self, spec: OutputSpec) -> str:
        """The topic of one output of the stream jobs."""
        return spec.topic(self.prefix)

    def all(self) -> tuple[str, ...]:
        """Every topic, in the order data flows through them."""
        return (self.events, *self.sink_inputs())

    def sink_inputs(self) -> tuple[str, ...]:
        """The topics the ClickHouse sink consumes: every output, then the dead letters."""
        return (*(self.output(spec) for spec in OUTPUTS), self.dead_letters)
