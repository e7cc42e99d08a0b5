"""Standard Webhooks (https://www.standardwebhooks.com): signing, verifying and the retry rules. Pure, no I/O.

A webhook is an HTTP POST whose body is the payload (here one churn alert as JSON), with three headers:

- ``webhook-id``: the message id, the same for every attempt of one message, so the receiver can
  use it as an idempotency key (here the alert's ``alert_id``);
- ``webhook-timestamp``: unix seconds of *this attempt*, which the signature covers, so a receiver
  refusing old timestamps (five minutes is usual) cannot be fed a replayed request;
- ``webhook-signature``: ``v1,`` + base64(HMAC-SHA256(secret, ``{id}.{timestamp}.{body}``)); several
  signatures, space-separated, while a secret is rotated (signed with the old and the new one).

A secret is shown as ``whsec_`` + base64 of its bytes; the spec asks for at least 24 random bytes.

The sender retries a failed attempt with exponential back-off and jitter: any answer but a 2xx is
a failure, and a 4xx other than 408 (timeout) and 429 (too many requests) is final, since sending
the same request again will be refused again. A ``Retry-After`` answer stretches the next wait.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from pulse.errors import PulseError

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24  # the spec's minimum for symmetric secrets (192 bits)
DEFAULT_TOLERANCE_S = 300  # how far a receiver lets webhook-timestamp be from its clock, as the reference libraries

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


class WebhookSecretError(PulseError, ValueError):
    """A secret that is not ``whsec_`` + base64 of at least 24 bytes."""


class VerificationError(PulseError, ValueError):
    """A webhook whose headers are missing, too old or too new, or whose signature does not match."""


def parse_secret(text: str) -> bytes:
    """The bytes of a ``whsec_...`` secret (base64 after the prefix; missing ``=`` padding is tolerated)."""
    text = text.strip()
    if not text.startswith(SECRET_PREFIX):
        raise WebhookSecretError(f"a webhook secret starts with {SECRET_PREFIX!r} followed by base64 "
                                 f"(generate one: {_GENERATE_HINT})")  # fmt: skip
    encoded = text[len(SECRET_PREFIX) :]
    try:
        secret = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSecretError(f"the part after {SECRET_PREFIX!r} is not base64") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise WebhookSecretError(f"the secret is {len(secret)} bytes; Standard Webhooks secrets are at least "
                                 f"{MIN_SECRET_BYTES} (generate one: {_GENERATE_HINT})")  # fmt: skip
    return secret


_GENERATE_HINT = "python -c \"import base64,os; print('whsec_' + base64.b64encode(os.urandom(32)).decode())\""


def generate_secret(size: int = 32) -> str:
    """A new random secret in the ``whsec_`` form."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(max(size, MIN_SECRET_BYTES))).decode()


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one attempt: HMAC-SHA256 of ``{msg_id}.{timestamp}.{body}``."""
    if "." in msg_id:
        raise ValueError(f"a webhook id may not contain '.' (it delimits the signed content): {msg_id!r}")
    digest = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secrets: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt, signed with every secret (several while rotating)."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets),
    }


def verify(secret: bytes, headers: Mapping[str, str], body: bytes, *,
           tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> str:  # fmt: skip
    """Check a received webhook as a receiver should; returns its ``webhook-id``, raises :class:`VerificationError`.

    Header names are matched case-insensitively; one matching ``v1`` signature of the list suffices.
    """
    found = {name.lower(): value for name, value in headers.items()}
    msg_id, stamp, signatures = (found.get(name) for name in (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE))
    if not (msg_id and stamp and signatures):
        raise VerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    if "." in msg_id:
        raise VerificationError(f"webhook-id contains '.': {msg_id!r}")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise VerificationError(f"webhook-timestamp is not unix seconds: {stamp!r}") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise VerificationError(f"webhook-timestamp {timestamp} is more than {tolerance_s:.0f} s from now")
    expected = base64.b64decode(sign(secret, msg_id, timestamp, body)[3:])
    for candidate in signatures.split():
        version, _, encoded = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, given):
            return msg_id
    raise VerificationError("no v1 signature matches")


class Verdict(enum.Enum):
    """What one attempt's answer means for the alert."""

    DELIVERED = "delivered"  # 2xx
    RETRY = "retry"  # worth another attempt: no answer, 408, 429, 3xx, 5xx
    REFUSED = "refused"  # any other 4xx: the receiver will refuse the same request again


def verdict(status: int | None) -> Verdict:
    """The verdict of an attempt that got ``status`` (None: no answer, a timeout or a connection error)."""
    if status is not None and 200 <= status <= 299:
        return Verdict.DELIVERED
    if status is not None and 400 <= status <= 499 and status not in (408, 429):
        return Verdict.REFUSED
    return Verdict.RETRY


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long apart one alert is tried: ``attempts`` in all, the n-th wait about
    ``base_delay_s * 2**(n-1)``, at most ``max_delay_s``, shortened by up to ``jitter`` of itself at random."""

    attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("delays cannot be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a share of the delay: 0 to 1")

    def delay(
        self, failed: int, retry_after_s: float | None = None, rand: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait after the ``failed``-th failed attempt (1 = the first) before the next one.

        A ``Retry-After`` of the receiver is honoured up to ``max_delay_s``.
        """
        backoff = min(self.base_delay_s * 2 ** (failed - 1), self.max_delay_s)
        backoff *= 1 - self.jitter * rand()
        if retry_after_s is not None:
            backoff = max(backoff, min(retry_after_s, self.max_delay_s))
        return backoff

    def worst_case_s(self, timeout_s: float) -> float:
        """The longest one alert can take: every attempt timing out and every wait at its longest."""
        waits = sum(min(self.base_delay_s * 2 ** (n - 1), self.max_delay_s) for n in range(1, self.attempts))
        return self.attempts * timeout_s + waits


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
