"""Migration files: naming, statement splitting, and the real DDL on the embedded engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinks.migrations import Migration, MigrationError, available


def test_shipped_migrations_are_ordered() -> None:
    migrations = available()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))  # no gap, no repeat
    assert [(m.version, m.name) for m in migrations[:7]] == [
        (1, "events"), (2, "dead_letters"), (3, "events_received_at"), (4, "sessions"),
        (5, "funnel_steps"), (6, "churn"), (7, "funnel_views"),
    ]  # fmt: skip


def test_statements_split_on_line_end_semicolons() -> None:
    sql = "-- c;\nCREATE TABLE a (x String DEFAULT ';') ENGINE=Memory;\nCREATE TABLE b (y UInt8) ENGINE=Memory\n"
    assert Migration(1, "x", sql).statements() == [
        "CREATE TABLE a (x String DEFAULT ';') ENGINE=Memory",
        "CREATE TABLE b (y UInt8) ENGINE=Memory",
    ]


def test_badly_named_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_events.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="NNNN_snake_case"):
        available(tmp_path)
