"""The local stack in the background (``pulse up`` / ``pulse down``): broker, sink, worker.

Each process gets a pid file under ``<data dir>/run`` and a log under ``<data dir>/logs``.
``down`` stops only processes whose pid file we wrote and whose command line is ours, the
extra workers of :func:`add_worker` included.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from devstack.kafka_broker import BrokerConfig, LocalKafka
from devstack.processes import alive, command_line, read_pid, terminate
from ops.topics import ensure_topics
from pulse.errors import PulseError
from pulse.settings import Settings
from sinks.clickhouse import connect
from sinks.migrations import migrate

Log = Callable[[str], None]
STOP_TIMEOUT_S = 30.0
EXTRA_WORKER_PREFIX = "worker-"  # extra workers are named worker-2, worker-3, ...: how down finds them


class StackError(PulseError, RuntimeError):
    """A stage did not start or stop; the message points at its log."""


@dataclass(frozen=True)
class Service:
    """A pipeline process run by ``pulse up``: its CLI command and the page that says it is ready."""

    name: str
    command: str
    ready_url: str
    ready_text: str


def local_kafka(settings: Settings) -> LocalKafka:
    """The broker the project runs itself when ``KAFKA_BOOTSTRAP`` is unset."""
    return LocalKafka(
        BrokerConfig(
            data_dir=settings.data_dir / "kafka",
            jar_cache_dir=settings.cache_dir / "kafka-3.9.1",
            port=settings.kafka_port,
            controller_port=settings.kafka_controller_port,
            num_partitions=settings.partitions,
        )
    )


def services(settings: Settings) -> list[Service]:
    """The stages in start order: readers before writers, the collector (the front door) last."""
    return [
        Service("sink", "sink", f"{settings.sink_url}/healthz", '"ok"'),
        # ready = joined the group, holds its partitions, state restored: only then is it consuming
        Service("worker", "worker", f"http://127.0.0.1:{settings.worker_metrics_port}/readyz", '"ready"'),
        Service("collector", "collect", f"http://127.0.0.1:{settings.collector_port}/healthz", '"ok"'),
    ]


def up(settings: Settings, log: Log = print, timeout: float = 90.0) -> None:
    """Start the broker (if local), create topics, migrate (server DSN) and start every stage."""
    if settings.uses_local_kafka:
        local_kafka(settings).start(log=log)
    created = ensure_topics(settings)
    if created:
        log(f"created topics {', '.join(created)}")
    if not settings.embedded_clickhouse:  # embedded: only the sink may open it, and it migrates on start
        migrate(connect(settings.clickhouse_dsn))
    for service in services(settings):
        pid = running_pid(settings, service.name)
        if pid:
            log(f"{service.name} already running (pid {pid})")
            continue
        pid = _spawn(settings, service)
        _wait_ready(settings, service, pid, timeout)
        log(f"{service.name} started (pid {pid}, log {_log_path(settings, service.name)})")


def add_worker(settings: Settings, name: str, timeout: float = 90.0, **overrides: Any) -> int:
    """Start one more worker in the consumer group of the pipeline ``settings`` describes; its pid once ready.

    Scale-out: the group shares the events topic's partitions among its workers. The worker is
    named ``name`` (``worker-2``, ...); its pid and log files sit next to the first worker's, so
    ``down`` stops it too. ``overrides`` replace fields of ``settings`` for it alone and must
    give it a status port (``worker_metrics_port``: readiness is asked there, so a shared port
    would take another worker's answer for its own) and a Faust directory (``data_dir``) of
    its own. Everything else, ``clickhouse_dsn`` included, stays the pipeline's.
    """
    if not name.startswith(EXTRA_WORKER_PREFIX):
        raise StackError(f"an extra worker's name starts with {EXTRA_WORKER_PREFIX!r} (so down finds it): {name!r}")
    worker = replace(settings, **overrides)
    if worker.worker_metrics_port == settings.worker_metrics_port or worker.data_dir == settings.data_dir:
        raise StackError(f"{name} needs a worker_metrics_port and a data_dir of its own")
    if pid := running_pid(settings, name):
        raise StackError(f"{name} already running (pid {pid})")
    service = replace(_service(worker, "worker"), name=name)
    pid = _spawn(settings, service, runs_with=worker)
    _wait_ready(settings, service, pid, timeout)
    return pid


def down(settings: Settings, log: Log = print) -> None:
    """Stop the stages in reverse order, then the local broker; each gets SIGTERM, then SIGKILL."""
    for name in _stop_order(settings):
        pid = running_pid(settings, name)
        if pid is None:
            continue
        if not terminate(pid, STOP_TIMEOUT_S):
            raise StackError(f"{name} (pid {pid}) survived SIGKILL")
        _pid_path(settings, name).unlink(missing_ok=True)
        log(f"{name} stopped (pid {pid})")
    if settings.uses_local_kafka and local_kafka(settings).stop():
        log("kafka stopped")


def status(settings: Settings) -> dict[str, str]:
    """One line of state per component, for ``pulse status``."""
    lines: dict[str, str] = {}
    if settings.uses_local_kafka:
        broker = local_kafka(settings).status()
        lines["kafka"] = f"pid {broker.pid}, " + ("answering" if broker.answering else "not answering")
    else:
        lines["kafka"] = f"external at {settings.bootstrap}"
    for service in services(settings):
        pid = running_pid(settings, service.name)
        lines[service.name] = f"pid {pid}, " + ("ready" if pid and _answers(service) else "not ready")
    return lines


def extra_workers(settings: Settings) -> list[str]:
    """The names of the extra workers :func:`add_worker` started and ``down`` did not stop yet, running or not."""
    return sorted(path.stem for path in settings.run_dir.glob(f"{EXTRA_WORKER_PREFIX}*.pid"))


def _stop_order(settings: Settings) -> list[str]:
    """The services in reverse start order, extra workers just before the first worker."""
    names: list[str] = []
    for service in reversed(services(settings)):
        if service.name == "worker":
            names += extra_workers(settings)
        names.append(service.name)
    return names


def _service(settings: Settings, name: str) -> Service:
    return next(service for service in services(settings) if service.name == name)


def _spawn(settings: Settings, service: Service, runs_with: Settings | None = None) -> int:
    """Start ``service`` with pid and log files in ``settings``' directories and ``runs_with``'s settings (default: the same)."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(runs_with or settings).to_env()}
    with _log_path(settings, service.name).open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", service.command],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    _pid_path(settings, service.name).write_text(str(process.pid))
    return process.pid


def _wait_ready(settings: Settings, service: Service, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            raise StackError(f"{service.name} exited during start; see {_log_path(settings, service.name)}")
        if _answers(service):
            return
        time.sleep(0.25)
    raise StackError(f"{service.name} not ready after {timeout:.0f}s; see {_log_path(settings, service.name)}")


def _answers(service: Service) -> bool:
    try:
        with urllib.request.urlopen(service.ready_url, timeout=1) as response:
            return service.ready_text in response.read().decode(errors="replace")
    except OSError:
        return False


def running_pid(settings: Settings, name: str) -> int | None:
    """The pid in the pid file of the service ``name`` if that process is alive and is our CLI."""
    pid = read_pid(_pid_path(settings, name))
    if pid is None or not alive(pid):
        return None
    return pid if "ops.cli" in command_line(pid) else None


def _pid_path(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def _log_path(settings: Settings, name: str) -> Path:
    return settings.log_dir / f"{name}.log"
