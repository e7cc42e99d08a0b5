"""The sink against the real embedded engine: specs equal the migrated tables, refused rows are split out.

chdb opens one engine directory per process at a time, so the module opens one, shares it
between its tests and closes it before any other test may open another.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from pulse.dead_letter import DeadLetter
from pulse.outputs import DEAD_LETTERS, OUTPUTS, SESSIONS, OutputSpec
from pulse.settings import SinkTuning
from sinks.batch import Batch
from sinks.clickhouse import connect
from sinks.migrations import available, migrate
from sinks.rows import Columns, Position, decode_record
from sinks.writer import BatchWriter

SPECS = (*OUTPUTS, DEAD_LETTERS)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    engine = connect(f"chdb://{tmp_path_factory.mktemp('clickhouse')}")
    try:
        migrate(engine)
        yield engine
    finally:
        engine.close()


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.table)
def test_spec_columns_equal_the_migrated_table(client: Client, spec: OutputSpec) -> None:
    result = client.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {table:String} "
        "AND name != 'inserted_at' AND default_kind NOT IN ('MATERIALIZED', 'ALIAS')",  # ClickHouse's, not the sink's
        parameters={"table": spec.table},
    )
    assert dict(result.result_rows) == {column.name: column.type for column in spec.columns}
    assert spec.migration in {f"{m.version:04d}_{m.name}" for m in available()}


def test_a_batch_keeps_refused_rows_and_refused_letters_as_dead_letters(client: Client) -> None:
    batch = Batch()
    for position, value in ((Position("sessions", 1, 4), session(10, events=-1)), (Position("sessions", 1, 5), session(11))):
        batch.track(position)
        batch.add_output(SESSIONS, value, position)
    foreign = Position("dlq", 0, 9)  # a record of another producer, its failed_at header beyond DateTime64's Int64
    batch.track(foreign)
    batch.add_letter(DeadLetter("x1", b"\xff", "bad_json", ("not JSON",), "elsewhere", 2**80), foreign)

    BatchWriter(client, SinkTuning(), threading.Event()).write_batch(batch)

    assert client.query("SELECT session_id FROM sessions WHERE session_id IN ('s10', 's11')").result_rows == [("s11",)]
    letters = client.query("SELECT letter_id, reason, dlq_topic, dlq_offset, raw FROM dead_letters ORDER BY letter_id")
    assert [row[:4] for row in letters.result_rows] == [
        ("dead_letters:dlq/0@9#0", "sink_rejected", "dlq", 9),
        ("sessions:sessions/1@4#0", "sink_rejected", "sessions", 4),
    ]
    refused_letter, refused_session = (orjson.loads(row[4]) for row in letters.result_rows)
    assert (refused_letter["letter_id"], refused_letter["raw"], refused_letter["failed_at"]) == ("x1", "\ufffd", 2**80)
    assert (refused_session["session_id"], refused_session["events"]) == ("s10", -1)


def session(i: int, **changes: object) -> bytes:
    row = {"session_id": f"s{i}", "user_id": f"u{i}", "start": 1_000, "end": 2_000, "duration_ms": 1_000, "events": 2,
           "deleted": 0, "version": 1, **changes}  # fmt: skip
    return orjson.dumps(row)


def test_refused_rows_are_split_out_and_a_replay_adds_nothing(client: Client, tmp_path: Path) -> None:
    columns = Columns.of(SESSIONS)
    record = b"\n".join([session(0), session(1, duration_ms=-5), session(2), session(3, events="many"), session(4)])
    columns.extend(decode_record(SESSIONS, record).rows, Position("sessions", 0, 7))
    columns.extend(decode_record(SESSIONS, session(5)).rows, Position("sessions", 0, 8))
    writer = BatchWriter(client, SinkTuning(retry_initial_s=0.01), threading.Event())

    refused = writer.write(SESSIONS.table, columns, "token-1")
    assert [(columns.source(i), message) for i, message in refused] == [
        ("sessions/0@7#1", "DataError: Unable to create native array for column `duration_ms`: error"),
        ("sessions/0@7#3", "column `events`: ValueError: invalid literal for int() with base 10: 'many'"),
    ]
    written = "SELECT session_id FROM sessions WHERE session_id IN ('s0', 's1', 's2', 's3', 's4', 's5') ORDER BY session_id"
    assert client.query(written).result_rows == [("s0",), ("s2",), ("s4",), ("s5",)]

    assert writer.write(SESSIONS.table, columns, "token-1") == refused  # the replay after a kill
    assert client.query(written).result_rows == [("s0",), ("s2",), ("s4",), ("s5",)]
