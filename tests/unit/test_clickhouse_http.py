"""The sink's ClickHouse HTTP interface, read through clickhouse-connect's own HTTP client.

An embedded engine in a temporary directory holds a small table and a KPI-like view; the sink's
query server answers on a free port; every refusal is tried for real against it.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from clickhouse_connect import get_client
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from sinks.clickhouse import connect
from sinks.clickhouse_http import ClickHouseHttp, Credentials, ReadOnlyEngine
from sinks.liveness import Health
from sinks.query_server import QueryServer

USER, PASSWORD = "pulse", "s3cret"


@pytest.fixture(scope="module")
def writer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """The sink's own client on the embedded engine (chdb allows one engine directory per process)."""
    client = connect(f"chdb://{tmp_path_factory.mktemp('clickhouse')}")
    client.command("CREATE TABLE IF NOT EXISTS events (day Date, user_id String, revenue Float64) "
                   "ENGINE = MergeTree ORDER BY (day, user_id)")
    client.command("CREATE VIEW IF NOT EXISTS kpi_daily AS SELECT day, uniqExact(user_id) AS users, "
                   "sum(revenue) AS revenue FROM events GROUP BY day")
    client.command("TRUNCATE TABLE events")
    client.command("INSERT INTO events VALUES ('2024-05-01', 'u1', 10), ('2024-05-01', 'u2', 5.5), "
                   "('2024-05-02', 'u1', 1)")
    try:
        yield client
    finally:
        client.close()  # the engine is released once every handle on it is closed, for the next module


@pytest.fixture(scope="module")
def server(writer: Client) -> Iterator[QueryServer]:
    healthy = Health(stalled=False, seconds_since_progress=0.0, lag=0)
    engine_client, query_client = connect_reader(writer), connect_reader(writer)
    engine = ReadOnlyEngine.beside(engine_client)
    clickhouse = ClickHouseHttp(engine, Credentials(USER, PASSWORD))
    query_server = QueryServer(query_client, 0, lambda: healthy, clickhouse=clickhouse)
    query_server.start()
    try:
        yield query_server
    finally:
        query_server.stop()
        engine.close()
        engine_client.close()
        query_client.close()


def connect_reader(writer: Client) -> Client:
    return connect(f"chdb://{writer.path}")  # type: ignore[attr-defined]  # a ChdbClient


@pytest.fixture(scope="module")
def reader(server: QueryServer) -> Client:
    return get_client(host="127.0.0.1", port=server.port, username=USER, password=PASSWORD, interface="http")


def http(
    server: QueryServer, query: str, user: str | None = USER, password: str = PASSWORD
) -> tuple[int, dict[str, str], bytes]:
    """GET ``/?query`` with the credentials in X-ClickHouse-* headers (none for ``user=None``)."""
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/?{query}", method="GET")
    if user is not None:
        request.add_header("X-ClickHouse-User", user)
        request.add_header("X-ClickHouse-Key", password)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def refused(reader: Client, sql: str, **kwargs: object) -> DatabaseError:
    with pytest.raises(DatabaseError) as caught:
        reader.raw_query(sql, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_reads_the_kpi_view(reader: Client) -> None:
    result = reader.query("SELECT day, users, revenue FROM kpi_daily ORDER BY day")
    assert [(str(day), users, revenue) for day, users, revenue in result.result_rows] == [
        ("2024-05-01", 2, 15.5), ("2024-05-02", 1, 1.0),
    ]
    assert reader.server_version == reader.command("SELECT version()")


def test_sees_rows_the_writer_inserts_after_it_started(reader: Client, writer: Client) -> None:
    writer.command("INSERT INTO events VALUES ('2024-05-03', 'u3', 2)")
    assert reader.query("SELECT count() FROM events WHERE day = '2024-05-03'").result_rows == [(1,)]
    writer.command("DELETE FROM events WHERE day = '2024-05-03'")


def test_query_parameters_server_and_client_side(reader: Client) -> None:
    server_side = reader.query("SELECT users FROM kpi_daily WHERE day = {day:Date}", parameters={"day": "2024-05-01"})
    assert server_side.result_rows == [(2,)]
    text = "it's a \\ tab\there"
    assert reader.query("SELECT {s:String}", parameters={"s": text}).result_rows == [(text,)]
    client_side = reader.query("SELECT count() FROM events WHERE user_id = %(u)s", parameters={"u": "u1"})
    assert client_side.result_rows == [(2,)]


def test_raw_formats_pass_through(reader: Client) -> None:
    as_json = orjson.loads(reader.raw_query("SELECT day, users FROM kpi_daily ORDER BY day", fmt="JSON"))
    assert as_json["data"] == [{"day": "2024-05-01", "users": 2}, {"day": "2024-05-02", "users": 1}]
    assert reader.raw_query("SELECT day, users FROM kpi_daily ORDER BY day", fmt="TSV") == (
        b"2024-05-01\t2\n2024-05-02\t1\n"
    )
    assert reader.raw_query("SELECT 1 AS x FORMAT JSONEachRow") == b'{"x":1}\n'
    assert reader.command("SELECT 1") == 1


def test_headers_and_default_format(server: QueryServer) -> None:
    status, headers, body = http(server, "query=SELECT+count()+FROM+events&default_format=JSONCompact&query_id=q-1")
    assert status == 200 and orjson.loads(body)["data"] == [[3]]
    assert headers["X-ClickHouse-Format"] == "JSONCompact" and headers["X-ClickHouse-Query-Id"] == "q-1"
    assert headers["Content-Type"].startswith("application/json")
    assert set(orjson.loads(headers["X-ClickHouse-Summary"])) >= {"read_rows", "read_bytes", "elapsed_ns"}
    assert headers["X-ClickHouse-Timezone"] and headers["X-ClickHouse-Server-Display-Name"]


def test_schema_browsing_as_grafana_does(reader: Client) -> None:
    assert "events" in reader.raw_query("SHOW TABLES FROM default", fmt="TSV").decode().split()
    assert "default" in reader.raw_query("SHOW DATABASES", fmt="TSV").decode().split()
    assert reader.raw_query('DESC TABLE "default"."kpi_daily"', fmt="TSV").startswith(b"day\tDate")
    assert reader.query("SELECT name FROM system.columns WHERE table = 'events' ORDER BY name").result_rows


def test_ping_and_the_json_api_stay(server: QueryServer, reader: Client) -> None:
    assert reader.ping()
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/query?sql=SELECT+1", timeout=5) as response:
        assert orjson.loads(response.read()) == {"columns": ["1"], "rows": [[1]]}


@pytest.mark.parametrize(("user", "password"), [(USER, "wrong"), ("default", ""), ("admin", PASSWORD)])
def test_wrong_credentials_are_refused_as_clickhouse_does(server: QueryServer, user: str, password: str) -> None:
    status, headers, body = http(server, "query=SELECT+1", user=user, password=password)
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "516")
    assert body.startswith(b"Code: 516. DB::Exception: ") and b"(AUTHENTICATION_FAILED)" in body
    with pytest.raises(DatabaseError, match="516"):
        get_client(host="127.0.0.1", port=server.port, username=USER, password="wrong", interface="http")


def test_basic_auth_and_url_credentials(server: QueryServer) -> None:
    assert http(server, f"query=SELECT+1&user={USER}&password={PASSWORD}", user=None)[0] == 200
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/", data=b"SELECT 1", method="POST")
    request.add_header("Authorization", "Basic cHVsc2U6czNjcmV0")  # pulse:s3cret
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.read() == b"1\n"


@pytest.mark.parametrize("sql", [
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT file('/etc/passwd')",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'CSV', 'a String')",
    "SELECT * FROM s3('http://127.0.0.1:9/bucket/x.csv')",
    "SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT * FROM executable('id', 'TSV', 'a String')",
    "SELECT * FROM merge('system', '^one$')",
    "SELECT * FROM python(x)",
    "DESCRIBE file('/etc/passwd', 'LineAsString')",
    "SELECT 1 INTO OUTFILE '/tmp/pulse-outfile.txt'",
    "SELECT * FROM system.disks",
    "SELECT * FROM system.processes",
    "SELECT * FROM INFORMATION_SCHEMA.TABLES",
    "SELECT 1 WHERE 1 IN system.disks",
    "SELECT joinGet('system.one', 'dummy', 0)",
    "SELECT hostName()",
    "SHOW TABLES FROM system",
    "SELECT * FROM {t:Identifier}",
])
def test_reaching_outside_the_pipeline_database_is_refused(reader: Client, sql: str) -> None:
    error = refused(reader, sql, parameters={"t": "system.disks"} if "{t:" in sql else None)
    assert "ACCESS_DENIED" in str(error) and "497" in str(error)
    assert not Path("/tmp/pulse-outfile.txt").exists()


@pytest.mark.parametrize("sql", [
    "SET readonly = 0",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 SETTINGS max_threads = 64",
    "INSERT INTO events VALUES ('2024-01-01', 'x', 1)",
    "CREATE TABLE evil (a UInt8) ENGINE = Memory",
    "DROP TABLE events",
    "ALTER TABLE events DELETE WHERE 1",
    "SELECT 1; DROP TABLE events",
])
def test_writes_and_settings_changes_are_refused(reader: Client, writer: Client, sql: str) -> None:
    error = refused(reader, sql)
    # ClickHouse refuses: readonly=1, its parser (one statement; INSERT data is not a statement to check)
    assert any(name in str(error) for name in ("READONLY", "ACCESS_DENIED", "SYNTAX_ERROR", "BAD_ARGUMENTS"))
    assert writer.command("SELECT count() FROM events") == 3


def test_settings_in_the_url_are_refused(server: QueryServer, reader: Client) -> None:
    status, headers, body = http(server, "query=SELECT+1&readonly=0")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "164") and b"(READONLY)" in body
    assert b"READONLY" in http(server, "query=SELECT+1&max_memory_usage=1")[2]
    with pytest.raises(DatabaseError, match="(?i)readonly"):  # clickhouse-connect knows it from system.settings
        reader.raw_query("SELECT 1", settings={"max_threads": 64})


def test_other_databases_are_refused(server: QueryServer) -> None:
    status, headers, _ = http(server, "query=SELECT+1&database=system")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "497")


def test_errors_read_as_clickhouse_errors(server: QueryServer) -> None:
    status, headers, body = http(server, "query=SELECT+*+FROM+no_such_table")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "60")
    assert body.startswith(b"Code: 60. DB::Exception: ") and b"(version " in body
    status, headers, body = http(server, "query=SELEC+1")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (400, "62")
    assert b"parseQueryToJSON" not in body
