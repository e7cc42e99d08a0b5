"""Funnels: ordered steps a user takes within a window, followed per user in event time, free of Faust and Kafka.

**Definitions.** A funnel is a name, its steps, a window and optional exclusions, read from
YAML by :func:`load_funnels` (``deploy/funnels.yaml`` unless a file is named). A step is an
event type plus equality filters on string fields, ``props.<key>`` or ``context.<key>``; an
exclusion is matched the same way.

**Semantics: ClickHouse's ``windowFunnel(window)``, default mode**, over one user's on-time
events (checked against chdb's in ``tests/integration/test_funnel_semantics.py``):

- an event counts once for every step it matches (an event matching steps 1 and 2 alone
  reaches level 2), as a pair (event time, step index);
- pairs are taken in (time, step index) order: at the same millisecond a lower step comes
  first, so step k and step k+1 stamped the same millisecond still progress. Pairs equal in
  both (ClickHouse cannot tell them apart) are taken by the id hash of their event, which
  only decides which event and attempt a row names;
- per level, the latest chain that reached it is kept: a step-1 event starts a new chain
  (replacing level 1's), and a step-k event extends level k-1's chain to level k if its time
  is at most ``window`` after the chain's entry, **inclusive** (``ts - entry <= window``, as
  ClickHouse's ``timestamp <= first_timestamp + window``);
- the furthest level reached is what ``windowFunnel`` returns: the highest ``step_index`` of
  the user's rows.

**Attempts and rows.** Each chain is an *attempt*: attempt n is the chain the user's n-th
step-1 event of the funnel started. Each step an attempt reaches emits one row (the first
event that reaches it; a later one extending the same attempt again adds nothing). Its
``step_id`` is ``"{funnel}|{user}|{attempt}|{step_index}|{entry}"``, ``entry`` the 16 hex digits
of the id hash of the attempt's step-1 event: a replay gives the same ids, and ids stay unique
when the attempt count restarts, which it does once the funnel saw nothing of the user (no
event matching one of its steps or exclusions) for longer than the retention or the window,
whichever is longer. That silence is measured between the user's events in time order, so
it is the same in every arrival order.

**Exclusions** (which ``windowFunnel`` does not have): an event matching an exclusion ends
every attempt in progress: each keeps the steps it reached and never advances past them.
At the same millisecond an exclusion comes before every step: it stops an attempt whose
next step is stamped that millisecond, while an attempt whose step 1 is stamped then starts
after it, unaffected. Attempts entered after the exclusion are unaffected, and so is one
that had already reached the last step.

**Order independence.** Events arrive out of order within the allowed lateness, packed into
records any way. So nothing is decided on arrival: a user's events that match some step or
exclusion wait in the slice (time, which steps and exclusions they match, event id), and
once the watermark passes them they are processed in the order above. The runner admits no
event behind the watermark, so everything before it is final: the rows are those of the
events sorted, whatever the arrival order (property-tested).

**Memory.** Per funnel the slice keeps the attempt count, the time of the latest event
processed (for the restart of attempts), the waiting events and the attempts in progress:
at most one per level below the last, each with the (time, event id) of its steps. An
attempt is dropped when it cannot advance any more: replaced at its level by a later one,
ended by an exclusion, through the last step, or its window passed by the watermark.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from hashlib import blake2b
from pathlib import Path
from typing import Any

import orjson
import yaml

import deploy
from pulse.contract import Event, is_known_type
from pulse.errors import PulseError
from stream_jobs.dedup import id_hash

DEFAULT_FUNNELS = Path(deploy.__file__).resolve().parent / "funnels.yaml"  # shipped with the package
MAX_STEPS = 32  # windowFunnel takes at most 32 conditions, so every funnel keeps a retroactive form

_DURATION = re.compile(r"(\d+)(s|m|h|d)")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_FUNNEL_NAME = re.compile(r"[a-z][a-z0-9_]*")  # goes into step ids, joined by "|"
_STEP_NAME = re.compile(r"[a-z][a-z0-9_.]*")  # a step named after a custom type keeps its dot
_FILTER_PATH = re.compile(r"(props|context)\.[A-Za-z0-9_]+")
_FUNNEL_KEYS = frozenset({"name", "window", "steps", "exclusions"})
_STEP_KEYS = frozenset({"name", "type", "where"})
_EXCLUSION_KEYS = frozenset({"type", "where"})

_EXCLUDED = 1  # bit 0 of a match mask: an exclusion; bit i: step i


class FunnelConfigError(PulseError, ValueError):
    """The funnel definitions are malformed; the message names the file, the funnel and the field."""


# --- definitions --------------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelStep:
    """A step of a funnel, or an exclusion: an event type and the string values some fields must have.

    ``where`` maps ``props.<key>`` or ``context.<key>`` to the value the event must carry there.
    """

    name: str
    type: str
    where: Mapping[str, str] = field(default_factory=dict)

    def matches(self, event: Event) -> bool:
        if event.type != self.type:
            return False
        for path, value in self.where.items():
            section, key = path.split(".", 1)
            if (event.props if section == "props" else event.context).get(key) != value:
                return False
        return True


@dataclass(frozen=True)
class Funnel:
    """Steps in order, reached within ``window_ms`` of the first (inclusive), unless an exclusion intervenes."""

    name: str
    steps: tuple[FunnelStep, ...]
    window_ms: int
    exclusions: tuple[FunnelStep, ...] = ()

    @cached_property
    def fingerprint(self) -> int:
        """A short hash of the definition: state kept under another definition of the same name is dropped."""
        steps = [[s.type, sorted(s.where.items())] for s in self.steps]
        exclusions = sorted([s.type, sorted(s.where.items())] for s in self.exclusions)
        digest = blake2b(orjson.dumps([steps, self.window_ms, exclusions]), digest_size=4).digest()
        return int.from_bytes(digest, "little")

    def matchers(self) -> Iterator[tuple[int, FunnelStep]]:
        """Each step and exclusion with its bit in a match mask (exclusions 1, step i ``1 << i``)."""
        for exclusion in self.exclusions:
            yield _EXCLUDED, exclusion
        for index, step in enumerate(self.steps, start=1):
            yield 1 << index, step


def load_funnels(path: Path | None = None) -> tuple[Funnel, ...]:
    """The funnels of a YAML file; None reads the shipped ``deploy/funnels.yaml``."""
    path = DEFAULT_FUNNELS if path is None else path
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FunnelConfigError(f"cannot read the funnel definitions {path}: {exc}") from None
    return parse_funnels(document, where=str(path))


def parse_funnels(document: Any, where: str = "funnel definitions") -> tuple[Funnel, ...]:
    """The funnels of a parsed YAML document: a mapping with one key, ``funnels``, a list of funnels.

    Each funnel: ``name`` (snake case), ``window`` (a whole number and a unit: ``s`` seconds,
    ``m`` minutes, ``h`` hours, ``d`` days of 24 hours, e.g. ``14d``), ``steps`` (1 to 32 of
    ``name``, ``type``, optional ``where``; the name defaults to the type) and optional
    ``exclusions`` (``type``, optional ``where``). Raises :class:`FunnelConfigError` naming the
    first mistake.
    """
    if not isinstance(document, dict) or set(document) != {"funnels"} or not isinstance(document["funnels"], list):
        raise FunnelConfigError(f"{where}: expected a mapping with one key, funnels: a list of funnels")
    funnels = tuple(_funnel(entry, f"{where}: funnels[{i}]") for i, entry in enumerate(document["funnels"]))
    names = [funnel.name for funnel in funnels]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise FunnelConfigError(f"{where}: funnels defined twice: {', '.join(duplicated)}")
    return funnels


def parse_window(text: Any) -> int:
    """Milliseconds of a window such as ``30m``, ``12h`` or ``14d``; ValueError unless positive."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"expected a whole number and a unit (s, m, h or d), like 14d; got {text!r}")
    window_ms = int(match[1]) * _UNIT_MS[match[2]]
    if window_ms <= 0:
        raise ValueError(f"must be positive, got {text!r}")
    return window_ms


def _funnel(entry: Any, where: str) -> Funnel:
    if not isinstance(entry, dict):
        raise FunnelConfigError(f"{where}: expected a mapping")
    name = entry.get("name")
    if not isinstance(name, str) or not _FUNNEL_NAME.fullmatch(name):
        raise FunnelConfigError(f"{where}.name: expected a snake_case name, got {name!r}")
    where = f"{where} (funnel {name!r})"
    _known_keys(entry, _FUNNEL_KEYS, where)
    try:
        window_ms = parse_window(entry.get("window"))
    except ValueError as exc:
        raise FunnelConfigError(f"{where}.window: {exc}") from None
    steps = entry.get("steps")
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        raise FunnelConfigError(f"{where}.steps: expected a list of 1 to {MAX_STEPS} steps, got {steps!r}")
    parsed = tuple(_step(step, _STEP_KEYS, f"{where}.steps[{i}]") for i, step in enumerate(steps))
    step_names = [step.name for step in parsed]
    duplicated = sorted({step for step in step_names if step_names.count(step) > 1})
    if duplicated:
        raise FunnelConfigError(f"{where}.steps: step names used twice: {', '.join(duplicated)}")
    exclusions = entry.get("exclusions", [])
    if not isinstance(exclusions, list):
        raise FunnelConfigError(f"{where}.exclusions: expected a list, got {exclusions!r}")
    excluded = tuple(_step(step, _EXCLUSION_KEYS, f"{where}.exclusions[{i}]") for i, step in enumerate(exclusions))
    return Funnel(name, parsed, window_ms, excluded)


def _step(entry: Any, keys: frozenset[str], where: str) -> FunnelStep:
    if not isinstance(entry, dict):
        raise FunnelConfigError(f"{where}: expected a mapping")
    _known_keys(entry, keys, where)
    type_ = entry.get("type")
    if not isinstance(type_, str) or not is_known_type(type_):
        raise FunnelConfigError(f"{where}.type: unknown event type {type_!r}: a standard type or custom.<snake_case>")
    name = entry.get("name", type_)
    if not isinstance(name, str) or not _STEP_NAME.fullmatch(name):
        raise FunnelConfigError(f"{where}.name: expected a snake_case name, got {name!r}")
    filters = entry.get("where", {})
    if not isinstance(filters, dict):
        raise FunnelConfigError(f"{where}.where: expected a mapping of field paths to values, got {filters!r}")
    for path, value in filters.items():
        if not isinstance(path, str) or not _FILTER_PATH.fullmatch(path):
            raise FunnelConfigError(f"{where}.where: bad field path {path!r}: expected props.<key> or context.<key>")
        if not isinstance(value, str):
            raise FunnelConfigError(f"{where}.where.{path}: expected a string (quote it), got {value!r}")
    return FunnelStep(name, type_, dict(filters))


def _known_keys(entry: dict, keys: frozenset[str], where: str) -> None:
    unknown = set(entry) - keys
    if unknown:
        raise FunnelConfigError(f"{where}: unknown keys {sorted(map(str, unknown))}; known: {sorted(keys)}")


class FunnelIndex:
    """Every funnel's steps and exclusions by event type: what an event matches, in one dict lookup."""

    def __init__(self, funnels: Sequence[Funnel]) -> None:
        self._by_type: dict[str, list[tuple[str, int, FunnelStep]]] = {}
        for funnel in funnels:
            for bit, matcher in funnel.matchers():
                self._by_type.setdefault(matcher.type, []).append((funnel.name, bit, matcher))

    @property
    def event_types(self) -> frozenset[str]:
        """The types of event some step or exclusion matches."""
        return frozenset(self._by_type)

    def masks(self, event: Event) -> dict[str, int]:
        """Per funnel the event matches: the bits of the steps and exclusions it matches."""
        masks: dict[str, int] = {}
        for name, bit, matcher in self._by_type.get(event.type, ()):
            if matcher.matches(event):
                masks[name] = masks.get(name, 0) | bit
        return masks


# --- the state machine ---------------------------------------------------------------------

Reached = tuple[int, str]  # (event time, event id) of a step an attempt reached


@dataclass(slots=True)
class Attempt:
    """An attempt in progress: its number and the steps it reached, from step 1."""

    number: int
    path: list[Reached]

    def to_json(self) -> list[Any]:
        return [self.number, self.path]

    @classmethod
    def from_json(cls, data: list[Any]) -> Attempt:
        number, path = data
        return cls(number, [(ts, event_id) for ts, event_id in path])


@dataclass(slots=True)
class FunnelState:
    """One user's progress in one funnel."""

    attempts: int = 0  # step-1 events since the count last restarted: the number of the latest attempt
    last_ts: int | None = None  # event time of the latest event processed, for the restart of the count
    open: dict[int, Attempt] = field(default_factory=dict)  # attempts in progress, by the level they hold
    pending: list[tuple[int, int, str]] = field(default_factory=list)  # (event time, match mask, event id)

    def deadline(self, funnel: Funnel, retention_ms: int) -> int | None:
        """The earliest of: a waiting event's time, an open attempt's window end; else the end of retention."""
        due = [ts for ts, _, _ in self.pending]
        due += [attempt.path[0][0] + funnel.window_ms for attempt in self.open.values()]
        if due:
            return min(due)
        return None if self.last_ts is None else self.last_ts + _horizon(funnel, retention_ms)

    def advance(self, funnel: Funnel, user_id: str, watermark: int, retention_ms: int) -> list[dict[str, Any]]:
        """Process, in funnel order, the waiting events the watermark passed; the rows of the steps reached."""
        due = [entry for entry in self.pending if entry[0] < watermark]
        if due:
            self.pending = [entry for entry in self.pending if entry[0] >= watermark]
        horizon = _horizon(funnel, retention_ms)
        last = len(funnel.steps)
        rows: list[dict[str, Any]] = []
        for ts, level, _, event_id in sorted(
            (ts, level, id_hash(event_id), event_id) for ts, mask, event_id in due for level in _levels(mask, last)
        ):
            if self.last_ts is not None and ts - self.last_ts > horizon:
                self.attempts = 0
            self.last_ts = ts
            if level == 0:  # an exclusion: every attempt in progress stops where it is
                self.open.clear()
                continue
            if level == 1:
                self.attempts += 1
                attempt = Attempt(self.attempts, [])
            else:
                held = self.open.get(level - 1)
                if held is None or ts - held.path[0][0] > funnel.window_ms:
                    continue
                # windowFunnel also leaves it at level - 1, where it could only reach this step again: no row
                attempt = self.open.pop(level - 1)
            attempt.path.append((ts, event_id))
            rows.append(step_row(funnel, user_id, attempt))
            if level < last:
                self.open[level] = attempt  # the attempt it replaces can no longer advance
        self.open = {level: a for level, a in self.open.items() if a.path[0][0] + funnel.window_ms >= watermark}
        return rows

    def absorb(self, other: FunnelState) -> None:
        """Take in another id's progress in the same funnel (the id merged into this user).

        Waiting events join (each once); at each level the attempt entered later is kept, as
        ``windowFunnel`` keeps the latest chain per level; counts and times take the larger.
        """
        waiting = {event_id for _, _, event_id in self.pending}
        self.pending += [entry for entry in other.pending if entry[2] not in waiting]
        for level, attempt in other.open.items():
            held = self.open.get(level)
            if held is None or attempt.path[0] > held.path[0]:
                self.open[level] = attempt
        self.attempts = max(self.attempts, other.attempts)
        if other.last_ts is not None and (self.last_ts is None or other.last_ts > self.last_ts):
            self.last_ts = other.last_ts

    def spent(self, funnel: Funnel, watermark: int, retention_ms: int) -> bool:
        """Nothing waiting or open, and the funnel silent past retention: the next event restarts the count anyway."""
        silent = self.last_ts is None or self.last_ts + _horizon(funnel, retention_ms) < watermark
        return not self.pending and not self.open and silent

    def current_rows(self, funnel: Funnel, user_id: str) -> list[dict[str, Any]]:
        """The rows of every step the open attempts reached."""
        return [step_row(funnel, user_id, Attempt(a.number, a.path[:n]))
                for a in self.open.values() for n in range(1, len(a.path) + 1)]  # fmt: skip

    def to_json(self, funnel: Funnel) -> list[Any]:
        return [
            funnel.fingerprint,
            self.attempts,
            self.last_ts,
            [a.to_json() for a in self.open.values()],
            self.pending,
        ]

    @classmethod
    def from_json(cls, data: list[Any], funnel: Funnel) -> FunnelState | None:
        """The state, or None if it was kept under another definition of the funnel."""
        fingerprint, attempts, last_ts, open_, pending = data
        if fingerprint != funnel.fingerprint:
            return None
        attempts_open = [Attempt.from_json(a) for a in open_]
        return cls(attempts, last_ts, {len(a.path): a for a in attempts_open}, [tuple(entry) for entry in pending])


def step_row(funnel: Funnel, user_id: str, attempt: Attempt) -> dict[str, Any]:
    """The row of the last step an attempt reached."""
    level = len(attempt.path)
    ts, event_id = attempt.path[-1]
    entry_ts, entry_id = attempt.path[0]
    previous = attempt.path[-2][0] if level > 1 else ts
    return {
        "step_id": f"{funnel.name}|{user_id}|{attempt.number}|{level}|{id_hash(entry_id) & 0xFFFF_FFFF_FFFF_FFFF:016x}",
        "funnel": funnel.name,
        "user_id": user_id,
        "attempt": attempt.number,
        "step_index": level,
        "step_name": funnel.steps[level - 1].name,
        "ts": ts,
        "since_previous_s": (ts - previous) / 1000,
        "since_entry_s": (ts - entry_ts) / 1000,
        "event_id": event_id,
    }


def _levels(mask: int, last: int) -> Iterator[int]:
    """The levels a match mask names: 0 for an exclusion, i for step i."""
    return (level for level in range(last + 1) if mask >> level & 1)


def _horizon(funnel: Funnel, retention_ms: int) -> int:
    """Silence after which the attempt count restarts: never shorter than the window, so no attempt is open then."""
    return max(retention_ms, funnel.window_ms)
