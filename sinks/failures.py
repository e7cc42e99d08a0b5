"""Telling an insert that may succeed later from rows ClickHouse refuses for good.

The sink must never drop rows, and must never stop for one bad row either. So a failed
insert is either **transient**, retried unchanged with back-off until it succeeds (the batch
waits, its offsets stay uncommitted), or **refused**: the data itself does not fit, no retry
will change that, and the sink splits the batch to find the rows to dead-letter.

Transient:

- ``OSError`` (``ConnectionError``, ``TimeoutError``, socket errors): the network or the
  server is away; the same bytes will do once it is back.
- clickhouse-connect's ``OperationalError``: its transport failures (connection refused or
  reset, HTTP 429/503/504 still failing after its own retries): a server unavailable or busy.
- server error codes that mean "try later": the server is overloaded, out of memory or disk,
  has too many parts, a replica or Keeper is away, a query was cancelled or timed out. The
  same insert succeeds once the pressure is off.
- server error codes that mean "not set up for this insert yet": unknown table, database or
  column, no right to write, a read-only user or table. They hold for every row alike, so
  splitting the batch would dead-letter all of it; an operator (or the pending migration)
  fixes them, and meanwhile the sink lags and ``/healthz`` reports it stalled.
- server error codes of its own storage failing: a disk full (``NOT_ENOUGH_SPACE``) or a
  filesystem that turned read-only or refuses writes (``CANNOT_WRITE_TO_FILE_DESCRIPTOR``,
  ``CANNOT_CREATE_DIRECTORY``..., and the embedded engine's ``STD_EXCEPTION`` wrapping a C++
  ``filesystem error``). They too hold for every row alike, and pass once the disk does.
- anything else without a server error code (a driver misuse, a bug of ours): retrying keeps
  the rows, and the stall is visible.

Refused:

- clickhouse-connect's ``DataError`` and the errors its Native encoder raises on a value that
  does not fit the column's type (``ValueError``: a string where a number goes, a DateTime64
  out of range; ``TypeError``, ``AttributeError``: an object where a string goes;
  ``OverflowError``, ``struct.error``: a negative or too large integer). These are raised
  in the sink process before ClickHouse sees the rows, the embedded engine and a server alike.
- any other server error code: ClickHouse parsed the insert and refused its data
  (``CANNOT_PARSE_TEXT``, ``TYPE_MISMATCH``, ``VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE``,
  ``VIOLATED_CONSTRAINT``, ...). The embedded engine reports them as ``DatabaseError`` with the
  code and name parsed from its message, a server over HTTP with the code from its header.
"""

from __future__ import annotations

import struct

from clickhouse_connect.driver.exceptions import DataError, OperationalError
from clickhouse_connect.driver.exceptions import Error as ClickHouseError

# ClickHouse error codes (src/Common/ErrorCodes.cpp) after which the same insert may succeed.
TRY_LATER_CODES: dict[int, str] = {
    159: "TIMEOUT_EXCEEDED",
    160: "TOO_SLOW",
    173: "CANNOT_ALLOCATE_MEMORY",
    201: "QUOTA_EXCEEDED",
    202: "TOO_MANY_SIMULTANEOUS_QUERIES",
    203: "NO_FREE_CONNECTION",
    209: "SOCKET_TIMEOUT",
    210: "NETWORK_ERROR",
    225: "NO_ZOOKEEPER",
    236: "ABORTED",
    241: "MEMORY_LIMIT_EXCEEDED",
    242: "TABLE_IS_READ_ONLY",
    243: "NOT_ENOUGH_SPACE",
    252: "TOO_MANY_PARTS",
    265: "NO_AVAILABLE_REPLICA",
    279: "ALL_CONNECTION_TRIES_FAILED",
    285: "TOO_FEW_LIVE_REPLICAS",
    286: "UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE",
    289: "REPLICA_IS_NOT_IN_QUORUM",
    319: "UNKNOWN_STATUS_OF_INSERT",
    369: "ALL_REPLICAS_ARE_STALE",
    373: "SESSION_IS_LOCKED",
    394: "QUERY_WAS_CANCELLED",
    425: "SYSTEM_ERROR",
    439: "CANNOT_SCHEDULE_TASK",
    473: "DEADLOCK_AVOIDED",
    574: "DISTRIBUTED_TOO_MANY_PENDING_BYTES",
    735: "QUERY_WAS_CANCELLED_BY_CLIENT",
    745: "SERVER_OVERLOADED",
    999: "KEEPER_EXCEPTION",
    1000: "POCO_EXCEPTION",
}
# ... and the codes of a server not (yet) set up for the sink's inserts.
NOT_SET_UP_CODES: dict[int, str] = {
    16: "NO_SUCH_COLUMN_IN_TABLE",
    60: "UNKNOWN_TABLE",
    81: "UNKNOWN_DATABASE",
    164: "READONLY",
    497: "ACCESS_DENIED",
    516: "AUTHENTICATION_FAILED",
}
# ... and the codes of a server whose own storage fails (243 NOT_ENOUGH_SPACE is above).
STORAGE_CODES: dict[int, str] = {
    74: "CANNOT_READ_FROM_FILE_DESCRIPTOR",
    75: "CANNOT_WRITE_TO_FILE_DESCRIPTOR",
    76: "CANNOT_OPEN_FILE",
    77: "CANNOT_CLOSE_FILE",
    87: "CANNOT_SEEK_THROUGH_FILE",
    88: "CANNOT_TRUNCATE_FILE",
    172: "CANNOT_CREATE_DIRECTORY",
    204: "CANNOT_FSYNC",
    294: "CANNOT_WRITE_TO_FILE",
    400: "CANNOT_STAT",
    424: "CANNOT_LINK",
    458: "CANNOT_UNLINK",
    586: "CANNOT_CREATE_FILE",
}
TRANSIENT_CODES = frozenset(TRY_LATER_CODES) | frozenset(NOT_SET_UP_CODES) | frozenset(STORAGE_CODES)
# chdb reports a failed mkdir or write of a part as std::filesystem::filesystem_error, code 1001
STD_EXCEPTION = 1001
FILESYSTEM_ERROR = "filesystem error"

# What clickhouse-connect's Native encoder raises for a value that does not fit its column.
ENCODING_ERRORS: tuple[type[Exception], ...] = (
    DataError, ValueError, TypeError, AttributeError, OverflowError, struct.error
)


def is_transient(exc: Exception) -> bool:
    """True when the same insert may succeed later; False when ClickHouse refuses its rows for good."""
    if isinstance(exc, OSError | OperationalError):
        return True
    code = getattr(exc, "code", None) if isinstance(exc, ClickHouseError) else None
    if code in TRANSIENT_CODES or (code == STD_EXCEPTION and FILESYSTEM_ERROR in str(exc)):
        return True
    return not (isinstance(exc, ENCODING_ERRORS) or code is not None)


def describe(exc: Exception, column: str | None = None) -> str:
    """ClickHouse's message for a refused insert; the encoder's names its class and the column it was encoding."""
    if isinstance(exc, ClickHouseError) and exc.code is not None:
        return str(exc)
    message = f"{type(exc).__name__}: {exc}"
    return f"column `{column}`: {message}" if column and f"`{column}`" not in message else message
