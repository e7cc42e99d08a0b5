"""The Grafana dashboards of ``deploy/grafana``: provisioned datasources only, and every product panel's SQL runs.

The product dashboard's SQL runs on the embedded engine with the tables the project's
migrations create and a few rows in each, its ClickHouse-plugin macros expanded the way the
plugin expands them. (The operations dashboard's PromQL runs against a real Prometheus in
``tests/integration/test_prometheus_stack.py``.) chdb opens one engine directory per process
at a time, so the module opens one and closes it when done.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import yaml
from clickhouse_connect.driver.client import Client

from sinks.clickhouse import connect
from sinks.migrations import migrate
from tests.dashboards import GRAFANA_DIR, PanelQuery, queries

FROM = datetime(2026, 1, 1, tzinfo=UTC)
TO = datetime(2026, 2, 1, tzinfo=UTC)
INTERVAL_S = 86_400
AT = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def provisioned_datasources() -> dict[str, str]:
    """uid -> type of the datasources Grafana is provisioned with."""
    found = {}
    for path in (GRAFANA_DIR / "provisioning" / "datasources").glob("*.yml"):
        found |= {source["uid"]: source["type"] for source in yaml.safe_load(path.read_text())["datasources"]}
    return found


def expand_macros(sql: str) -> str:
    """The grafana-clickhouse-datasource macros the product dashboard uses, as the plugin expands them for FROM..TO."""
    start, end = int(FROM.timestamp()), int(TO.timestamp())
    functions = {
        "timeFilter": lambda column: f"{column} >= toDateTime({start}) AND {column} <= toDateTime({end})",
        "timeInterval": lambda column: f"toStartOfInterval(toDateTime({column}), INTERVAL {INTERVAL_S} second)",
    }
    return re.sub(r"\$__(\w+)\(([^)]*)\)", lambda m: functions[m[1]](m[2].strip()), sql)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    engine = connect(f"chdb://{tmp_path_factory.mktemp('clickhouse')}")
    try:
        migrate(engine)
        seed(engine)
        yield engine
    finally:
        engine.close()


def seed(client: Client) -> None:
    """A customer's journey: enough rows that every panel returns something."""
    events = [
        ("signup", "u1", {}, {}),
        ("page_view", "u1", {}, {"path": "/pricing"}),
        ("onboarding_completed", "u1", {}, {}),
        ("trial_started", "u1", {"plan": "pro"}, {}),
        ("subscription_started", "u1", {"plan": "pro", "mrr": 49.0}, {}),
        ("purchase", "u1", {"order_id": "o1", "amount": 30.0}, {}),
        ("refund", "u1", {"order_id": "o1", "amount": 10.0}, {}),
        ("survey_response", "u2", {"kind": "nps", "score": 10}, {}),
        ("survey_response", "u3", {"kind": "nps", "score": 3}, {}),
        ("marketing_spend", "system", {"channel": "ads", "amount": 100.0}, {}),
    ]
    insert(client, "events", [
        {"event_id": f"e{i}", "type": kind, "user_id": user, "ts": AT,
         "props": orjson.dumps(props).decode(), "context": orjson.dumps(context).decode()}
        for i, (kind, user, props, context) in enumerate(events)
    ])  # fmt: skip
    insert(client, "sessions", [
        {"session_id": "s1", "user_id": "u1", "start": AT, "end": AT, "duration_ms": 60_000, "events": 7,
         "page_views": 1, "bounce": False, "entry_path": "/pricing", "device": "desktop",
         "first_touch_source": "google", "is_first": True, "closed": True, "deleted": 0, "version": 1}
    ])  # fmt: skip
    insert(client, "dead_letters", [
        {"letter_id": "l1", "dlq_topic": "pulse.dead-letters", "dlq_partition": 0, "dlq_offset": 1, "failed_at": AT,
         "reason": "bad_json", "errors": ["not JSON"], "source": "events.jsonl:3", "raw": "{oops"}
    ])  # fmt: skip
    insert(client, "funnel_steps", [
        {"step_id": f"signup_to_purchase|u1|1|{step}|0", "funnel": "signup_to_purchase", "user_id": "u1", "attempt": 1,
         "step_index": step, "step_name": name, "ts": AT, "since_previous_s": 0.0, "since_entry_s": 0.0, "event_id": f"e{i}"}
        for step, name, i in ((1, "signup", 0), (2, "purchase", 5))
    ])  # fmt: skip
    insert(client, "churn_scores", [
        {"user_id": "u3", "score": 0.45, "tier": "medium", "reasons": ["NPS detractor (3)"], "ts": AT, "version": 1}
    ])  # fmt: skip
    insert(client, "churn_alerts", [
        {"alert_id": "a1", "user_id": "u3", "old_tier": "low", "new_tier": "medium", "score": 0.45,
         "reasons": ["NPS detractor (3)"], "ts": AT, "emitted_at": AT}
    ])  # fmt: skip


def insert(client: Client, table: str, rows: list[dict[str, Any]]) -> None:
    """Rows given as column -> value (omitted columns take their defaults)."""
    client.insert(table, [list(row.values()) for row in rows], column_names=list(rows[0]))


@pytest.mark.parametrize("name", ["operations", "product"])
def test_every_panel_queries_a_provisioned_datasource(name: str) -> None:
    datasources = provisioned_datasources()
    found = queries(name)
    assert found
    for query in found:
        assert query.datasource in datasources, query
        assert query.text.strip(), query
    assert len({datasources[query.datasource] for query in found}) == 1  # one datasource per dashboard


@pytest.mark.parametrize("query", queries("product"), ids=str)
def test_product_panel_sql_runs_on_the_migrated_tables(client: Client, query: PanelQuery) -> None:
    sql = expand_macros(query.text)
    assert "$" not in sql, f"a macro this test does not expand: {sql}"
    result = client.query(sql)
    assert result.column_names and result.result_rows, f"{query}: no rows from {sql}"
