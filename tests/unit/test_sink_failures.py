"""Transient insert failures are retried, refused rows are split out: the classification and the writer."""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError, ProgrammingError

from pulse.errors import PulseError
from pulse.outputs import VALID_EVENTS
from pulse.settings import SinkTuning
from sinks.failures import describe, is_transient
from sinks.rows import Columns, Position
from sinks.writer import BatchWriter, Refusal, Stopped

TRANSIENT = [
    ConnectionRefusedError("refused"),
    TimeoutError("timed out"),
    OperationalError("Error HTTPConnectionPool: Max retries exceeded"),
    OperationalError("HTTP driver received HTTP status 503", code=202),
    DatabaseError("Code: 252. DB::Exception: Too many parts (300). (TOO_MANY_PARTS)", code=252),
    DatabaseError("Code: 241. DB::Exception: Memory limit exceeded. (MEMORY_LIMIT_EXCEEDED)", code=241),
    DatabaseError("Code: 60. DB::Exception: Table default.sessions does not exist. (UNKNOWN_TABLE)", code=60),
    DatabaseError("Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. (NOT_ENOUGH_SPACE)", code=243),
    DatabaseError(  # what chdb 4.4 said with the table's directory on a filesystem remounted read-only
        "Code: 1001. DB::Exception: std::__1::filesystem::filesystem_error: filesystem error: in create_directories: "
        'Read-only file system ["/data/store/f95/f95473ba/tmp_insert_all_5_5_1"]. (STD_EXCEPTION)',
        code=1001,
    ),
    ProgrammingError("Unrecognized column inserted_atx in table events"),
    RuntimeError("a bug of ours"),
]
REFUSED = [
    DatabaseError("Code: 6. DB::Exception: Cannot parse string 'x' as UInt32. (CANNOT_PARSE_TEXT)", code=6),
    DatabaseError("Code: 469. DB::Exception: Constraint violated. (VIOLATED_CONSTRAINT)", code=469),
    DataError("Unable to create native array for column `duration_ms`: error"),
    ValueError("invalid literal for int() with base 10: 'x'"),
    TypeError("int() argument must be a string, a bytes-like object or a real number, not 'list'"),
    AttributeError("'int' object has no attribute 'encode'"),
    struct.error("argument out of range"),
    DatabaseError("Code: 1001. DB::Exception: std::out_of_range: basic_string. (STD_EXCEPTION)", code=1001),
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=repr)
def test_transient(exc: Exception) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize("exc", REFUSED, ids=repr)
def test_refused(exc: Exception) -> None:
    assert not is_transient(exc)


def test_message_is_clickhouse_s_own() -> None:
    assert describe(REFUSED[0]) == str(REFUSED[0])
    assert describe(REFUSED[3], "events") == "column `events`: ValueError: invalid literal for int() with base 10: 'x'"
    assert describe(REFUSED[0], "events") == str(REFUSED[0])  # the server's message names what it needs to


def test_the_sink_s_errors_are_pulse_errors() -> None:
    from sinks.clickhouse import EngineBusyError
    from sinks.migrations import MigrationError

    for error in (Stopped, EngineBusyError, MigrationError):
        assert issubclass(error, PulseError) and issubclass(error, RuntimeError)


CANNOT_PARSE = "Code: 6. DB::Exception: Cannot parse. (CANNOT_PARSE_TEXT)"


class FakeClient:
    """Refuses any insert holding an event id in ``bad``; fails the first ``outages`` attempts transiently."""

    def __init__(self, bad: set[str], outages: int = 0) -> None:
        self.bad = bad
        self.outages = outages
        self.inserts: list[tuple[list[str], str]] = []

    def create_insert_context(self, table: str, column_names: list[str], **kwargs: Any) -> SimpleNamespace:
        return SimpleNamespace(data=None, column_name=None, token=kwargs["settings"]["insert_deduplication_token"])

    def data_insert(self, context: SimpleNamespace) -> None:
        ids: list[str] = context.data[0]
        if self.outages:
            self.outages -= 1
            raise OperationalError("Network Error")
        if self.bad & set(ids):
            raise DatabaseError(CANNOT_PARSE, code=6)
        self.inserts.append((list(ids), context.token))


def events(n: int) -> Columns:
    columns = Columns.of(VALID_EVENTS)
    columns.extend([[f"e{i}", "login", "u", i, None, "{}", "{}"] for i in range(n)], Position("valid", 0, 1))
    return columns


def writer(
    client: FakeClient, stop: threading.Event | None = None, on_insert: Callable[[], None] = lambda: None
) -> BatchWriter:
    tuning = SinkTuning(retry_initial_s=0.001, retry_max_s=0.002)
    return BatchWriter(client, tuning, stop or threading.Event(), on_insert)  # type: ignore[arg-type]


def test_halves_down_to_the_refused_rows_with_tokens_of_their_ranges() -> None:
    client = FakeClient(bad={"e2", "e5"})
    refused = writer(client).write("events", events(8), "T")
    assert refused == [Refusal(2, CANNOT_PARSE), Refusal(5, CANNOT_PARSE)]
    assert client.inserts == [(["e0", "e1"], "T:0-2"), (["e3"], "T:3-4"), (["e4"], "T:4-5"), (["e6", "e7"], "T:6-8")]


def test_transient_failures_are_retried_and_a_good_batch_is_one_insert() -> None:
    client = FakeClient(bad=set(), outages=3)
    landed: list[int] = []
    assert writer(client, on_insert=lambda: landed.append(1)).write("events", events(4), "T") == []
    assert client.inserts == [(["e0", "e1", "e2", "e3"], "T")] and landed == [1]


def test_stop_during_an_outage_raises_stopped() -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped, match="4 rows for events"):
        writer(FakeClient(bad=set(), outages=1), stop).write("events", events(4), "T")


def test_nothing_to_write_is_no_insert() -> None:
    client = FakeClient(bad=set())
    assert writer(client).write("events", events(0), "T") == [] and client.inserts == []
