"""The cluster variant of the migrations: its shape, and every statement of both variants parsed by the engine.

There is no cluster here (no Keeper, no remote_servers), so the embedded engine parses the
statements with ``EXPLAIN AST`` instead of running them; the single-node variant also runs
for real in ``test_sink_clickhouse``. chdb opens one engine directory per process at a time,
so the module opens one and closes it when done.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse import connect
from sinks.cluster import ClusterDDLError, everywhere, on_cluster
from sinks.migrations import available, ledger, script

CLUSTER = "pulse_cluster"
ALL_STATEMENTS = [
    pytest.param(statement, id=f"{name}-{i}")
    for cluster in (None, CLUSTER)
    for name, statements in [
        ("ledger" if cluster is None else "ledger-cluster", [ledger(cluster)]),
        *((f"{m.version:04d}{'-cluster' if cluster else ''}", m.statements(cluster)) for m in available()),
    ]
    for i, statement in enumerate(statements)
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    client = connect(f"chdb://{tmp_path_factory.mktemp('clickhouse')}")
    try:
        yield client
    finally:
        client.close()


@pytest.mark.parametrize("statement", ALL_STATEMENTS)
def test_every_statement_of_both_variants_parses(engine: Client, statement: str) -> None:
    ast = "\n".join(row[0] for row in engine.query(f"EXPLAIN AST {statement}").result_rows)
    assert ast.startswith(("CreateQuery", "AlterQuery")), ast


def test_the_engine_refuses_what_it_cannot_parse(engine: Client) -> None:
    """The check above has teeth: a broken statement fails to parse."""
    with pytest.raises(Exception, match="Syntax error"):
        engine.query(
            f"EXPLAIN AST {on_cluster('CREATE TABLE t (x String) ENGINE = MergeTree ORDER BY (x', CLUSTER)[0]}"
        )


def test_a_table_becomes_replicated_locals_behind_a_distributed_table() -> None:
    sessions = next(m for m in available() if m.name == "sessions")
    local, distributed = sessions.statements(CLUSTER)
    assert local.startswith(f"CREATE TABLE IF NOT EXISTS sessions_local ON CLUSTER {CLUSTER}\n(")
    assert ("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', "
            "version, deleted)") in local  # fmt: skip
    assert "SETTINGS replicated_deduplication_window = 1000" in local and "non_replicated" not in local
    assert distributed == (
        f"CREATE TABLE IF NOT EXISTS sessions ON CLUSTER {CLUSTER} AS sessions_local\n"
        f"ENGINE = Distributed({CLUSTER}, currentDatabase(), sessions_local, cityHash64(user_id))"
    )


def test_rows_are_sharded_by_the_first_sorting_column() -> None:
    keys = {
        m.name: [s for s in m.statements(CLUSTER) if "ENGINE = Distributed" in s][-1].rsplit("cityHash64(", 1)[1]
        for m in available()
        if any(statement.startswith("CREATE TABLE") for statement in m.statements())  # views and alters: no key
    }
    assert keys == {"events": "user_id))", "dead_letters": "letter_id))", "sessions": "user_id))",
                    "funnel_steps": "user_id))", "churn": "alert_id))", "clv_predictions": "user_id))",
                    "person_ids": "id))", "erasures": "erasure_id))"}  # fmt: skip


def test_column_alters_reach_the_locals_and_the_distributed_table() -> None:
    assert on_cluster("ALTER TABLE events ADD COLUMN IF NOT EXISTS x String", CLUSTER) == [
        f"ALTER TABLE events_local ON CLUSTER {CLUSTER} ADD COLUMN IF NOT EXISTS x String",
        f"ALTER TABLE events ON CLUSTER {CLUSTER} ADD COLUMN IF NOT EXISTS x String",
    ]
    assert on_cluster("ALTER TABLE events MODIFY TTL toDateTime(ts) + INTERVAL 1 YEAR", CLUSTER) == [
        f"ALTER TABLE events_local ON CLUSTER {CLUSTER} MODIFY TTL toDateTime(ts) + INTERVAL 1 YEAR"
    ]


def test_dictionaries_are_created_on_every_node() -> None:
    dictionary = "CREATE DICTIONARY IF NOT EXISTS links\n(id String, person_id String)\nPRIMARY KEY id"
    assert on_cluster(dictionary, CLUSTER) == [
        f"CREATE DICTIONARY IF NOT EXISTS links ON CLUSTER {CLUSTER}\n(id String, person_id String)\nPRIMARY KEY id"
    ]


def test_views_run_on_the_cluster_over_the_distributed_tables() -> None:
    view = "CREATE VIEW IF NOT EXISTS daily AS SELECT toDate(ts) AS day, count() FROM events GROUP BY day"
    assert on_cluster(view, CLUSTER) == [
        f"CREATE VIEW IF NOT EXISTS daily ON CLUSTER {CLUSTER} AS SELECT toDate(ts) AS day, count() FROM events GROUP BY day"
    ]


def test_the_ledger_is_on_every_node_not_sharded() -> None:
    statement = ledger(CLUSTER)
    assert "'/clickhouse/tables/all/{database}/{table}'" in statement and "Distributed" not in statement
    assert statement.startswith(f"CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER {CLUSTER}\n")


@pytest.mark.parametrize(
    ("statement", "fragment"),
    [
        ("CREATE MATERIALIZED VIEW v TO t AS SELECT 1", "no cluster variant"),
        ("CREATE TABLE t (x UInt8) ENGINE = Memory", "only \\*MergeTree"),
        ("CREATE TABLE t (x UInt8) ENGINE = MergeTree PRIMARY KEY x", "no ORDER BY"),
    ],
)
def test_what_has_no_derivable_variant_is_refused(statement: str, fragment: str) -> None:
    with pytest.raises(ClusterDDLError, match=fragment):
        on_cluster(statement, CLUSTER)


def test_cluster_names_are_identifiers() -> None:
    with pytest.raises(ClusterDDLError, match="letters, digits and _"):
        everywhere(ledger(), "prod; DROP TABLE events")


def test_the_printed_script_has_every_statement_once() -> None:
    text = script(cluster=CLUSTER)
    assert text.count(";\n") == 1 + sum(len(m.statements(CLUSTER)) for m in available())
    assert text.count(f"ON CLUSTER {CLUSTER}") == text.count(";\n")
