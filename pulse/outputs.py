"""What the stream jobs publish and the sink stores: one :class:`OutputSpec` per output.

A spec names the output's topic (under the topic prefix), its ClickHouse table, the table's
columns with their types, and the migration that creates the table. The worker publishes a
job's rows to ``spec.topic(prefix)`` as NDJSON objects keyed by column name; the sink loops
over :data:`OUTPUTS` and turns each record into column batches with :meth:`OutputSpec.row`.
A new job's table therefore costs one spec here and one migration, nothing in the sink.

Dead letters are not an output of a job (they travel with headers, see
:mod:`pulse.dead_letter`); their table is described here too so the sink treats every table
the same way once rows are built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its name, ClickHouse type, the value of a row that omits it, and whether it is JSON text."""

    name: str
    type: str
    default: Any = None
    json: bool = False  # an object published as is, stored as its JSON text (props, context)


@dataclass(frozen=True)
class OutputSpec:
    """One output of the stream jobs: topic, ClickHouse table, columns and the migration that creates it."""

    name: str
    topic_suffix: str
    table: str
    columns: tuple[Column, ...]
    migration: str  # the sinks/migrations file (without .sql) that creates the table
    time_column: str | None = None  # event time (epoch ms) of a row, observed as end-to-end lag

    def __hash__(self) -> int:
        """By name: specs key every row the runner emits, and the generated hash walked every column each time."""
        return hash(self.name)

    def topic(self, prefix: str) -> str:
        return f"{prefix}{self.topic_suffix}"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def row(self, values: Mapping[str, Any]) -> list[Any]:
        """The values of one published row in column order; raises ``KeyError`` for a missing required column."""
        row = []
        for column in self.columns:
            if column.name in values:
                value = values[column.name]
                row.append(orjson.dumps(value).decode() if column.json else value)
            elif column.default is REQUIRED:
                raise KeyError(f"{self.name} row without {column.name!r}")
            else:
                row.append(column.default)
        return row


REQUIRED = object()  # the default of a column every row must carry

VALID_EVENTS = OutputSpec(
    name="events",
    topic_suffix="events.valid",
    table="events",
    columns=(
        Column("event_id", "String", REQUIRED),
        Column("type", "LowCardinality(String)", REQUIRED),
        Column("user_id", "String", REQUIRED),
        Column("ts", "DateTime64(3, 'UTC')", REQUIRED),
        Column("server_received_at", "Nullable(DateTime64(3, 'UTC'))"),
        Column("props", "String", REQUIRED, json=True),
        Column("context", "String", REQUIRED, json=True),
    ),
    migration="0001_events",
    time_column="ts",
)

SESSIONS = OutputSpec(
    name="sessions",
    topic_suffix="sessions",
    table="sessions",
    columns=(
        Column("session_id", "String", REQUIRED),
        Column("user_id", "String", REQUIRED),
        Column("start", "DateTime64(3, 'UTC')", 0),
        Column("end", "DateTime64(3, 'UTC')", 0),
        Column("duration_ms", "UInt64", 0),
        Column("events", "UInt32", 0),
        Column("page_views", "UInt32", 0),
        Column("bounce", "Bool", False),
        Column("entry_path", "Nullable(String)"),
        Column("exit_path", "Nullable(String)"),
        Column("utm_source", "Nullable(String)"),
        Column("utm_medium", "Nullable(String)"),
        Column("utm_campaign", "Nullable(String)"),
        Column("utm_term", "Nullable(String)"),
        Column("utm_content", "Nullable(String)"),
        Column("referrer", "Nullable(String)"),
        Column("device", "Nullable(String)"),
        Column("first_touch_source", "Nullable(String)"),
        Column("first_touch_medium", "Nullable(String)"),
        Column("first_touch_campaign", "Nullable(String)"),
        Column("first_touch_referrer", "Nullable(String)"),
        Column("is_first", "Bool", False),
        Column("closed", "Bool", False),
        Column("deleted", "UInt8", REQUIRED),
        Column("version", "UInt64", REQUIRED),
    ),
    migration="0004_sessions",
)

FUNNEL_STEPS = OutputSpec(
    name="funnel_steps",
    topic_suffix="funnel-steps",
    table="funnel_steps",
    columns=(
        Column("step_id", "String", REQUIRED),  # funnel, user, attempt and step: a replay adds nothing
        Column("funnel", "LowCardinality(String)", REQUIRED),
        Column("user_id", "String", REQUIRED),
        Column("attempt", "UInt32", REQUIRED),
        Column("step_index", "UInt8", REQUIRED),  # from 1
        Column("step_name", "LowCardinality(String)", REQUIRED),
        Column("ts", "DateTime64(3, 'UTC')", REQUIRED),
        Column("since_previous_s", "Float64", 0.0),
        Column("since_entry_s", "Float64", 0.0),
        Column("event_id", "String", REQUIRED),
    ),
    migration="0005_funnel_steps",
    time_column="ts",
)

CHURN_SCORES = OutputSpec(
    name="churn_scores",
    topic_suffix="churn-scores",
    table="churn_scores",
    columns=(
        Column("user_id", "String", REQUIRED),
        Column("score", "Float64", REQUIRED),
        Column("tier", "LowCardinality(String)", REQUIRED),
        Column("reasons", "Array(String)", REQUIRED),
        Column("ts", "DateTime64(3, 'UTC')", REQUIRED),  # the event time the score holds at
        Column("version", "UInt64", REQUIRED),  # grows with every change of the user's score: the latest wins
    ),
    migration="0006_churn",
    time_column="ts",
)

CHURN_ALERTS = OutputSpec(
    name="churn_alerts",
    topic_suffix="alerts",
    table="churn_alerts",
    columns=(
        Column("alert_id", "String", REQUIRED),  # the same alert always has the same id (replays, kills)
        Column("user_id", "String", REQUIRED),
        Column("old_tier", "LowCardinality(String)", REQUIRED),
        Column("new_tier", "LowCardinality(String)", REQUIRED),
        Column("score", "Float64", REQUIRED),
        Column("reasons", "Array(String)", REQUIRED),
        Column("ts", "DateTime64(3, 'UTC')", REQUIRED),  # event time of what raised the tier
        Column("emitted_at", "DateTime64(3, 'UTC')", REQUIRED),  # wall clock of the worker that emitted it
    ),
    migration="0006_churn",
    time_column="ts",
)

CLV_PREDICTIONS = OutputSpec(
    name="clv_predictions",
    topic_suffix="clv-predictions",
    table="clv_predictions",
    columns=(
        Column("user_id", "String", REQUIRED),
        Column("fitted_until", "Date", REQUIRED),  # the last day of purchases the model saw
        Column("unit", "LowCardinality(String)", REQUIRED),  # day or week: the unit of the times below
        Column("horizon", "Float64", REQUIRED),  # units ahead that expected purchases and clv cover
        Column("frequency", "UInt32", REQUIRED),  # days with a purchase after the first
        Column("recency", "Float64", REQUIRED),  # first to last purchase day
        Column("age", "Float64", REQUIRED),  # first purchase day to fitted_until (the model's T)
        Column("monetary", "Float64", REQUIRED),  # mean value of the repeat purchase days
        Column("expected_purchases", "Float64", REQUIRED),
        Column("probability_alive", "Float64", REQUIRED),
        Column("expected_average_value", "Float64", REQUIRED),
        Column("clv", "Float64", REQUIRED),
        Column("fitted_at", "DateTime64(3, 'UTC')", REQUIRED),  # wall clock of the fit: a refit of the date wins
    ),
    migration="0010_clv_predictions",
)

PERSON_IDS = OutputSpec(
    name="person_ids",
    topic_suffix="person-ids",
    table="person_ids",
    columns=(
        Column("id", "String", REQUIRED),  # any id an event carried as user_id, anonymous id or previous id
        Column("person_id", "String", REQUIRED),  # the id of the person it belongs to: itself unless merged
        Column("ts", "DateTime64(3, 'UTC')", REQUIRED),  # event time of the first event, or of the merge
        Column("merged", "UInt8", REQUIRED),  # 1: merged into another id; wins over the row of the id alone
    ),
    migration="0019_person_ids",
    time_column="ts",
)

DEAD_LETTERS = OutputSpec(
    name="dead_letters",
    topic_suffix="dead-letters",
    table="dead_letters",
    columns=(
        Column("letter_id", "String", REQUIRED),
        Column("dlq_topic", "LowCardinality(String)", REQUIRED),
        Column("dlq_partition", "UInt32", REQUIRED),
        Column("dlq_offset", "UInt64", REQUIRED),
        Column("failed_at", "DateTime64(3, 'UTC')", REQUIRED),
        Column("reason", "LowCardinality(String)", REQUIRED),
        Column("errors", "Array(String)", REQUIRED),
        Column("source", "String", REQUIRED),
        Column("raw", "String", REQUIRED),
    ),
    migration="0002_dead_letters",
)

# The outputs the sink writes, in the order it writes their tables: the stream jobs', then `pulse clv fit`'s.
OUTPUTS: tuple[OutputSpec, ...] = (VALID_EVENTS, SESSIONS, FUNNEL_STEPS, CHURN_SCORES, CHURN_ALERTS, PERSON_IDS,
                                   CLV_PREDICTIONS)  # fmt: skip
