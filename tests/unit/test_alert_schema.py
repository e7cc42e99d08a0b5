"""The churn-alert contract (pulse/schemas/churn_alert.schema.json): what consumers may rely on."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import pulse
from ops.alert_feed import describe
from pulse.outputs import CHURN_ALERTS

SCHEMA_PATH = Path(pulse.__file__).parent / "schemas" / "churn_alert.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

ALERT = {
    "alert_id": "9c1e4f0a7b2d4e61",
    "user_id": "u-10293",
    "old_tier": "medium",
    "new_tier": "high",
    "score": 0.83,
    "reasons": ["no_session_14d", "downgraded_plan"],
    "ts": 1_763_892_000_000,
    "emitted_at": 1_763_892_001_250,
}


def changed(**values: Any) -> dict[str, Any]:
    alert = copy.deepcopy(ALERT)
    alert.update(values)
    return alert


def without(name: str) -> dict[str, Any]:
    return {key: value for key, value in ALERT.items() if key != name}


def test_the_schema_is_draft_2020_12_and_names_every_column_of_the_alerts_output() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert set(SCHEMA["properties"]) == set(CHURN_ALERTS.column_names)
    assert set(SCHEMA["required"]) == set(CHURN_ALERTS.column_names)
    assert SCHEMA["additionalProperties"] is False
    assert SCHEMA["$defs"]["tier"]["enum"] == ["low", "medium", "high", "churned"]
    for example in SCHEMA["examples"]:
        VALIDATOR.validate(example)


@pytest.mark.parametrize("alert", [
    ALERT,
    changed(old_tier="low", new_tier="medium", score=0.4),
    changed(old_tier="high", new_tier="churned", score=1, reasons=["no activity for 30 days"]),
    changed(old_tier="low", new_tier="high"),
    changed(old_tier="low", new_tier="churned", score=1.0),
    changed(score=0, reasons=[]),
    changed(score=1.0),
    changed(alert_id="u-10293:high:1763892000000", user_id="jane.doe@example.com"),
    changed(ts=0, emitted_at=0),
])  # fmt: skip
def test_alerts_the_job_may_publish_are_valid(alert: dict[str, Any]) -> None:
    VALIDATOR.validate(alert)


@pytest.mark.parametrize(("alert", "why"), [
    *[(without(name), f"no {name}") for name in ALERT],
    (changed(extra="x"), "a field the contract does not name"),
    (changed(new_tier="critical"), "a tier that does not exist"),
    (changed(old_tier="low", new_tier="low"), "an alert is a rise: never to low"),
    (changed(old_tier="high", new_tier="high"), "nor to the same tier"),
    (changed(old_tier="high", new_tier="medium"), "nor down"),
    (changed(old_tier="churned", new_tier="high"), "nor down from churned"),
    (changed(old_tier="churned", new_tier="churned"), "churned is the top"),
    (changed(old_tier="High"), "tiers are lower case"),
    (changed(old_tier=None), "a null tier"),
    (changed(score=1.01), "score above 1"),
    (changed(score=-0.1), "score below 0"),
    (changed(score="0.8"), "score as text"),
    (changed(score=None), "a null score"),
    (changed(reasons="no_session_14d"), "reasons not a list"),
    (changed(reasons=["ok", 3]), "a reason not a string"),
    (changed(reasons=[""]), "an empty reason"),
    (changed(ts="2025-11-23T10:00:00Z"), "ts as text"),
    (changed(ts=1_763_892_000_000.5), "ts with a fraction"),
    (changed(ts=-1), "ts before 1970"),
    (changed(emitted_at=True), "emitted_at a boolean"),
    (changed(alert_id=""), "an empty alert_id"),
    (changed(alert_id="a.1"), "a '.' in alert_id (Standard Webhooks signs '{id}.{timestamp}.{body}')"),
    (changed(alert_id="a 1"), "whitespace in alert_id"),
    (changed(alert_id=17), "alert_id a number"),
    (changed(user_id=""), "an empty user_id"),
    ([ALERT], "an array, not an object"),
])  # fmt: skip
def test_malformed_alerts_are_refused(alert: Any, why: str) -> None:
    assert not VALIDATOR.is_valid(alert), why


def test_tail_line_of_an_alert() -> None:
    assert describe(ALERT) == ("2025-11-23 10:00:00Z  u-10293  medium -> high  score 0.83  "
                               "no_session_14d, downgraded_plan  [9c1e4f0a7b2d4e61]")  # fmt: skip
    assert describe(changed(reasons=[], score=None, ts="x")) == (
        "?  u-10293  medium -> high  score ?  -  [9c1e4f0a7b2d4e61]"
    )
    assert describe([1]).startswith("not an alert")
