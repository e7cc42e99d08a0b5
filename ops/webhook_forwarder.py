"""``pulse alerts webhook``: churn alerts POSTed to a URL per Standard Webhooks (:mod:`ops.webhooks`).

:class:`WebhookForwarder` reads the alerts topic (:mod:`ops.alert_feed`) as a consumer group of its own:

- one alert at a time, in order per partition. An alert is *settled* once the receiver answered
  2xx, or once it is in the dead-letter topic: ``webhook_undeliverable`` when every attempt failed
  or the receiver refused it with a final 4xx, ``webhook_unsendable`` for a line that is not an
  alert with a usable ``alert_id``;
- the group's position is committed synchronously after every settled alert. Within a record of
  several alerts the committed offset stays on the record and the commit's metadata (``lines=N``)
  says how many of its alerts are settled, so a restart resumes at the first unsettled alert;
- delivery is therefore at least once: an alert delivered just before a crash, or before a commit
  the broker refused, is sent again, under the same ``webhook-id`` for the receiver to drop.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Counter, Gauge

from ops.alert_feed import EXCERPT_CHARS, POLL_S, alerts_topic, consumer_error, excerpt, partitions_of
from ops.webhooks import RetryPolicy, Verdict, retry_after_seconds, signed_headers, verdict
from pulse.dead_letter import DeadLetter, now_ms
from pulse.errors import PulseError
from pulse.kafka_outages import kafka_dependency, librdkafka_config
from pulse.settings import Settings
from pulse.topics import Topics
from pulse.wire import Undecodable, decode_record

log = logging.getLogger(__name__)

UNDELIVERABLE = "webhook_undeliverable"  # dead-letter reason: every attempt failed, or a final 4xx
UNSENDABLE = "webhook_unsendable"  # dead-letter reason: a line of the alerts topic that is not an alert
LINES_PREFIX = "lines="  # commit metadata: this many alerts of the record at the committed offset are settled
USER_AGENT = "customer-pulse-webhooks/1"
AHEAD = -1  # _resume_line: the whole record is settled already

OUTCOMES = ("delivered", "retried", "dead_lettered")
DELIVERIES = Counter(
    "pulse_webhook_deliveries_total",
    "Webhook outcomes of `pulse alerts webhook`: alerts delivered (2xx), failed attempts retried, "
    "alerts dead-lettered (undeliverable or not an alert).",
    ["outcome"],
)
for _outcome in OUTCOMES:
    DELIVERIES.labels(_outcome)
IN_FLIGHT = Gauge("pulse_webhook_in_flight", "Alerts taken from Kafka by `pulse alerts webhook` and not yet settled.")
KAFKA = kafka_dependency("alerts-webhook")  # pulse_dependency_up{process="alerts-webhook", dependency="kafka"}

Log = Callable[[str], None]


def safe_url(url: str) -> str:
    """``url`` without credentials or query string (which may hold tokens), for logs and dead letters."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" + ("?..." if parts.query else "")


@dataclass(frozen=True)
class WebhookConfig:
    """Where and how ``pulse alerts webhook`` delivers: the URL, the secrets (several while rotating),
    its consumer group, the retry policy, the timeout of one attempt and where a new group starts."""

    url: str
    secrets: tuple[bytes, ...]
    group: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float = 15.0
    start_at: str = "earliest"  # earliest | latest: only for a group without committed offsets

    def __post_init__(self) -> None:
        if urlsplit(self.url).scheme not in ("http", "https") or not urlsplit(self.url).hostname:
            raise PulseError(f"the webhook URL must be http:// or https:// with a host, got {self.url!r}")
        if not self.secrets:
            raise PulseError("a webhook needs a secret (--secret whsec_...)")
        if self.start_at not in ("earliest", "latest"):
            raise PulseError(f"start_at is earliest or latest, got {self.start_at!r}")
        if self.timeout_s <= 0:
            raise PulseError("the timeout must be more than 0 seconds")


@dataclass(frozen=True)
class Answer:
    """What one POST got: the status (None: no answer), an excerpt of the body or the error, Retry-After."""

    status: int | None
    excerpt: str = ""
    error: str = ""
    retry_after_s: float | None = None

    def __str__(self) -> str:
        return f"HTTP {self.status}" if self.status is not None else self.error


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is a failed attempt (Standard Webhooks): urllib would turn a redirected POST into a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> Answer:
    """POST ``body`` once; never raises for what the network or the receiver does."""
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers))
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            return Answer(response.status, _readexcerpt(response))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, _readexcerpt(exc), retry_after_s=retry_after_seconds(exc.headers.get("Retry-After")))
    except urllib.error.URLError as exc:
        return Answer(None, error=f"no answer: {exc.reason}")
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, malformed answers
        return Answer(None, error=f"no answer: {type(exc).__name__}: {exc}")


def _readexcerpt(response: Any) -> str:
    try:
        return excerpt(response.read(4 * EXCERPT_CHARS).decode(errors="replace"))
    except (OSError, http.client.HTTPException):
        return ""


@dataclass(frozen=True)
class Delivery:
    """How one alert's attempts ended: delivered or not, after how many attempts, the last answer."""

    delivered: bool
    attempts: int
    last: Answer
    seconds: float


class WebhookSender:
    """Sends one alert with retries per the policy; a wait between attempts ends early on ``stop``."""

    def __init__(self, config: WebhookConfig, stop: threading.Event, log: Log = print,
                 send: Callable[[str, bytes, Mapping[str, str], float], Answer] = post,
                 on_retry: Callable[[], None] = lambda: None) -> None:  # fmt: skip
        self._config = config
        self._stop = stop
        self._log = log
        self._send = send
        self._on_retry = on_retry

    def deliver(self, alert_id: str, body: bytes) -> Delivery | None:
        """Try until a 2xx, a final 4xx or the last attempt; None when stopped while waiting to retry."""
        config, policy = self._config, self._config.retry
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            headers = {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                **signed_headers(config.secrets, alert_id, int(time.time()), body),  # this attempt's timestamp
            }
            answer = self._send(config.url, body, headers, config.timeout_s)
            outcome = verdict(answer.status)
            if outcome is not Verdict.RETRY or attempt >= policy.attempts:
                return Delivery(outcome is Verdict.DELIVERED, attempt, answer, time.monotonic() - started)
            delay = policy.delay(attempt, answer.retry_after_s)
            self._on_retry()
            self._log(f"retrying       {alert_id}  {answer} (attempt {attempt} of {policy.attempts}); "
                      f"next in {delay:.1f} s")  # fmt: skip
            if self._stop.wait(delay):
                return None


class WebhookForwarder:
    """Consumes the alerts topic in ``config.group`` and settles every alert in order (see the module)."""

    def __init__(self, settings: Settings, config: WebhookConfig, *, stop: threading.Event | None = None,
                 log: Log = print, send: Callable[[str, bytes, Mapping[str, str], float], Answer] = post) -> None:  # fmt: skip
        self._config = config
        self._stop = stop or threading.Event()
        self._log = log
        self._topic = alerts_topic(settings)
        self._dead_letters = Topics.with_prefix(settings.topic_prefix).dead_letters
        self._sender = WebhookSender(config, self._stop, log, send, on_retry=lambda: self._count("retried"))
        self._source = f"alerts-webhook:{config.group}"
        # one alert may take retry.worst_case_s without a poll: stay in the group meanwhile
        poll_interval_ms = int(min(max(3_600_000, 2_000 * config.retry.worst_case_s(config.timeout_s)), 86_400_000))
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap,
                "group.id": config.group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": config.start_at,
                "max.poll.interval.ms": poll_interval_ms,
                "session.timeout.ms": 10_000,  # a crashed forwarder's partitions move on after 10 s
                **librdkafka_config(KAFKA),
            }
        )
        self._producer_config = {
            "bootstrap.servers": settings.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 0,
            "message.timeout.ms": 0,  # a broker outage holds the alert (and its partition), never drops its letter
            **librdkafka_config(KAFKA),
        }
        self._producer: Producer | None = None  # made for the first dead letter: most runs never need one
        self._fresh: set[tuple[str, int]] = set()  # assigned partitions whose committed metadata is not read yet
        self.counts = dict.fromkeys(OUTCOMES, 0)

    @property
    def stop(self) -> threading.Event:
        return self._stop

    def run(self) -> None:
        """Forward until ``stop`` is set; the alert in flight is settled first unless stopped while it waits."""
        partitions_of(self._consumer, self._topic)
        self._consumer.subscribe([self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._log(f"forwarding {self._topic} to {safe_url(self._config.url)} as consumer group {self._config.group}")
        try:
            while not self._stop.is_set():
                message = self._consumer.poll(POLL_S)
                if message is None:
                    continue
                if message.error() is not None:
                    consumer_error(message.error())
                    continue
                self._handle(message)
        finally:
            self._consumer.close()  # leaves the group; nothing is committed here
            if self._producer is not None:
                self._producer.flush(5)
            self._log(f"stopped: {self.counts['delivered']} delivered, {self.counts['retried']} retries, "
                      f"{self.counts['dead_lettered']} dead-lettered")  # fmt: skip

    # --- a record ---------------------------------------------------------------------------

    def _handle(self, message: Message) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        start = self._resume_line(message)
        if start is None:  # the committed position is unreadable now: read the record again in a moment
            self._rewind(message)
            self._stop.wait(1.0)
            return
        if start == AHEAD:  # the group committed past this record: someone settled it already
            return
        lines = decode_record(message.value() or b"")
        if not lines:
            self._commit(message, None)
            return
        for index in range(start, len(lines)):
            raw, item = lines[index]
            if not self._settle(raw, item, f"{topic}/{partition}@{offset}", index):
                return  # stopped before this alert was settled: it is where the next start resumes
            last = index + 1 == len(lines)
            if not self._commit(message, None if last else index + 1):
                self._rewind(message)
                return

    def _resume_line(self, message: Message) -> int | None:
        """The first alert of the record not yet settled: past the committed ``lines=N`` after an assignment.

        None when the committed position cannot be read now; :data:`AHEAD` for a record the group
        committed past (another member settled it meanwhile).
        """
        key = (message.topic(), message.partition())
        if key not in self._fresh:
            return 0
        try:
            [committed] = self._consumer.committed([TopicPartition(*key)], timeout=10)
        except KafkaException as exc:
            log.warning("cannot read the committed position of %s/%d: %s", *key, exc)
            return None
        self._fresh.discard(key)
        if committed.offset > message.offset():
            return AHEAD
        metadata = committed.metadata or ""
        if committed.offset == message.offset() and metadata.startswith(LINES_PREFIX):
            try:
                return int(metadata[len(LINES_PREFIX) :])
            except ValueError:
                log.warning("ignoring unreadable commit metadata %r of %s/%d", metadata, *key)
        return 0

    def _commit(self, message: Message, settled_lines: int | None) -> bool:
        """Commit synchronously: past the record (``settled_lines`` None), or on it with ``lines=N`` settled."""
        if settled_lines is None:
            position = TopicPartition(message.topic(), message.partition(), message.offset() + 1)
        else:
            position = TopicPartition(message.topic(), message.partition(), message.offset(),
                                      metadata=f"{LINES_PREFIX}{settled_lines}")  # fmt: skip
        try:
            result = self._consumer.commit(offsets=[position], asynchronous=False)
        except KafkaException as exc:
            log.warning("commit of %s failed (%s); the alert will be sent again", position, exc)
            return False
        failed = [tp for tp in result or () if tp.error is not None]
        if failed:
            log.warning("commit of %s failed (%s); the alert will be sent again", position, failed[0].error)
            return False
        return True

    def _rewind(self, message: Message) -> None:
        """Read the record again from the group's committed position (if the partition is still ours)."""
        key = (message.topic(), message.partition())
        self._fresh.add(key)
        try:
            self._consumer.seek(TopicPartition(*key, message.offset()))
        except KafkaException:  # no longer assigned: the next owner starts from the committed position
            self._fresh.discard(key)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._fresh.update((tp.topic, tp.partition) for tp in partitions)
        if partitions:
            self._log(f"assigned partitions {', '.join(str(tp.partition) for tp in partitions)} of {self._topic}")

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._fresh.discard((tp.topic, tp.partition))

    # --- an alert ---------------------------------------------------------------------------

    def _settle(self, raw: bytes, item: Any, where: str, line: int) -> bool:
        """Deliver or dead-letter one alert; False if stopped before it was settled."""
        IN_FLIGHT.inc()
        try:
            alert_id, problem = _sendable(item)
            if problem:
                letter = DeadLetter(f"webhook:{self._config.group}:{where}:{line}", raw, UNSENDABLE,
                                    (f"line {line} of {where}: {problem}",), self._source, now_ms())  # fmt: skip
                if not self._send_letter(letter):
                    return False
                self._count("dead_lettered")
                self._log(f"dead-lettered  line {line} of {where}  {problem}")
                return True
            delivery = self._sender.deliver(alert_id, raw)
            if delivery is None:
                return False
            if delivery.delivered:
                self._count("delivered")
                self._log(f"delivered      {alert_id}  {_change(item)}  {delivery.last} in "
                          f"{delivery.seconds * 1000:.0f} ms (attempt {delivery.attempts})")  # fmt: skip
                return True
            letter = DeadLetter(f"webhook:{self._config.group}:{alert_id}", raw, UNDELIVERABLE,
                                self._errors(delivery), self._source, now_ms())  # fmt: skip
            if not self._send_letter(letter):
                return False
            self._count("dead_lettered")
            self._log(f"dead-lettered  {alert_id}  {delivery.last} after {delivery.attempts} "
                      f"attempt{'s' if delivery.attempts > 1 else ''}"
                      + (f": {excerpt(delivery.last.excerpt, 80)}" if delivery.last.excerpt else ""))  # fmt: skip
            return True
        finally:
            IN_FLIGHT.dec()

    def _errors(self, delivery: Delivery) -> tuple[str, ...]:
        last = delivery.last
        refused = verdict(last.status) is Verdict.REFUSED
        errors = [
            f"not delivered to {safe_url(self._config.url)}: {delivery.attempts} attempt"
            + ("s" if delivery.attempts > 1 else "")
            + (f", {last} is final (not retried)" if refused else ""),
            f"last answer: {last}" if last.status is not None else f"last error: {last.error}",
        ]
        if last.excerpt:
            errors.append(f"last answer body: {last.excerpt}")
        return tuple(errors)

    def _send_letter(self, letter: DeadLetter) -> bool:
        """Produce a dead letter and wait for the broker's acknowledgement; False if stopped meanwhile."""
        failures: list[str] = []

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(error.str())

        if self._producer is None:
            self._producer = Producer(self._producer_config)
        self._producer.produce(self._dead_letters, value=letter.raw, headers=letter.headers(), on_delivery=on_delivery)
        while self._producer.flush(POLL_S):
            if self._stop.is_set():
                return False
        if failures:
            raise PulseError(f"Kafka refused the dead letter {letter.letter_id}: {failures[0]}")
        return True

    def _count(self, outcome: str) -> None:
        DELIVERIES.labels(outcome).inc()
        self.counts[outcome] += 1


def _sendable(item: Any) -> tuple[str, str]:
    """The alert's id, or an empty id and why the line cannot be a webhook."""
    if isinstance(item, Undecodable):
        return "", f"not JSON: {item.error}"
    if not isinstance(item, dict):
        return "", f"not a JSON object: {excerpt(repr(item), 80)}"
    alert_id = item.get("alert_id")
    if not isinstance(alert_id, str) or not alert_id:
        return "", "no alert_id"
    if "." in alert_id or any(c.isspace() for c in alert_id):
        return "", f"alert_id {alert_id!r} holds '.' or whitespace, which a webhook-id may not"
    return alert_id, ""


def _change(alert: Mapping[str, Any]) -> str:
    return f"{alert.get('user_id', '?')} {alert.get('old_tier', '?')} -> {alert.get('new_tier', '?')}"


def serve_metrics(port: int, host: str) -> Any:
    """Serve this process's Prometheus metrics on ``host:port`` in a background thread; returns the server."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host)
    return server
