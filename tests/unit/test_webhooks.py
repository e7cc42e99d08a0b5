"""Standard Webhooks signing and the retry rules (ops.webhooks), and one alert's attempts (ops.webhook_forwarder.WebhookSender)."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator, Mapping
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ops.webhook_forwarder import Answer, WebhookConfig, WebhookSender, post, safe_url
from ops.webhooks import (
    RetryPolicy,
    Verdict,
    VerificationError,
    WebhookSecretError,
    generate_secret,
    parse_secret,
    retry_after_seconds,
    sign,
    signed_headers,
    verdict,
    verify,
)
from pulse.errors import PulseError

# The reference test vector of the Standard Webhooks libraries: test_sign_function in
# github.com/standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py
# (the same values are in the other languages' tests).
REFERENCE_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
REFERENCE_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
REFERENCE_TIMESTAMP = 1614265330
REFERENCE_PAYLOAD = b'{"test": 2432232314}'
REFERENCE_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

KEY = parse_secret(REFERENCE_SECRET)
BODY = b'{"alert_id":"a1","user_id":"u1"}'


def test_signature_matches_the_reference_vector() -> None:
    assert sign(KEY, REFERENCE_ID, REFERENCE_TIMESTAMP, REFERENCE_PAYLOAD) == REFERENCE_SIGNATURE
    headers = signed_headers([KEY], REFERENCE_ID, REFERENCE_TIMESTAMP, REFERENCE_PAYLOAD)
    assert headers == {
        "webhook-id": REFERENCE_ID,
        "webhook-timestamp": str(REFERENCE_TIMESTAMP),
        "webhook-signature": REFERENCE_SIGNATURE,
    }
    assert verify(KEY, headers, REFERENCE_PAYLOAD, now=REFERENCE_TIMESTAMP + 10) == REFERENCE_ID


def test_the_reference_vector_with_one_bit_changed_does_not_verify() -> None:
    # the library's own negative case: the last base64 character changed
    headers = {"webhook-id": REFERENCE_ID, "webhook-timestamp": str(REFERENCE_TIMESTAMP),
               "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="}  # fmt: skip
    with pytest.raises(VerificationError):
        verify(KEY, headers, REFERENCE_PAYLOAD, now=REFERENCE_TIMESTAMP)


def test_secret_parsing() -> None:
    assert len(KEY) == 24
    assert parse_secret(REFERENCE_SECRET.rstrip("=")) == KEY
    raw = bytes(range(32))
    assert parse_secret("whsec_" + base64.b64encode(raw).decode().rstrip("=")) == raw  # padding optional
    assert len(parse_secret(generate_secret())) == 32
    with pytest.raises(WebhookSecretError, match="whsec_"):
        parse_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")  # no prefix: refused, not guessed
    with pytest.raises(WebhookSecretError, match="not base64"):
        parse_secret("whsec_not base64!")
    with pytest.raises(WebhookSecretError, match="at least 24"):
        parse_secret("whsec_" + base64.b64encode(b"short").decode())


def test_verify_accepts_any_matching_signature_and_refuses_the_rest() -> None:
    old, new = parse_secret(generate_secret()), parse_secret(generate_secret())
    now = 1_760_000_000
    headers = signed_headers([old, new], "a1", now, BODY)  # during a rotation: both sign
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verify(old, headers, BODY, now=now) == "a1"
    assert verify(new, headers, BODY, now=now) == "a1"
    assert verify(new, {k.upper(): v for k, v in headers.items()}, BODY, now=now) == "a1"  # names case-insensitive
    with pytest.raises(VerificationError, match="no v1 signature"):
        verify(KEY, headers, BODY, now=now)  # another secret
    with pytest.raises(VerificationError, match="no v1 signature"):
        verify(old, headers, BODY + b" ", now=now)  # a changed body
    with pytest.raises(VerificationError, match="no v1 signature"):
        verify(old, {**headers, "webhook-timestamp": str(now + 1)}, BODY, now=now)  # the timestamp is signed
    with pytest.raises(VerificationError, match="no v1 signature"):
        verify(old, {**headers, "webhook-id": "a2"}, BODY, now=now)  # so is the id
    with pytest.raises(VerificationError, match="more than 300 s"):
        verify(old, headers, BODY, now=now + 301)  # a replay, later
    with pytest.raises(VerificationError, match="more than 300 s"):
        verify(old, headers, BODY, now=now - 301)
    with pytest.raises(VerificationError, match="missing"):
        verify(old, {"webhook-id": "a1", "webhook-timestamp": str(now)}, BODY, now=now)
    with pytest.raises(VerificationError, match="unix seconds"):
        verify(old, {**headers, "webhook-timestamp": "yesterday"}, BODY, now=now)


def test_an_id_with_a_full_stop_cannot_be_signed() -> None:
    # "{id}.{timestamp}.{body}" would be ambiguous
    with pytest.raises(ValueError, match="may not contain"):
        sign(KEY, "a.1", 1, BODY)


@pytest.mark.parametrize(("status", "expected"), [
    (200, Verdict.DELIVERED), (201, Verdict.DELIVERED), (204, Verdict.DELIVERED), (299, Verdict.DELIVERED),
    (None, Verdict.RETRY), (408, Verdict.RETRY), (429, Verdict.RETRY), (500, Verdict.RETRY),
    (502, Verdict.RETRY), (503, Verdict.RETRY), (301, Verdict.RETRY), (302, Verdict.RETRY),
    (400, Verdict.REFUSED), (401, Verdict.REFUSED), (403, Verdict.REFUSED), (404, Verdict.REFUSED),
    (410, Verdict.REFUSED), (413, Verdict.REFUSED), (422, Verdict.REFUSED),
])  # fmt: skip
def test_verdict_of_an_answer(status: int | None, expected: Verdict) -> None:
    assert verdict(status) is expected


def test_backoff_doubles_up_to_the_cap_with_jitter_and_retry_after() -> None:
    policy = RetryPolicy(attempts=6, base_delay_s=1.0, max_delay_s=10.0, jitter=0.5)
    assert [policy.delay(n, rand=lambda: 0.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert [policy.delay(n, rand=lambda: 1.0) for n in range(1, 4)] == [0.5, 1.0, 2.0]  # jitter shortens
    assert policy.delay(1, retry_after_s=7, rand=lambda: 0.0) == 7.0  # the receiver asked for longer
    assert policy.delay(1, retry_after_s=3600, rand=lambda: 0.0) == 10.0  # but not beyond the cap
    assert policy.delay(4, retry_after_s=1, rand=lambda: 0.0) == 8.0  # nor shorter than the back-off
    assert policy.worst_case_s(timeout_s=15) == 6 * 15 + (1 + 2 + 4 + 8 + 10)
    assert RetryPolicy().attempts == 5
    for bad in ({"attempts": 0}, {"base_delay_s": -1}, {"jitter": 2}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)  # type: ignore[arg-type]


def test_retry_after_header() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(formatdate(1_000_030, usegmt=True), now=1_000_000) == 30.0
    assert retry_after_seconds(formatdate(999_000, usegmt=True), now=1_000_000) == 0.0  # in the past
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None


def test_urls_are_shown_without_credentials_or_query() -> None:
    assert (
        safe_url("https://user:pw@crm.example.com:8443/hooks/churn?token=abc")
        == "https://crm.example.com:8443/hooks/churn?..."
    )
    assert safe_url("http://127.0.0.1:9000/h") == "http://127.0.0.1:9000/h"


def test_webhook_config_refuses_what_cannot_work() -> None:
    for url in ("file:///etc/passwd", "ftp://host/x", "crm.example.com/hook", "http:///path"):
        with pytest.raises(PulseError, match="http:// or https://"):
            WebhookConfig(url, (KEY,), "g")
    with pytest.raises(PulseError, match="secret"):
        WebhookConfig("https://crm.example.com/h", (), "g")


class FakeReceiver:
    """Answers in turn from ``answers`` and records each attempt's headers and body."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.attempts: list[tuple[dict[str, str], bytes, float]] = []

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> Answer:
        self.attempts.append((dict(headers), body, time.monotonic()))
        return self.answers.pop(0)


def sender(receiver: FakeReceiver, stop: threading.Event | None = None, **retry: float) -> WebhookSender:
    policy = RetryPolicy(**{"attempts": 5, "base_delay_s": 0.01, "max_delay_s": 0.05, **retry})  # type: ignore[arg-type]
    config = WebhookConfig("https://crm.example.com/hooks", (KEY,), "g", policy, timeout_s=1.0)
    return WebhookSender(config, stop or threading.Event(), log=lambda _line: None, send=receiver)


def test_an_alert_is_retried_under_the_same_id_until_delivered() -> None:
    receiver = FakeReceiver(Answer(503, "busy"), Answer(None, error="no answer: timed out"), Answer(200, "ok"))
    delivery = sender(receiver).deliver("a1", BODY)
    assert delivery is not None and delivery.delivered and delivery.attempts == 3
    assert {headers["webhook-id"] for headers, _, _ in receiver.attempts} == {"a1"}
    for headers, body, _ in receiver.attempts:
        assert body == BODY and headers["content-type"] == "application/json"
        assert verify(KEY, headers, body) == "a1"
        assert abs(int(headers["webhook-timestamp"]) - time.time()) <= 2  # the attempt's own time


def test_a_final_4xx_is_not_retried_and_the_last_answer_is_kept() -> None:
    receiver = FakeReceiver(Answer(404, "no such hook"))
    delivery = sender(receiver).deliver("a1", BODY)
    assert delivery is not None and not delivery.delivered and delivery.attempts == 1
    assert (delivery.last.status, delivery.last.excerpt) == (404, "no such hook")


def test_attempts_run_out() -> None:
    receiver = FakeReceiver(*[Answer(500, "fire")] * 3)
    delivery = sender(receiver, attempts=3).deliver("a1", BODY)
    assert delivery is not None and not delivery.delivered and delivery.attempts == 3 and len(receiver.attempts) == 3


def test_a_stop_ends_the_wait_between_attempts() -> None:
    stop = threading.Event()
    receiver = FakeReceiver(Answer(503, "busy"), Answer(200, "ok"))
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert sender(receiver, stop, base_delay_s=30, max_delay_s=30).deliver("a1", BODY) is None
    assert time.monotonic() - started < 5 and len(receiver.attempts) == 1


@pytest.fixture
def http_endpoint() -> Iterator[str]:
    """A local endpoint: /redirect answers 302, /slow answers after 2 s, /teapot 418, anything else 200."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/slow":
                time.sleep(2)
            status = {"/redirect": 302, "/teapot": 418, "/busy": 503}.get(self.path, 200)
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/elsewhere")
            if status == 503:
                self.send_header("Retry-After", "7")
            body = b"answer body " * 100
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_post_reports_status_excerpt_and_never_follows_redirects(http_endpoint: str) -> None:
    ok = post(http_endpoint + "/", BODY, {"content-type": "application/json"}, 5)
    assert ok.status == 200 and ok.excerpt.startswith("answer body") and len(ok.excerpt) <= 300
    assert post(http_endpoint + "/redirect", BODY, {}, 5).status == 302  # a failed attempt, not a GET elsewhere
    assert post(http_endpoint + "/teapot", BODY, {}, 5).status == 418
    busy = post(http_endpoint + "/busy", BODY, {}, 5)
    assert (busy.status, busy.retry_after_s) == (503, 7.0)
    slow = post(http_endpoint + "/slow", BODY, {}, 0.3)
    assert slow.status is None and "timed out" in slow.error
    closed = post("http://127.0.0.1:1/", BODY, {}, 2)
    assert closed.status is None and closed.error.startswith("no answer")
