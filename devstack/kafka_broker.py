"""A real single-node Apache Kafka broker (KRaft, 127.0.0.1 only) for development and tests.

Why a real broker rather than a mock: the pipeline's correctness depends on Kafka's own
semantics (acks, partitioning, consumer groups), which only the real thing reproduces.
Why Maven Central jars rather than a tarball or a container: Maven Central is the one
artifact source every developer machine and CI can reach, and it caches jars for us.

One Python process at a time manages a given ``data_dir``; other processes can still
inspect or stop the broker through the pid file it leaves there.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from devstack.processes import alive, command_line, read_pid, terminate
from pulse.errors import PulseError

KAFKA_VERSION = "3.9.1"
KAFKA_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
STARTED_MARKER = "Kafka Server started"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies"
KAFKA_RESOURCES = Path(__file__).resolve().parent / "kafka"
POM = KAFKA_RESOURCES / "pom.xml"
LOG4J = KAFKA_RESOURCES / "log4j.properties"
TAIL_LINES = 40

Log = Callable[[str], None]


@dataclass(frozen=True)
class BrokerConfig:
    """Where the broker lives and how it listens; everything else is fixed for a dev broker."""

    data_dir: Path  # this broker's own directory: kraft log dirs, server.properties, pid file, kafka.log
    jar_cache_dir: Path  # resolved jars, kept between runs so only the first run pays for Maven
    port: int = 9092  # PLAINTEXT listener on 127.0.0.1
    controller_port: int = 9093
    heap: str = "1g"  # -Xms and -Xmx
    num_partitions: int = 4  # default partitions for auto-created topics


class BrokerError(PulseError, RuntimeError):
    """The broker could not be provisioned, started or stopped; the message says why."""


@dataclass(frozen=True)
class BrokerStatus:
    """A snapshot answering "is my broker up?" from the pid file and from the wire."""

    pid: int | None  # pid from our pid file if that process is alive (and is our broker), else None
    answering: bool  # the broker answered a metadata request on bootstrap
    bootstrap: str


class LocalKafka:
    """Provisions, starts, inspects and stops the broker described by a BrokerConfig."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        # Absolute, because the broker runs with data_dir as its working directory.
        self._data_dir = data = config.data_dir.expanduser().resolve()
        self._jar_cache = config.jar_cache_dir.expanduser().resolve()
        self._log_dirs = data / "kraft-logs"
        self._properties = data / "server.properties"
        self._pid_file = data / "kafka.pid"
        self._log_file = data / "kafka.log"
        self._cluster_id_file = data / "cluster.id"

    @property
    def bootstrap(self) -> str:
        """The address clients use: the broker only listens on loopback."""
        return f"127.0.0.1:{self.config.port}"

    def ensure_jars(self, log: Log = print) -> Path:
        """Return the directory of Kafka's runtime jars, resolving them with Maven the first time.

        The jars land in a temporary sibling directory that is renamed into place only once
        Maven succeeded, so a killed resolve never leaves a cache that looks complete.
        """
        libs = self._jar_cache / "libs"
        if (libs / KAFKA_JAR).is_file():
            return libs
        mvn = _require_tool("mvn", "install Maven 3.8+ to resolve the Kafka jars")
        log(f"resolving Kafka {KAFKA_VERSION} jars from Maven Central into {libs}")
        self._jar_cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="libs-partial-", dir=self._jar_cache))
        try:
            _run_checked(
                [mvn, "-B", "-q", DEPENDENCY_PLUGIN, f"-DoutputDirectory={staging}",
                 "-DincludeScope=runtime", "-f", str(POM)],
                "mvn failed to resolve the Kafka jars",
            )
            if not (staging / KAFKA_JAR).is_file():
                raise BrokerError(f"mvn succeeded but {KAFKA_JAR} is missing from {staging}")
            _publish(staging, libs)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return libs

    def start(self, timeout: float = 120.0, log: Log = print) -> None:
        """Start the broker and return once it serves metadata; a no-op if it already does.

        timeout bounds the wait for the launched broker, not the one-time jar resolution.
        """
        pid = self._our_pid()
        if pid is not None:
            if self._answers():
                log(f"Kafka already running (pid {pid}) on {self.bootstrap}")
                return
            raise BrokerError(f"Kafka pid {pid} is running but not answering on {self.bootstrap}; stop() it first")
        java = _require_tool("java", "install a JDK 17+ to run the Kafka broker")
        for port in (self.config.port, self.config.controller_port):
            _require_free_port(port)
        libs = self.ensure_jars(log)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._properties.write_text(self._server_properties())
        self._format_storage_once(java, libs, log)
        began = time.monotonic()
        pid = self._launch(java, libs, timeout, log)
        log(f"Kafka started on {self.bootstrap} (pid {pid}) in {time.monotonic() - began:.1f} s")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker in our pid file: SIGTERM for a clean shutdown, SIGKILL if it hangs.

        Only a process whose command line is our broker's is signalled, so a pid reused by
        an unrelated process after a reboot or crash is never killed.
        """
        pid = self._our_pid()
        if pid is not None:
            self._terminate(pid, timeout)
        self._pid_file.unlink(missing_ok=True)
        return pid is not None

    def status(self) -> BrokerStatus:
        """Report our process and, independently, whether anything answers on bootstrap."""
        return BrokerStatus(pid=self._our_pid(), answering=self._answers(), bootstrap=self.bootstrap)

    def _server_properties(self) -> str:
        """Combined broker+controller on loopback, tuned to start fast and keep dev data."""
        cfg = self.config
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{cfg.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{cfg.port},CONTROLLER://127.0.0.1:{cfg.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{cfg.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self._log_dirs),
            "num.partitions": str(cfg.num_partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.retention.hours": str(24 * 365),
        }
        header = "# Written by devstack/kafka_broker.py on every start; edits are overwritten.\n"
        return header + "".join(f"{key}={value}\n" for key, value in settings.items())

    def _format_storage_once(self, java: str, libs: Path, log: Log) -> None:
        """Format the KRaft log dir on first start only: reformatting would change the cluster id."""
        if (self._log_dirs / "meta.properties").is_file():
            return
        log(f"formatting KRaft storage in {self._log_dirs}")
        _run_checked(
            [java, f"-Dlog4j.configuration=file:{LOG4J}", "-cp", str(libs / "*"),
             "kafka.tools.StorageTool", "format", "-t", self._cluster_id(), "-c", str(self._properties)],
            "kafka-storage format failed",
        )

    def _cluster_id(self) -> str:
        """The cluster id, generated once per data dir so formatting is repeatable."""
        if self._cluster_id_file.is_file():
            return self._cluster_id_file.read_text().strip()
        cluster_id = _new_cluster_id()
        self._cluster_id_file.write_text(cluster_id + "\n")
        return cluster_id

    def _launch(self, java: str, libs: Path, timeout: float, log: Log) -> int:
        """Run kafka.Kafka detached and wait for it; on any failure the half-started process is killed."""
        heap = self.config.heap
        command = [java, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                   f"-Dlog4j.configuration=file:{LOG4J}", "-cp", str(libs / "*"),
                   "kafka.Kafka", str(self._properties)]
        log_offset = self._log_file.stat().st_size if self._log_file.exists() else 0
        log(f"starting Kafka {KAFKA_VERSION} on {self.bootstrap}, log in {self._log_file}")
        with self._log_file.open("ab") as out:
            pid = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=self._data_dir, start_new_session=True).pid
        self._pid_file.write_text(f"{pid}\n")
        try:
            self._wait_ready(pid, log_offset, timeout)
        except BaseException:
            self._terminate(pid, timeout=5.0)
            self._pid_file.unlink(missing_ok=True)
            raise
        return pid

    def _wait_ready(self, pid: int, log_offset: int, timeout: float) -> None:
        """Block until this start logged its started line and serves metadata requests."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                raise BrokerError(f"Kafka exited during startup; tail of {self._log_file}:\n{self._log_tail()}")
            if STARTED_MARKER in self._log_since(log_offset) and self._answers():
                return
            time.sleep(0.25)
        raise BrokerError(f"Kafka did not start within {timeout:g} s; tail of {self._log_file}:\n{self._log_tail()}")

    def _our_pid(self) -> int | None:
        """The pid in our pid file, provided it is alive and its command line is our broker's."""
        pid = read_pid(self._pid_file)
        if pid is None or not alive(pid):
            return None
        args = command_line(pid)
        return pid if "kafka.Kafka" in args and str(self._properties) in args else None

    def _terminate(self, pid: int, timeout: float) -> None:
        """SIGTERM, then SIGKILL once timeout has passed; returns when the process is gone."""
        if not terminate(pid, timeout):
            raise BrokerError(f"Kafka pid {pid} survived SIGKILL")

    def _answers(self, timeout: float = 3.0) -> bool:
        """Whether a broker on bootstrap answers a metadata request within timeout."""
        # log_level 0: librdkafka would otherwise print connection-refused noise to stderr.
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        try:
            admin.list_topics(timeout=timeout)
        except KafkaException:
            return False
        return True

    def _log_since(self, offset: int) -> str:
        """What the broker wrote to kafka.log after offset, i.e. during the current start."""
        with self._log_file.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def _log_tail(self) -> str:
        """The last lines of kafka.log, which is where Kafka explains why it failed."""
        try:
            return _tail(self._log_file.read_bytes().decode(errors="replace"))
        except FileNotFoundError:
            return "(no kafka.log)"


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _require_tool(name: str, hint: str) -> str:
    """Resolve an executable on PATH, failing with a hint instead of a bare FileNotFoundError."""
    path = shutil.which(name)
    if path is None:
        raise BrokerError(f"`{name}` not found on PATH: {hint}")
    return path


def _require_free_port(port: int) -> None:
    """Fail early and clearly rather than let Kafka die on a bind error deep in its log."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Same reuse flag Kafka's listener uses, so lingering TIME_WAIT sockets do not count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise BrokerError(f"port {port} on 127.0.0.1 is already in use by another process ({exc}); "
                              "`ss -ltnp` shows which (a broker whose pid file was deleted?)") from exc


def _run_checked(command: list[str], failure: str) -> None:
    """Run a short-lived tool, raising BrokerError with the tail of its output if it fails."""
    result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        output = _tail(result.stdout.decode(errors="replace"))
        raise BrokerError(f"{failure} (exit {result.returncode}):\n{output}")


def _publish(staging: Path, libs: Path) -> None:
    """Atomically move a complete jar dir into place; losing a race to another resolver is fine."""
    try:
        staging.rename(libs)
    except OSError as exc:
        if not (libs / KAFKA_JAR).is_file():
            raise BrokerError(f"cannot move resolved jars into {libs}: {exc}") from exc


def _new_cluster_id() -> str:
    """A 22-char base64url id like Kafka's Uuid; ids starting with '-' would parse as a CLI flag."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id
