"""Churn alerts from the alerts topic to a webhook receiver, on the session's real broker.

The receiver is a local ``http.server`` in a thread that answers per user: the test publishes
alert records itself, as the churn-risk job would (NDJSON, several alerts a record), and checks
what arrived, with which headers, what landed in the dead letters and what the group committed.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from devstack.ports import free_ports
from ops.alert_feed import alerts_topic
from ops.webhook_forwarder import UNDELIVERABLE, UNSENDABLE, WebhookConfig, WebhookForwarder
from ops.webhooks import RetryPolicy, VerificationError, parse_secret, verify
from pulse.dead_letter import DeadLetter
from pulse.settings import Settings
from pulse.topics import Topics

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"customer-pulse webhook test secret").decode()
KEY = parse_secret(SECRET)
FAST = RetryPolicy(attempts=3, base_delay_s=0.05, max_delay_s=0.2)
NOW_MS = int(time.time() * 1000)

Plan = Callable[[dict, int], tuple[int, bytes]]  # (alert, attempt number for its webhook-id) -> answer


def alert(n: int, user: str = "", new_tier: str = "high") -> dict:
    return {
        "alert_id": f"a{n:04d}-{user or 'u'}",
        "user_id": user or f"u{n}",
        "old_tier": "medium",
        "new_tier": new_tier,
        "score": 0.81,
        "reasons": ["no_session_14d"],
        "ts": NOW_MS - 60_000 + n,
        "emitted_at": NOW_MS + n,
    }


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every request and answers per ``plan``."""

    def __init__(self, plan: Plan = lambda _alert, _attempt: (200, b"ok")) -> None:
        self.plan = plan
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver._lock:
                    receiver.requests.append(Received(headers, body, time.time()))
                    attempt = sum(
                        1 for r in receiver.requests if r.headers.get("webhook-id") == headers.get("webhook-id")
                    )
                status, reply = receiver.plan(orjson.loads(body), attempt)
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/churn?token=t0ps3cret"

    def by_id(self) -> dict[str, list[Received]]:
        with self._lock:
            found: dict[str, list[Received]] = {}
            for request in self.requests:
                found.setdefault(request.headers["webhook-id"], []).append(request)
            return found

    def wait_for(self, ids: set[str], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not ids <= set(self.by_id()):
            assert time.monotonic() < deadline, f"never received {sorted(ids - set(self.by_id()))}"
            time.sleep(0.05)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def alerts_ready(settings: Settings) -> Settings:
    """The settings with the alerts and dead-letter topics created (only those: fast)."""
    topics = Topics.with_prefix(settings.topic_prefix)
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    wanted = [alerts_topic(settings), topics.dead_letters]
    futures = admin.create_topics([NewTopic(name, settings.partitions, 1) for name in wanted])
    for future in futures.values():
        future.result(30)
    return settings


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def publish(settings: Settings, records: list[list[dict | bytes]]) -> None:
    """One Kafka record per inner list, its alerts as NDJSON lines, keyed by the first alert's user."""
    producer = Producer({"bootstrap.servers": settings.bootstrap, "acks": "all"})
    for lines in records:
        encoded = [line if isinstance(line, bytes) else orjson.dumps(line) for line in lines]
        key = next((line["user_id"] for line in lines if isinstance(line, dict)), "x")
        producer.produce(alerts_topic(settings), value=b"\n".join(encoded), key=key.encode())
    assert producer.flush(30) == 0


def committed_everything(settings: Settings, group: str) -> bool:
    """True when the group's committed offset is at the end of every partition of the alerts topic."""
    topic = alerts_topic(settings)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        for tp in consumer.committed(partitions, timeout=10):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            if high > 0 and tp.offset != high:
                return False
        return True
    finally:
        consumer.close()


def dead_letters(settings: Settings, expected: int) -> list[DeadLetter]:
    """The dead letters of this test's prefix: at least ``expected``, then until a quiet second."""
    topic = Topics.with_prefix(settings.topic_prefix).dead_letters
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"reader-{topic}",
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([topic])
    found: list[DeadLetter] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        batch = [m for m in consumer.consume(100, 1.0) if not m.error()]
        found.extend(DeadLetter.from_record(m.value(), m.headers(), f"{m.partition()}@{m.offset()}") for m in batch)
        if not batch and len(found) >= expected:
            break
    consumer.close()
    return found


def assert_signed(request: Received) -> None:
    """The request verifies as Standard Webhooks says a receiver should check it."""
    assert verify(KEY, request.headers, request.body) == request.headers["webhook-id"]
    assert abs(int(request.headers["webhook-timestamp"]) - request.at) <= 2
    assert request.headers["content-type"] == "application/json"
    with pytest.raises(VerificationError):
        verify(KEY, request.headers, request.body + b" ")


class Running:
    """A :class:`WebhookForwarder` in a thread of the test process."""

    def __init__(self, settings: Settings, url: str, group: str, retry: RetryPolicy = FAST) -> None:
        self.lines: list[str] = []
        self.forwarder = WebhookForwarder(settings, WebhookConfig(url, (KEY,), group, retry, timeout_s=5.0),
                                          log=self.lines.append)  # fmt: skip
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.forwarder.run()
        except BaseException as exc:  # noqa: BLE001 (reported by stop())
            self.failure = exc

    def wait_settled(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.forwarder.counts["delivered"] + self.forwarder.counts["dead_lettered"] < count:
            assert self.failure is None, self.failure
            assert time.monotonic() < deadline, f"settled {self.forwarder.counts} of {count}:\n" + "\n".join(self.lines)
            time.sleep(0.05)

    def stop(self) -> None:
        self.forwarder.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        assert self.failure is None, self.failure


def start_cli(settings: Settings, *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "ops.cli", "alerts", *args],
                                env={**os.environ, **settings.to_env()}, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)  # fmt: skip


def stop_cli(process: subprocess.Popen[bytes], log: Path, how: int = signal.SIGTERM) -> str:
    process.send_signal(how)
    assert process.wait(30) == 0, log.read_text()
    return log.read_text()


def metric(port: int, sample: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
    raise AssertionError(f"no {sample} in the metrics")


def test_cli_delivers_each_alert_once_signed_and_a_restart_sends_none_again(
    alerts_ready: Settings, receiver: Receiver, tmp_path: Path
) -> None:
    settings = alerts_ready
    first = [alert(n) for n in range(5)]
    publish(settings, [first[0:2], first[2:3], first[3:5]])
    (metrics_port,) = free_ports(1)
    group = f"{settings.app_id}-hooks"
    args = ("webhook", receiver.url, "--secret", SECRET, "--group", group, "--retry-delay", "0.05")
    log = tmp_path / "webhook.log"

    process = start_cli(settings, *args, "--metrics-port", str(metrics_port), log=log)
    receiver.wait_for({a["alert_id"] for a in first})
    deadline = time.monotonic() + 10
    while metric(metrics_port, 'pulse_webhook_deliveries_total{outcome="delivered"}') < 5:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert metric(metrics_port, 'pulse_webhook_deliveries_total{outcome="retried"}') == 0
    assert metric(metrics_port, "pulse_webhook_in_flight") == 0
    output = stop_cli(process, log)
    assert output.count("delivered      a") == 5 and "stopped: 5 delivered, 0 retries, 0 dead-lettered" in output
    assert "t0ps3cret" not in output  # the URL's query string may hold a token: never printed
    assert committed_everything(settings, group)

    second = [alert(n) for n in range(5, 7)]
    publish(settings, [second])
    process = start_cli(settings, *args, log=log)
    receiver.wait_for({a["alert_id"] for a in second})
    time.sleep(1.0)  # anything sent again would arrive meanwhile
    stop_cli(process, log, signal.SIGINT)

    received = receiver.by_id()
    assert sorted(received) == sorted(a["alert_id"] for a in first + second)
    for sent in first + second:
        [request] = received[sent["alert_id"]]  # exactly once
        assert request.body == orjson.dumps(sent)  # the line as published, byte for byte
        assert_signed(request)
    assert committed_everything(settings, group)


def test_retried_with_the_same_id_then_dead_lettered_with_the_last_answer(
    alerts_ready: Settings, receiver: Receiver
) -> None:
    settings = alerts_ready
    flaky, broken, gone, fine = alert(1, "flaky"), alert(2, "broken"), alert(3, "gone"), alert(4, "fine")

    def plan(sent: dict, attempt: int) -> tuple[int, bytes]:
        user = sent["user_id"]
        if user == "flaky":
            return (503, b"busy") if attempt <= 2 else (204, b"")
        if user == "broken":
            return 500, b'{"error": "database on fire"}'
        if user == "gone":
            return 404, b"no such hook"
        return 200, b"ok"

    receiver.plan = plan
    publish(settings, [[flaky, broken], [gone, b"{not json", fine]])
    running = Running(settings, receiver.url, f"{settings.app_id}-hooks")
    try:
        running.wait_settled(5)
    finally:
        running.stop()

    received = receiver.by_id()
    attempts = received[flaky["alert_id"]]
    assert [r.headers["webhook-id"] for r in attempts] == [flaky["alert_id"]] * 3  # delivered on the third
    for request in attempts:
        assert_signed(request)
    assert len(received[broken["alert_id"]]) == FAST.attempts
    assert len(received[gone["alert_id"]]) == 1  # a 404 is final
    assert len(received[fine["alert_id"]]) == 1
    assert running.forwarder.counts == {"delivered": 2, "retried": 2 + 2, "dead_lettered": 3}

    letters = {
        letter.reason + ":" + letter.raw.decode(errors="replace"): letter for letter in dead_letters(settings, 3)
    }
    undeliverable = letters[f"{UNDELIVERABLE}:{orjson.dumps(broken).decode()}"]
    assert "3 attempts" in undeliverable.errors[0] and "t0ps3cret" not in " ".join(undeliverable.errors)
    assert "HTTP 500" in undeliverable.errors[1] and "database on fire" in undeliverable.errors[2]
    assert undeliverable.source.startswith("alerts-webhook:")
    refused = letters[f"{UNDELIVERABLE}:{orjson.dumps(gone).decode()}"]
    assert "1 attempt" in refused.errors[0] and "HTTP 404" in refused.errors[1] and "no such hook" in refused.errors[2]
    unsendable = letters[f"{UNSENDABLE}:{{not json"]
    assert "not JSON" in unsendable.errors[0]
    assert len(letters) == 3
    assert committed_everything(settings, f"{settings.app_id}-hooks")


def test_a_stop_mid_record_resumes_at_the_first_alert_not_delivered(alerts_ready: Settings, receiver: Receiver) -> None:
    settings = alerts_ready
    record = [alert(1, "early"), alert(2, "early2"), alert(3, "late")]
    receiver.plan = lambda sent, _attempt: (503, b"down") if sent["user_id"] == "late" else (200, b"ok")
    publish(settings, [record])
    group = f"{settings.app_id}-hooks"
    slow = RetryPolicy(attempts=5, base_delay_s=60.0, max_delay_s=60.0)  # the third alert waits to retry
    running = Running(settings, receiver.url, group, slow)
    try:
        receiver.wait_for({record[2]["alert_id"]})
        assert running.forwarder.counts["delivered"] == 2
    finally:
        running.stop()  # during the wait: the third alert is not settled

    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": group})
    [position] = [tp for tp in consumer.committed([TopicPartition(alerts_topic(settings), p)
                                                   for p in range(settings.partitions)], timeout=10)
                  if tp.offset >= 0]  # fmt: skip
    consumer.close()
    assert (position.offset, position.metadata) == (0, "lines=2")  # on the record, two of its alerts settled

    receiver.plan = lambda _sent, _attempt: (200, b"ok")
    running = Running(settings, receiver.url, group)
    try:
        running.wait_settled(1)
        time.sleep(0.5)
    finally:
        running.stop()
    received = receiver.by_id()
    assert [len(received[a["alert_id"]]) for a in record] == [1, 1, 2]  # only the third again
    assert running.forwarder.counts["delivered"] == 1
    assert committed_everything(settings, group)


def test_tail_prints_alerts_readable_or_as_json(alerts_ready: Settings, tmp_path: Path) -> None:
    settings = alerts_ready
    sent = [alert(1, "tail1"), alert(2, "tail2", "churned")]
    publish(settings, [sent, [b"{broken"]])
    for mode, expected in ((("--json",), [orjson.dumps(a).decode() for a in sent]),
                           ((), ["tail1  medium -> high  score 0.81  no_session_14d  [a0001-tail1]",
                                 "tail2  medium -> churned  score 0.81  no_session_14d  [a0002-tail2]"])):  # fmt: skip
        log = tmp_path / f"tail{len(mode)}.log"
        process = start_cli(settings, "tail", "--from-beginning", *mode, log=log)
        deadline = time.monotonic() + 30
        while not all(line in log.read_text() for line in expected):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        output = stop_cli(process, log, signal.SIGINT)
        assert "unreadable line at" in output
        assert all(output.count(line) == 1 for line in expected), output
