"""``pulse bench-views`` on a small target: the dataset it builds, how it times, the report it writes.

The real run (10 M events) takes minutes. 50,000 events go through the same code in seconds: a
base of 125 customers copied 14 times and a bit. chdb opens one engine directory per process. The
benchmark closes its own client before it returns, and this module closes the one it reads the
engine with, so the next module can open its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from bench.views import BUILD_FILE, BenchViewsConfig, BenchViewsError, run_views_bench, time_view
from sinks.clickhouse import connect

TARGET = 50_000
VIEW_KEYS = {"name", "median_s", "runs", "rows", "under_1s", "error"}
REPORT_KEYS = {"events", "build_s", "reused_engine", "dataset", "target_s", "runs", "views", "machine", "command"}
# The copy a row belongs to: 0 for the base, n for ids suffixed ~n.
COPY = "if(position(user_id, '~') = 0, 0, toUInt32(splitByChar('~', user_id)[2]))"


def _quiet(_line: str) -> None:
    """The benchmark's progress lines, not wanted in test output."""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, Path]:
    """One run of the benchmark: its report, its engine directory and its report directory."""
    engine_dir, out = tmp_path_factory.mktemp("bench-views-engine"), tmp_path_factory.mktemp("bench-views-out")
    report = run_views_bench(BenchViewsConfig(events=TARGET, out=out, engine_dir=engine_dir, runs=1), "test", _quiet)
    return report, engine_dir, out


@pytest.fixture(scope="module")
def db(run: tuple[dict[str, Any], Path, Path]) -> Iterator[Client]:
    client = connect(f"chdb://{run[1]}")
    try:
        yield client
    finally:
        client.close()


def test_events_hold_exactly_the_target(run: tuple[dict[str, Any], Path, Path], db: Client) -> None:
    report = run[0]
    assert db.command("SELECT count() FROM events") == TARGET == report["events"]
    assert db.command("SELECT uniqExact(event_id) FROM events") == TARGET
    assert report["dataset"]["copies"] > 1 and report["build_s"] > 0


def test_every_copy_is_a_new_set_of_users(run: tuple[dict[str, Any], Path, Path], db: Client) -> None:
    data = run[0]["dataset"]
    users = db.command("SELECT uniqExact(user_id) FROM events")
    assert users == data["base_users"] * data["copies"] + data["last_copy_users"]
    per_copy = db.query(f"SELECT {COPY} AS copy, count(), uniqExact(user_id) FROM events GROUP BY copy ORDER BY copy")
    whole = [(copy, data["base_events"], data["base_users"]) for copy in range(data["copies"])]
    last = [(data["copies"], data["last_copy_events"], data["last_copy_users"])] if data["last_copy_events"] else []
    assert [tuple(row) for row in per_copy.result_rows] == whole + last


def test_order_and_ticket_ids_belong_to_their_copy(db: Client) -> None:
    """Views group by these ids: a copy's orders and tickets must not fold into the base's."""
    ids = db.query(f"""
        SELECT id, {COPY} AS copy FROM events ARRAY JOIN [JSONExtractString(props, 'order_id'),
                                                          JSONExtractString(props, 'ticket_id')] AS id
        WHERE id != ''
    """).result_rows  # fmt: skip
    assert {copy for _, copy in ids} > {0}, "no copied order or ticket"
    assert all("~" not in id_ if copy == 0 else id_.endswith(f"~{copy}") for id_, copy in ids)


def test_the_other_tables_are_copied_with_their_users(run: tuple[dict[str, Any], Path, Path], db: Client) -> None:
    copies = run[0]["dataset"]["copies"]
    for table in ("sessions", "funnel_steps", "churn_scores", "churn_alerts"):
        assert db.command(f"SELECT uniqExact({COPY}) FROM {table}") >= copies, table
        strangers = f"SELECT count() FROM {table} WHERE user_id NOT IN (SELECT user_id FROM events)"
        assert db.command(strangers) == 0, table
    assert db.command("SELECT count() FROM funnel_steps WHERE event_id NOT IN (SELECT event_id FROM events)") == 0


def test_every_view_but_the_tables_by_person_is_timed_with_its_rows(run: tuple[dict[str, Any], Path, Path],
                                                                    db: Client) -> None:  # fmt: skip
    views = db.query("SELECT name FROM system.tables WHERE database = currentDatabase() AND engine = 'View'")
    report = run[0]
    expected = [name for name in views.result_columns[0] if not name.endswith("_by_person")]
    assert sorted(view["name"] for view in report["views"]) == sorted(expected) and len(expected) > 60
    for view in report["views"]:
        assert view["error"] is None and len(view["runs"]) == 1 and view["median_s"] == view["runs"][0], view
        assert view["rows"] == db.command(f"SELECT count() FROM {view['name']}"), view
    assert any(view["rows"] > 0 for view in report["views"])


def test_timing_computes_every_column(db: Client) -> None:
    """count() skips a column it does not need; the timed query must not, or a view's cost would go unseen."""
    db.command("CREATE VIEW probe_throws AS SELECT number, throwIf(number = 3) AS boom FROM numbers(5)")
    try:
        assert db.command("SELECT count() FROM probe_throws") == 5
        timing = time_view(db, "probe_throws", 1, "[probe]", _quiet)
    finally:
        db.command("DROP VIEW probe_throws")
    assert timing.median_s is None and timing.error and "throwIf" in timing.error


def test_the_report_keys_are_stable(run: tuple[dict[str, Any], Path, Path]) -> None:
    report, _, out = run
    written = orjson.loads((out / "views.json").read_bytes())
    assert written == report and set(written) == REPORT_KEYS
    assert all(set(view) == VIEW_KEYS for view in written["views"])
    medians = [view["median_s"] for view in written["views"]]
    assert medians == sorted(medians, reverse=True)
    table = (out / "views.md").read_text()
    assert all(f"| `{view['name']}` |" in table for view in written["views"])
    assert sorted(path.name for path in out.iterdir()) == ["views.json", "views.md"]


def test_a_built_engine_is_reused(run: tuple[dict[str, Any], Path, Path]) -> None:
    first, engine_dir, _ = run
    out = engine_dir.parent / "bench-views-again"
    config = BenchViewsConfig(events=TARGET, out=out, engine_dir=engine_dir, runs=1, only=("funnel_conversion",))
    again = run_views_bench(config, "test", _quiet)
    assert again["reused_engine"] and again["dataset"] == first["dataset"]
    assert [view["name"] for view in again["views"]] == ["funnel_conversion"]


def test_an_engine_holding_anything_else_is_refused(run: tuple[dict[str, Any], Path, Path], db: Client) -> None:
    engine_dir = run[1]
    config = BenchViewsConfig(events=TARGET + 1, out=engine_dir.parent / "bench-views-refused", engine_dir=engine_dir)
    with pytest.raises(BenchViewsError, match="delete it or choose another"):
        run_views_bench(config, "test", _quiet)
    assert db.command("SELECT count() FROM events") == TARGET
    assert (engine_dir / BUILD_FILE).exists()
