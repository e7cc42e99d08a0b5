"""The Prometheus config and alert rules of ``deploy/prometheus``: promtool's checks and unit tests, and their contract.

promtool comes with Debian's ``prometheus`` package (``.ci/run`` installs it); a machine
without it fails here rather than skipping, so CI never passes without the rules tested.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.dashboards import queries

PROMETHEUS_DIR = Path(__file__).parents[2] / "deploy" / "prometheus"
RULE_FILES = sorted(PROMETHEUS_DIR.glob("rules/*.yml"))
TEST_FILES = sorted(PROMETHEUS_DIR.glob("tests/*.yml"))
SEVERITIES = {"critical", "warning"}
ANNOTATIONS = {"summary", "description", "runbook"}
# exported by the alerts job once it exists; its rule is defined ahead of it
METRIC_MODULES = (
    "ops.webhook_forwarder",
    "producers.collector",
    "pulse.lag",
    "sinks.metrics",
    "stream_jobs.metrics",
)  # where metrics are defined


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path, "promtool not found: install Debian's prometheus package (apt-get install prometheus), as .ci/run does"
    return subprocess.run([path, *args], check=False, cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120)


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", *map(str, RULE_FILES)),
        ("test", "rules", *map(str, TEST_FILES)),
    ],
    ids=" ".join,
)
def test_promtool_passes(args: tuple[str, ...]) -> None:
    result = promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_severity_annotations_and_a_firing_unit_test() -> None:
    rules = alert_rules()
    assert RULE_FILES and TEST_FILES and rules
    for rule in rules:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert ANNOTATIONS <= set(rule["annotations"]), rule["alert"]
    cases = [
        case
        for path in TEST_FILES
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    assert {case["alertname"] for case in cases if case["exp_alerts"]} == {rule["alert"] for rule in rules}


def test_rules_and_the_operations_dashboard_name_only_metrics_the_code_exports() -> None:
    for module in METRIC_MODULES:
        importlib.import_module(module)  # registers its metrics
    exported = {family.name for family in REGISTRY.collect()}
    texts = [rule["expr"] for rule in alert_rules()] + [query.text for query in queries("operations")]
    named = {
        re.sub(r"_(total|bucket|count|sum)$", "", name) for text in texts for name in re.findall(r"\bpulse_\w+", text)
    }
    assert named <= exported, named - exported
