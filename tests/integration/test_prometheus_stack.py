"""A real Prometheus (Debian's binary) scraping the running stack with the shipped config and rules.

The config is ``deploy/prometheus/prometheus.yml`` with the test's ports, and scrape and
evaluation every second; the rules are the shipped ones, with the worker stall's ``for:`` cut
from minutes to seconds. Every scrape target must be up, every rule must evaluate without
error, every query of the operations dashboard must parse and return, and stopping the worker
must fire the stall alert.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from devstack.ports import free_ports
from devstack.processes import read_pid, terminate
from pulse.settings import Settings
from tests.dashboards import PanelQuery, queries

pytestmark = pytest.mark.integration

PROMETHEUS_DIR = Path(__file__).parents[2] / "deploy" / "prometheus"
STALL_ALERT = "PulseWorkerStalled"
STALL_FOR = "2s"
GRAFANA_VARIABLES = {"$__rate_interval": "5s"}  # Grafana's value at a 1 s scrape interval: 4 scrapes, plus one
EVENTS = 20


class PrometheusApi:
    """The HTTP API of one Prometheus server."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def get(self, path: str, **params: str) -> Any:
        """``data`` of a successful answer; an error answer fails the test with Prometheus's message."""
        with urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(params)}", timeout=5) as response:
            body = orjson.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=promql)

    def value(self, promql: str) -> float:
        """The single value of a query; 0 while it returns nothing."""
        result = self.query(promql)["result"]
        return float(result[0]["value"][1]) if result else 0.0

    def targets(self) -> dict[str, str]:
        """Health of each scrape target, by job."""
        return {target["labels"]["job"]: target["health"] for target in self.get("/api/v1/targets")["activeTargets"]}

    def rules(self) -> list[dict[str, Any]]:
        return [rule for group in self.get("/api/v1/rules")["groups"] for rule in group["rules"]]


def stack_config(settings: Settings, rule_files: list[Path]) -> dict[str, Any]:
    """The shipped config with this test's ports, one-second intervals and the given rule files."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    ports = {
        "pulse-collector": settings.collector_port,
        "pulse-worker": settings.worker_metrics_port,
        "pulse-sink": settings.sink_port,
    }
    assert {job["job_name"] for job in config["scrape_configs"]} == set(ports)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    config["global"] |= {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(path) for path in rule_files]
    return config


def quick_stall_rules(directory: Path) -> list[Path]:
    """The shipped rule files, written to ``directory`` with the worker stall's ``for:`` shortened."""
    written = []
    for path in sorted(PROMETHEUS_DIR.glob("rules/*.yml")):
        rules = yaml.safe_load(path.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == STALL_ALERT:
                    rule["for"] = STALL_FOR
        written.append(directory / path.name)
        written[-1].write_text(yaml.safe_dump(rules, sort_keys=False))
    return written


@contextlib.contextmanager
def prometheus(config: dict[str, Any], directory: Path) -> Iterator[PrometheusApi]:
    """A Prometheus server on a free port, stopped on exit."""
    (port,) = free_ports(1)
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    with (directory / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config_file}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        api = PrometheusApi(port)
        wait_until(api.ready, 20, "Prometheus ready")
        yield api
    finally:
        process.terminate()
        process.wait(timeout=20)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout:.0f}s for: {what}"
        time.sleep(0.5)


def post_events(settings: Settings, count: int) -> None:
    """Send ``count`` events through the collector, so the histograms and counters hold values."""
    now = int(time.time() * 1000)
    body = b"\n".join(
        orjson.dumps({"event_id": f"p{i}", "type": "login", "user_id": f"u{i % 5}", "ts": now}) for i in range(count)
    )
    request = urllib.request.Request(f"http://127.0.0.1:{settings.collector_port}/v1/events", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


def as_grafana_sends_it(query: PanelQuery) -> str:
    text = query.text
    for variable, value in GRAFANA_VARIABLES.items():
        text = text.replace(variable, value)
    assert "$" not in text, f"{query}: a Grafana variable this test does not set: {text}"
    return text


def firing(api: PrometheusApi, alertname: str, instance: str) -> bool:
    return bool(api.query(f'ALERTS{{alertname="{alertname}", alertstate="firing", instance="{instance}"}}')["result"])


def test_prometheus_scrapes_the_stack_answers_every_panel_and_fires_the_stall_alert(
    pipeline: Settings, tmp_path: Path
) -> None:
    config = stack_config(pipeline, quick_stall_rules(tmp_path))
    worker = f"127.0.0.1:{pipeline.worker_metrics_port}"
    with prometheus(config, tmp_path) as api:
        wait_until(lambda: set(api.targets().values()) == {"up"}, 20, "every target up")
        post_events(pipeline, EVENTS)
        wait_until(lambda: api.value('sum(pulse_rows_inserted_total{table="events"})') >= EVENTS, 30, "events inserted")
        # ticks keep every partition current in Kafka time, and neither process calls itself stalled
        newest = "pulse_worker_newest_processed_timestamp_seconds"
        wait_until(lambda: api.value(f"count({newest})") == pipeline.partitions, 20, "every partition processed")
        assert api.value(f"max(time() - {newest})") < 30
        assert api.value("count(pulse_worker_stalled == 0) + count(pulse_sink_stalled == 0)") == 2

        for query in queries("operations"):
            assert api.query(as_grafana_sends_it(query))["resultType"] in {"vector", "scalar", "matrix"}, query
        wait_until(lambda: all(rule["health"] != "unknown" for rule in api.rules()), 10, "every rule evaluated")
        assert [(rule["name"], rule.get("lastError")) for rule in api.rules() if rule["health"] != "ok"] == []
        assert not firing(api, STALL_ALERT, worker)

        pid = read_pid(pipeline.run_dir / "worker.pid")
        assert pid is not None and terminate(pid, 30)
        wait_until(lambda: firing(api, STALL_ALERT, worker), 30, f"{STALL_ALERT} firing for {worker}")
