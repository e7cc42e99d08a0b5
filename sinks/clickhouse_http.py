"""The part of ClickHouse's HTTP interface that BI readers use, over the embedded engine.

The embedded engine (chdb) belongs to the sink's process, so Grafana's ClickHouse data source and
clickhouse-connect's HTTP client reach it through the sink: :class:`ClickHouseHttp` answers them the
way a ClickHouse server does, for reading only. With a server DSN, readers use the server directly.

What is spoken
    ``GET``/``POST /`` with the query in the ``query`` URL parameter, the body, or both (joined by a
    newline); ``param_<name>`` query parameters; ``default_format`` or a ``FORMAT`` clause, any output
    format ClickHouse has (the engine writes it: nothing is re-encoded here); ``database`` (the
    pipeline's only); ``query_id``; ``GET /ping``. Answers carry ``X-ClickHouse-Query-Id``,
    ``-Format``, ``-Timezone``, ``-Summary`` and ``-Server-Display-Name``; errors are ClickHouse's
    ``Code: N. DB::Exception: ... (NAME)`` text with ``X-ClickHouse-Exception-Code`` and the status
    ClickHouse gives that code. Transport parameters (``session_id``, ``wait_end_of_query``,
    ``compress``, ...) are accepted and have no effect: each request stands alone, and answers are
    sent whole and uncompressed, which every client accepts.

Authentication
    One user and password from config (``sink.reader_user``/``sink.reader_password``, env
    ``PULSE_READER_USER``/``PULSE_READER_PASSWORD``), given as basic auth, ``X-ClickHouse-User``/
    ``X-ClickHouse-Key`` headers or ``user``/``password`` parameters, compared in constant time; a
    mismatch is ClickHouse's 516 AUTHENTICATION_FAILED with 403.

Confinement, and why it holds
    1. ClickHouse enforces read-only: the engine handle this module opens is put in ``readonly=1``
       once, before any request, and ``readonly=1`` forbids changing any setting, itself included, so
       no request can leave it. On that handle ClickHouse refuses writes and DDL, ``SET``, a
       ``SETTINGS`` clause or URL setting that changes a value, and the table functions that need
       temporary tables (``file``, ``url``, ``s3``, ``remote``, ``executable``, ``mysql``, ...).
    2. ``readonly=1`` leaves holes, found by trying them on this engine: the scalar ``file()``
       function reads any host file, ``INTO OUTFILE`` writes one, ``DESCRIBE file(...)`` infers a
       schema from one, ``python()`` reads objects of the sink's own process, ``merge()``,
       ``iceberg()``/``deltaLake()``, ``ai*()`` functions and any table of another database stay
       reachable. So every statement is parsed by ClickHouse's own parser (``parseQueryToJSON``, a
       pure function: nothing runs) and its syntax tree, not its text, is checked: one statement; a
       ``SELECT``, ``SHOW TABLES``/``DATABASES`` or ``DESCRIBE TABLE``; no ``INTO OUTFILE``; every
       table in the pipeline's database or one of a few schema-describing ``system`` tables; table
       functions from a short list of generators; none of the functions that reach files, models,
       dictionaries, other tables or the network; no ``Identifier`` query parameters (they would
       name a table only after the check). The statement that runs is the one that was checked:
       ClickHouse rejects multi-statement text in the parse, and the same engine parses both times.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import chdb
import orjson
from clickhouse_connect.driver._chdbclient import ChdbClient
from clickhouse_connect.driver.client import Client

OK_BODY = b"Ok.\n"
SERVER_DISPLAY_NAME = "customer-pulse-sink"
DEFAULT_FORMAT = "TabSeparated"

# Set on the reader's handle before readonly=1 freezes it: one engine serves the sink and its readers.
READER_LIMITS = {"max_execution_time": "60"}

# system tables that describe the schema and the engine's settings, functions and types, not the host:
# clickhouse-connect reads system.settings on connect; Grafana's editor reads functions and columns
SYSTEM_TABLES = frozenset({"one", "settings", "functions", "columns", "data_type_families", "time_zones"})
# table functions that generate rows from their arguments alone (view() runs a SELECT, checked like any)
TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "values", "generateseries", "generate_series", "null",
     "view", "primes", "generaterandom"}
)
# scalar functions (lower case) that read host files, models, dictionaries or other tables, or leave the host
DENIED_FUNCTIONS = frozenset(
    {"file", "joinget", "joingetornull", "hascolumnintable", "catboostevaluate", "modelevaluate",
     "getserversetting", "getmergetreesetting", "getmacro", "hostname", "fqdn", "fullhostname",
     "filesystemavailable", "filesystemcapacity", "filesystemunreserved", "getoskernelversion", "serveruuid",
     "tcpport", "getserverport", "zookeepersessionuptime"}
)
DENIED_FUNCTION_PREFIXES = ("dictget", "dicthas", "dictisin", "naivebayes")
_AI_FUNCTION = re.compile(r"(ai|AI)[A-Z]")  # aiGenerate, AIClassify, ...: a call to an LLM provider
# `x IN name` reads the table `name` when it is a plain identifier
IN_FUNCTIONS = frozenset(
    {"in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin", "globalnotnullin"}
)
# URL parameters of the HTTP protocol itself: everything else (but param_*) is a setting
PROTOCOL_PARAMS = frozenset(
    {"query", "database", "default_format", "user", "password", "query_id", "quota_key", "session_id",
     "session_timeout", "session_check", "compress", "decompress", "wait_end_of_query", "buffer_size",
     "stacktrace", "role", "client_protocol_version"}
)

# HTTP status ClickHouse answers for an exception code (HTTPHandler's exceptionCodeToHTTPStatus)
_STATUS_BY_CODE = {
    516: 403, 192: 403, 193: 403, 497: 403,  # AUTHENTICATION_FAILED, UNKNOWN_USER, WRONG_PASSWORD, ACCESS_DENIED
    62: 400, 36: 400, 456: 400, 53: 400, 6: 400, 27: 400, 43: 400, 42: 400,  # syntax, bad arguments, types
    60: 404, 46: 404, 47: 404, 50: 404, 81: 404, 115: 404, 73: 404,  # unknown table/function/.../format
    48: 501, 159: 408,  # NOT_IMPLEMENTED, TIMEOUT_EXCEEDED
}
_CODE = re.compile(r"Code: (\d+)\.")
_DB_EXCEPTION = "DB::Exception: "
_BINARY_FORMATS = ("Native", "RowBinary", "Parquet", "Arrow", "ORC", "Avro", "Protobuf", "CapnProto", "MsgPack",
                   "BSON", "Npy")


class ClickHouseError(Exception):
    """A refusal or failure, worded and coded the way ClickHouse's server words it."""

    def __init__(self, code: int, message: str, name: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.text = message if message.startswith("Code: ") else f"Code: {code}. {_DB_EXCEPTION}{message} ({name})"

    @classmethod
    def from_engine(cls, exc: Exception) -> ClickHouseError:
        """The engine's own message (it already reads ``Code: N. DB::Exception: ...``)."""
        message = str(exc).strip()
        message = message[message.find("Code: "):] if "Code: " in message else message
        match = _CODE.match(message)
        return cls(int(match[1]) if match else 1001, message, "STD_EXCEPTION")

    @property
    def status(self) -> int:
        return _STATUS_BY_CODE.get(self.code, 500)


def access_denied(what: str) -> ClickHouseError:
    """The refusal of something confinement forbids, as ClickHouse's ACCESS_DENIED."""
    message = f"pulse reader: {what} is not allowed: this endpoint reads the pipeline's database only"
    return ClickHouseError(497, message, "ACCESS_DENIED")


@dataclass(frozen=True)
class Credentials:
    """The one reader account; compared in constant time so a timing cannot reveal a prefix."""

    user: str
    password: str

    def admit(self, user: str, password: str) -> bool:
        return hmac.compare_digest(user.encode(), self.user.encode()) & hmac.compare_digest(
            password.encode(), self.password.encode()
        )


@dataclass(frozen=True)
class Result:
    body: bytes
    summary: dict[str, str]


class ReadOnlyEngine:
    """A handle of its own on the embedded engine, frozen in ``readonly=1`` in the pipeline's database.

    chdb lets one process hold any number of handles on its one engine, each with its own session
    (settings, current database), so freezing this one leaves the sink's writer untouched. Calls on
    one handle must not overlap: a lock serialises them.
    """

    @classmethod
    def beside(cls, client: Client) -> ReadOnlyEngine:
        """A read-only handle on the embedded engine a chdb-backed ``client`` holds, in its current database."""
        if not isinstance(client, ChdbClient):
            raise TypeError("the ClickHouse HTTP interface serves the embedded engine; readers use a server directly")
        return cls(client.path, str(client.command("SELECT currentDatabase()")))

    def __init__(self, path: str, database: str) -> None:
        self.database = database
        self._lock = threading.Lock()
        self._conn = chdb.connect(os.path.realpath(path))
        self._conn.query(f"USE {_quote_identifier(database)}", "TabSeparated")
        for name, value in READER_LIMITS.items():
            self._conn.query(f"SET {name} = {_quote_literal(value)}", "TabSeparated")
        self._conn.query("SET readonly = 1", "TabSeparated")
        facts = self._conn.query("SELECT timezone(), version()", "TabSeparated").bytes().decode().split()
        self.timezone, self.version = facts[0], facts[1]
        formats = self._conn.query("SELECT name FROM system.formats WHERE is_output", "TabSeparated").bytes()
        self.output_formats = frozenset(formats.decode().split())

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def run(self, sql: str, fmt: str, params: Mapping[str, str]) -> Result:
        """Run one checked statement; ``fmt`` is the format unless the statement has a FORMAT clause."""
        result = self._call(sql, fmt, params)
        summary = {"read_rows": str(result.rows_read()), "read_bytes": str(result.bytes_read()),
                   "written_rows": "0", "written_bytes": "0", "elapsed_ns": str(int(result.elapsed() * 1e9))}
        return Result(result.bytes() or b"", summary)

    def apply_setting(self, name: str, value: str) -> None:
        """``SET`` one URL setting: readonly=1 lets only a value the setting already has through."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ClickHouseError(115, f"Unknown setting '{name}'", "UNKNOWN_SETTING")
        self._call(f"SET {name} = {_quote_literal(value)}", "TabSeparated", {})

    def parse(self, sql: str) -> dict[str, Any]:
        """ClickHouse's syntax tree of ``sql`` as JSON, by its own parser; nothing is executed.

        The text travels base64-encoded, so no quoting or escaping of it can go wrong.
        """
        return orjson.loads(self._parse_call("parseQueryToJSON", sql).bytes())

    def explain_ast(self, sql: str) -> list[str]:
        """The lines of ``EXPLAIN AST``, for the statements ``parseQueryToJSON`` cannot serialise."""
        self._parse_call("formatQuerySingleLine", sql)  # refuses more than one statement
        return self._call(f"EXPLAIN AST {sql}", "TSVRaw", {}).bytes().decode().splitlines()

    def _parse_call(self, function: str, sql: str) -> Any:
        """``function(sql)`` for one of ClickHouse's parsing functions; its errors read as the statement's own.

        The text travels base64-encoded, so no quoting or escaping of it can go wrong.
        """
        encoded = {"q": base64.b64encode(sql.encode()).decode()}
        try:
            return self._call(f"SELECT {function}(base64Decode({{q:String}}))", "RawBLOB", encoded)
        except ClickHouseError as error:
            raise ClickHouseError(error.code, _without_scope(error.text)) from None

    def _call(self, sql: str, fmt: str, params: Mapping[str, str]) -> Any:
        with self._lock:
            try:
                return self._conn.query(sql, fmt, params=dict(params))
            except Exception as exc:  # chdb raises RuntimeError carrying ClickHouse's message
                raise ClickHouseError.from_engine(exc) from None


def check_tree(tree: Mapping[str, Any], database: str) -> None:
    """Refuse a parsed statement that writes, leaves the pipeline's database or reaches the host."""
    kind = tree.get("type")
    if kind == "ShowTablesQuery":
        _check_show(tree, database)
    elif kind != "SelectWithUnionQuery":
        raise access_denied(f"the statement {kind}")
    if "out_file" in tree:
        raise access_denied("INTO OUTFILE")
    for node in _nodes(tree):
        _check_node(node, database)


def check_describe(ast_lines: list[str], database: str) -> None:
    """Admit ``DESCRIBE [TABLE] <table>`` of a table in the pipeline's database, from ``EXPLAIN AST``.

    ``EXPLAIN AST`` prints ``db.table`` without quotes, so a name is admitted only when it cannot
    mean anything outside the pipeline's database: no dot, or the database's name and a dot.
    """
    lines = [line.strip() for line in ast_lines]
    if len(lines) < 3 or lines[1] != "TableExpression (children 1)" or not lines[2].startswith("TableIdentifier "):
        raise access_denied("DESCRIBE of anything but a table")
    if not lines[0].startswith("DescribeQuery") or any(not line.startswith("Identifier ") for line in lines[3:]):
        raise access_denied("this statement")
    name = lines[2].removeprefix("TableIdentifier ")
    if "." in name and not name.startswith(f"{database}."):
        raise access_denied(f"table {name}")


def _check_show(tree: Mapping[str, Any], database: str) -> None:
    """SHOW DATABASES lists names only; SHOW TABLES only of the pipeline's database; no other SHOW."""
    modes = {key for key, value in tree.items() if value is True and not key.startswith("is_")}
    if modes == {"databases"}:
        return
    if modes:
        raise access_denied(f"SHOW {' '.join(sorted(modes)).upper()}")
    source = tree.get("from")
    if source is not None and source.get("name") != database:
        raise access_denied(f"SHOW TABLES of database {source.get('name') or 'given by a parameter'}")


def _nodes(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def _check_node(node: Mapping[str, Any], database: str) -> None:
    kind = node.get("type")
    if kind == "QueryParameter" and node.get("param_type") == "Identifier":
        raise access_denied("an Identifier query parameter")
    if kind == "TableIdentifier":
        _check_table(node.get("name_parts") or [node.get("name", "")], database)
    elif kind == "TableExpression" and "table_function" in node:
        name = node["table_function"].get("name", "")
        if name.lower() not in TABLE_FUNCTIONS:
            raise access_denied(f"table function {name}")
    elif kind == "Function":
        _check_function(node, database)


def _check_function(node: Mapping[str, Any], database: str) -> None:
    name = node.get("name", "")
    lowered = name.lower()
    if lowered in DENIED_FUNCTIONS or lowered.startswith(DENIED_FUNCTION_PREFIXES) or _AI_FUNCTION.match(name):
        raise access_denied(f"function {name}")
    if lowered in IN_FUNCTIONS:
        arguments = node.get("arguments", {}).get("children", [])
        if len(arguments) == 2 and arguments[1].get("type") == "Identifier" and arguments[1].get("name_parts"):
            _check_table(arguments[1]["name_parts"], database)


def _check_table(parts: list[str], database: str) -> None:
    """A table of the pipeline's database (unqualified: the pinned current one) or an admitted system table."""
    if len(parts) == 1 or parts[0] == database:
        return
    if parts[0] == "system" and parts[-1] in SYSTEM_TABLES:
        return
    raise access_denied(f"table {'.'.join(parts)}")


@dataclass
class Request:
    """One HTTP request, as the handler read it (header names in lower case)."""

    method: str
    path: str
    query_string: str
    headers: Mapping[str, str]
    body: bytes = b""
    params: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.params = dict(parse_qsl(self.query_string, keep_blank_values=True))


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]


class ClickHouseHttp:
    """Answers ClickHouse HTTP requests from one read-only engine handle for one reader account."""

    def __init__(self, engine: ReadOnlyEngine, credentials: Credentials) -> None:
        self._engine = engine
        self._credentials = credentials

    @property
    def database(self) -> str:
        return self._engine.database

    def handle(self, request: Request) -> Reply:
        """The reply to ``/`` or ``/ping`` (the caller routes only those here)."""
        if request.path == "/ping" or (request.method == "GET" and not request.params.get("query")):
            return Reply(200, OK_BODY, {"Content-Type": "text/html; charset=UTF-8"})
        query_id = request.params.get("query_id") or str(uuid.uuid4())
        try:
            return self._answer(request, query_id)
        except ClickHouseError as error:
            return self._error(error, query_id)

    def _answer(self, request: Request, query_id: str) -> Reply:
        self._authenticate(request)
        params = request.params
        if params.get("database", self.database) != self.database:
            raise access_denied(f"database {params['database']}")
        for name, value in params.items():
            if name not in PROTOCOL_PARAMS and not name.startswith("param_"):
                self._engine.apply_setting(name, value)
        sql = _query_text(request)
        fmt = self._output_format(sql, params.get("default_format") or DEFAULT_FORMAT)
        bound = {name.removeprefix("param_"): value for name, value in params.items() if name.startswith("param_")}
        result = self._engine.run(sql, fmt, bound)
        return Reply(200, result.body, {
            "Content-Type": _content_type(fmt),
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Summary": orjson.dumps(result.summary).decode(),
            **self._common_headers(query_id),
        })

    def _authenticate(self, request: Request) -> None:
        user, password = _credentials_of(request)
        if not self._credentials.admit(user, password):
            raise ClickHouseError(
                516, f"{user}: Authentication failed: password is incorrect, or there is no user with such name",
                "AUTHENTICATION_FAILED",
            )

    def _output_format(self, sql: str, default_format: str) -> str:
        """Check the statement and return the format the answer is written in (its FORMAT clause wins)."""
        try:
            tree = self._engine.parse(sql)
        except ClickHouseError as error:
            if "'DescribeQuery' does not support JSON" not in error.text:
                raise
            lines = self._engine.explain_ast(sql)
            check_describe(lines, self.database)
            formats = [line.strip().removeprefix("Identifier ") for line in lines[3:]]
            return self._known_format(formats[-1] if formats else default_format)
        check_tree(tree, self.database)
        return self._known_format(tree.get("format_ast", {}).get("name") or default_format)

    def _known_format(self, fmt: str) -> str:
        """Only ClickHouse's output formats: chdb turns some other names into Python objects, not bytes."""
        if fmt not in self._engine.output_formats:
            raise ClickHouseError(73, f"Unknown output format {fmt}", "UNKNOWN_FORMAT")
        return fmt

    def _error(self, error: ClickHouseError, query_id: str) -> Reply:
        text = error.text if "(version " in error.text else f"{error.text} (version {self._engine.version})"
        return Reply(error.status, f"{text}\n".encode(), {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(error.code),
            **self._common_headers(query_id),
        })

    def _common_headers(self, query_id: str) -> dict[str, str]:
        return {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self._engine.timezone,
            "X-ClickHouse-Server-Display-Name": SERVER_DISPLAY_NAME,
        }


def _credentials_of(request: Request) -> tuple[str, str]:
    """User and password the ways ClickHouse takes them: basic auth, X-ClickHouse-* headers, URL parameters."""
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(authorization[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ClickHouseError(516, "Invalid authentication: malformed Authorization header",
                                  "AUTHENTICATION_FAILED") from None
        return user, password
    if "x-clickhouse-user" in request.headers:
        return request.headers["x-clickhouse-user"], request.headers.get("x-clickhouse-key", "")
    return request.params.get("user", "default"), request.params.get("password", "")


def _query_text(request: Request) -> str:
    """The ``query`` parameter and the body, joined as ClickHouse joins them."""
    parts = [request.params.get("query", ""), request.body.decode(errors="replace")]
    sql = "\n".join(part for part in parts if part.strip())
    if not sql.strip():
        raise ClickHouseError(62, "Empty query", "SYNTAX_ERROR")
    return sql


def _without_scope(text: str) -> str:
    """A parse error without the wrapper query it was raised in (``: In scope SELECT parseQueryToJSON(...)``)."""
    head, _, tail = text.partition(": In scope SELECT ")
    name = re.search(r"\(([A-Z_]+)\)\s*$", tail)
    return f"{head} ({name[1]})" if name else head


def _content_type(fmt: str) -> str:
    if fmt.startswith(_BINARY_FORMATS):
        return "application/octet-stream"
    if fmt.startswith("JSON") or fmt.startswith("PrettyJSON"):
        return "application/json; charset=UTF-8"
    if fmt.startswith(("TabSeparated", "TSV")):
        return "text/tab-separated-values; charset=UTF-8"
    if fmt.startswith("CSV"):
        return "text/csv; charset=UTF-8; header=" + ("present" if "WithNames" in fmt else "absent")
    return "text/plain; charset=UTF-8"


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
