"""Funnels: definitions, the windowFunnel state machine, and rows that no arrival order or packing changes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse.contract import Event
from pulse.outputs import FUNNEL_STEPS
from pulse.settings import load_settings
from stream_jobs.dedup import id_hash
from stream_jobs.funnels import (
    DEFAULT_FUNNELS,
    Funnel,
    FunnelConfigError,
    FunnelStep,
    load_funnels,
    parse_funnels,
    parse_window,
)
from stream_jobs.funnels_job import FunnelsJob
from stream_jobs.runner import JobRunner

T0 = 1_763_856_000_000
LATENESS = 12
WINDOW = 10
RETENTION = 25

PRICING = FunnelStep("pricing_page", "page_view", {"context.path": "/pricing"})
SIGNUP = FunnelStep("signup", "signup")
PURCHASE = FunnelStep("purchase", "purchase")
REFUND = FunnelStep("refund", "refund")

TRIO = Funnel("trio", (PRICING, SIGNUP, PURCHASE), WINDOW)
VIEWS = Funnel("views", (FunnelStep("any_page", "page_view"), PRICING, SIGNUP), WINDOW)  # one view can be steps 1 and 2
GUARDED = Funnel("guarded", (SIGNUP, PURCHASE, FunnelStep("login", "login")), WINDOW, (REFUND,))
SINGLE = Funnel("single", (SIGNUP,), WINDOW)
FUNNELS = (TRIO, VIEWS, GUARDED, SINGLE)


def event(i: int | str, type_: str, ts: int, user: str = "u", path: str | None = None, **props: Any) -> Event:
    return Event(f"e{i}", type_, user, ts, props, {} if path is None else {"path": path})


def run(job: FunnelsJob, records: Sequence[Sequence[Event]], lateness: int = LATENESS) -> list[dict[str, Any]]:
    """Records through the job as the runner drives it, every slice stored and read back in between.

    Each event must be on time (not behind the watermark as it stands); a user's new events
    go in sorted; after each record, due users hear the watermark; at the end the watermark
    passes everything.
    """
    stored: dict[str, bytes] = {}
    rows: list[dict[str, Any]] = []
    max_ts: int | None = None

    def fire(touched: dict[str, Any], watermark: int) -> None:
        for user in sorted(set(stored) | set(touched)):
            state = touched[user] if user in touched else job.decode(stored[user], job.version)
            deadline = job.deadline(state)
            if deadline is not None and deadline < watermark:
                rows.extend(row.values for row in job.on_watermark(user, state, watermark))
                later = job.deadline(state)
                assert later is None or later >= watermark, "everything due was handled"
            if job.is_empty(state):
                stored.pop(user, None)
            else:
                stored[user] = job.encode(state)

    for record in records:
        new: dict[str, list[Event]] = defaultdict(list)
        for e in record:
            assert max_ts is None or e.ts >= max_ts - lateness, "only on-time events are fed"
            max_ts = e.ts if max_ts is None else max(max_ts, e.ts)
            new[e.user_id].append(e)
        touched = {}
        for user, events in new.items():
            state = touched[user] = job.decode(stored[user], job.version) if user in stored else job.empty()
            assert job.on_events(user, state, sorted(events, key=lambda e: (e.ts, id_hash(e.event_id)))) == []
        assert max_ts is not None
        fire(touched, max_ts - lateness)
    fire({}, (max_ts or 0) + 10**12)
    assert not stored, "past everything, every slice is dropped"
    return rows


def reached(rows: list[dict[str, Any]]) -> list[tuple[str, int, int, int, str]]:
    return sorted((r["funnel"], r["attempt"], r["step_index"], r["ts"], r["event_id"]) for r in rows)


def job(*funnels: Funnel, retention: int = RETENTION) -> FunnelsJob:
    return FunnelsJob(funnels or FUNNELS, retention)


# --- matching -----------------------------------------------------------------------------


def test_a_step_matches_its_type_and_every_filter() -> None:
    step = FunnelStep("pro_trial", "trial_started", {"props.plan": "pro", "context.utm_source": "ads"})
    assert step.matches(Event("e", "trial_started", "u", T0, {"plan": "pro"}, {"utm_source": "ads"}))
    assert not step.matches(Event("e", "trial_started", "u", T0, {"plan": "team"}, {"utm_source": "ads"}))
    assert not step.matches(Event("e", "trial_started", "u", T0, {"plan": "pro"}, {}))  # missing field
    assert not step.matches(Event("e", "signup", "u", T0, {"plan": "pro"}, {"utm_source": "ads"}))
    assert not FunnelStep("n", "purchase", {"props.amount": "5"}).matches(event(1, "purchase", T0, amount=5))
    assert SIGNUP.matches(event(1, "signup", T0))


# --- definitions --------------------------------------------------------------------------


def test_the_shipped_funnels_load() -> None:
    funnels = {f.name: f for f in load_funnels(None)}
    assert load_funnels() == load_funnels(DEFAULT_FUNNELS)
    paid = funnels["pricing_to_paid"]
    assert [s.type for s in paid.steps] == ["page_view", "signup", "onboarding_completed", "trial_started",
                                            "subscription_started"]  # fmt: skip
    assert paid.steps[0].where == {"context.path": "/pricing"} and paid.window_ms == 14 * 86_400_000
    purchase = funnels["signup_to_purchase"]
    assert [s.name for s in purchase.steps] == ["signup", "purchase"] and purchase.window_ms == 30 * 86_400_000


def test_a_file_with_every_feature(tmp_path: Path) -> None:
    path = tmp_path / "funnels.yaml"
    path.write_text(
        "funnels:\n"
        "  - name: upgrade\n"
        "    window: 12h\n"
        "    steps:\n"
        "      - type: trial_started\n"
        "        where: {props.plan: pro}\n"
        "      - {name: paid, type: subscription_started}\n"
        "      - {name: used_export, type: custom.export_clicked}\n"
        "    exclusions:\n"
        "      - type: subscription_cancelled\n"
        "      - {type: page_view, where: {context.path: /cancel}}\n"
    )
    (funnel,) = load_funnels(path)
    assert funnel == Funnel(
        "upgrade",
        (FunnelStep("trial_started", "trial_started", {"props.plan": "pro"}),
         FunnelStep("paid", "subscription_started"), FunnelStep("used_export", "custom.export_clicked")),
        12 * 3_600_000,
        (FunnelStep("subscription_cancelled", "subscription_cancelled"),
         FunnelStep("page_view", "page_view", {"context.path": "/cancel"})),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "ms"), [("45s", 45_000), ("30m", 1_800_000), ("12h", 43_200_000), ("14d", 1_209_600_000)]
)
def test_window_units(text: str, ms: int) -> None:
    assert parse_window(text) == ms


def good(**changes: Any) -> dict[str, Any]:
    """A document with one funnel, ``changes`` applied to it (None removes a key)."""
    funnel = {"name": "f", "window": "1d", "steps": [{"type": "signup"}, {"type": "purchase"}], **changes}
    return {"funnels": [{k: v for k, v in funnel.items() if v is not None}]}


@pytest.mark.parametrize(
    ("document", "field", "words"),
    [
        (good(colour="red"), "funnels[0] (funnel 'f')", "unknown keys ['colour']"),
        (good(steps=[{"type": "signup", "when": "now"}]), "steps[0]", "unknown keys ['when']"),
        (good(steps=[{"type": "sign_up"}]), "steps[0].type", "unknown event type 'sign_up'"),
        (good(exclusions=[{"type": "custom.Bad"}]), "exclusions[0].type", "unknown event type"),
        (good(exclusions=[{"type": "refund", "name": "x"}]), "exclusions[0]", "unknown keys ['name']"),
        (good(steps=[]), "steps", "1 to 32 steps"),
        (good(steps=None), "steps", "1 to 32 steps"),
        (good(steps=[{"type": "signup"}] * 33), "steps", "1 to 32 steps"),
        (good(steps=[{"type": "signup"}, {"type": "signup"}]), "steps", "step names used twice: signup"),
        (good(window="0d"), "window", "must be positive"),
        (good(window="14 days"), "window", "a whole number and a unit"),
        (good(window=14), "window", "a whole number and a unit"),
        (good(window=None), "window", "a whole number and a unit"),
        (good(steps=[{"type": "page_view", "where": {"path": "/x"}}]), "steps[0].where", "bad field path 'path'"),
        (good(steps=[{"type": "page_view", "where": {"event.path": "/x"}}]), "steps[0].where", "bad field path"),
        (good(steps=[{"type": "purchase", "where": {"props.amount": 5}}]), "steps[0].where.props.amount", "a string"),
        (good(steps=[{"type": "purchase", "where": ["props.amount"]}]), "steps[0].where", "a mapping"),
        (good(steps=["signup"]), "steps[0]", "expected a mapping"),
        (good(steps=[{"type": "signup", "name": "Sign Up"}]), "steps[0].name", "snake_case"),
        (good(exclusions={"type": "refund"}), "exclusions", "expected a list"),
    ],
)
def test_a_bad_funnel_is_refused_naming_file_funnel_and_field(
    tmp_path: Path, document: Any, field: str, words: str
) -> None:
    path = tmp_path / "funnels.yaml"
    path.write_bytes(orjson.dumps(document))  # JSON is YAML
    with pytest.raises(FunnelConfigError) as refused:
        load_funnels(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: funnels[0]") and "'f'" in message, message
    assert field in message and words in message, message


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"funnels": [good()["funnels"][0], good()["funnels"][0]]}, "funnels defined twice: f"),
        ({"funnels": [{"name": "Bad Name"}]}, "funnels[0].name: expected a snake_case name"),
        ({"funnel": []}, "expected a mapping with one key, funnels"),
        ([], "expected a mapping with one key, funnels"),
        ({"funnels": ["f"]}, "funnels[0]: expected a mapping"),
    ],
)
def test_a_bad_file_is_refused(tmp_path: Path, document: Any, words: str) -> None:
    path = tmp_path / "funnels.yaml"
    path.write_bytes(orjson.dumps(document))
    with pytest.raises(FunnelConfigError, match=str(path)) as refused:
        load_funnels(path)
    assert words in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FunnelConfigError, match="cannot read the funnel definitions"):
        load_funnels(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("funnels: [\n")
    with pytest.raises(FunnelConfigError, match="bad.yaml"):
        load_funnels(tmp_path / "bad.yaml")
    assert parse_funnels({"funnels": []}) == ()


# --- the state machine --------------------------------------------------------------------


def test_rows_name_the_step_the_attempt_and_the_times() -> None:
    rows = run(job(TRIO), [[event(1, "page_view", 100, path="/pricing"), event(2, "signup", 103),
                            event(3, "purchase", 110)]])  # fmt: skip
    entry = f"{id_hash('e1') & 0xFFFF_FFFF_FFFF_FFFF:016x}"
    assert rows == [
        {"step_id": f"trio|u|1|1|{entry}", "funnel": "trio", "user_id": "u", "attempt": 1, "step_index": 1,
         "step_name": "pricing_page", "ts": 100, "since_previous_s": 0.0, "since_entry_s": 0.0, "event_id": "e1"},
        {"step_id": f"trio|u|1|2|{entry}", "funnel": "trio", "user_id": "u", "attempt": 1, "step_index": 2,
         "step_name": "signup", "ts": 103, "since_previous_s": 0.003, "since_entry_s": 0.003, "event_id": "e2"},
        {"step_id": f"trio|u|1|3|{entry}", "funnel": "trio", "user_id": "u", "attempt": 1, "step_index": 3,
         "step_name": "purchase", "ts": 110, "since_previous_s": 0.007, "since_entry_s": 0.01, "event_id": "e3"},
    ]  # fmt: skip
    assert set(rows[0]) == {column.name for column in FUNNEL_STEPS.columns}


def test_the_window_is_inclusive() -> None:
    at_edge = run(job(TRIO), [[event(1, "page_view", 100, path="/pricing"), event(2, "signup", 110)]])
    past_edge = run(job(TRIO), [[event(1, "page_view", 100, path="/pricing"), event(2, "signup", 111)]])
    assert [r["step_index"] for r in at_edge] == [1, 2]
    assert [r["step_index"] for r in past_edge] == [1]


def test_the_window_counts_from_the_entry_not_the_previous_step() -> None:
    rows = run(job(TRIO), [[event(1, "page_view", 100, path="/pricing"), event(2, "signup", 108),
                            event(3, "purchase", 111)]])  # fmt: skip
    assert [r["step_index"] for r in rows] == [1, 2]


def test_at_the_same_millisecond_the_lower_step_comes_first() -> None:
    """Arrival and id order do not matter: step 2 arrives first and sorts first by id."""
    rows = run(job(TRIO), [[event(2, "signup", 100), event(1, "page_view", 100, path="/pricing"),
                            event(3, "purchase", 100)]])  # fmt: skip
    assert [(r["step_index"], r["event_id"]) for r in rows] == [(1, "e1"), (2, "e2"), (3, "e3")]


def test_one_event_can_be_several_steps() -> None:
    rows = run(job(VIEWS), [[event(1, "page_view", 100, path="/pricing"), event(2, "signup", 105)]])
    assert [(r["step_index"], r["event_id"], r["since_previous_s"]) for r in rows] == [(1, "e1", 0.0), (2, "e1", 0.0),
                                                                                       (3, "e2", 0.005)]  # fmt: skip


def test_a_later_entry_replaces_the_attempt_at_its_level() -> None:
    """windowFunnel keeps the latest chain per level: attempt 1 is stuck once attempt 2 holds level 1."""
    rows = run(job(TRIO), [[event(1, "page_view", 100, path="/pricing"), event(2, "page_view", 104, path="/pricing"),
                            event(3, "signup", 112), event(4, "purchase", 113)]])  # fmt: skip
    assert reached(rows) == [("trio", 1, 1, 100, "e1"), ("trio", 2, 1, 104, "e2"), ("trio", 2, 2, 112, "e3"),
                             ("trio", 2, 3, 113, "e4")]  # fmt: skip


def test_an_attempt_further_on_keeps_its_level_while_a_new_one_enters() -> None:
    rows = run(job(TRIO), [[event(1, "page_view", 100, path="/pricing"), event(2, "signup", 101),
                            event(3, "page_view", 102, path="/pricing"), event(4, "purchase", 105),
                            event(5, "signup", 106)]])  # fmt: skip
    assert reached(rows) == [("trio", 1, 1, 100, "e1"), ("trio", 1, 2, 101, "e2"), ("trio", 1, 3, 105, "e4"),
                             ("trio", 2, 1, 102, "e3"), ("trio", 2, 2, 106, "e5")]  # fmt: skip


def test_a_step_repeated_adds_no_row() -> None:
    rows = run(job(TRIO), [[event(1, "page_view", 100, path="/pricing"), event(2, "signup", 101),
                            event(3, "signup", 102)]])  # fmt: skip
    assert reached(rows) == [("trio", 1, 1, 100, "e1"), ("trio", 1, 2, 101, "e2")]


def test_an_exclusion_between_steps_stops_the_attempt() -> None:
    rows = run(job(GUARDED), [[event(1, "signup", 100), event(2, "purchase", 101), event(3, "refund", 102),
                               event(4, "login", 103)]])  # fmt: skip
    assert reached(rows) == [("guarded", 1, 1, 100, "e1"), ("guarded", 1, 2, 101, "e2")]


def test_an_exclusion_before_the_entry_changes_nothing() -> None:
    rows = run(job(GUARDED), [[event(3, "refund", 99), event(1, "signup", 100), event(2, "purchase", 101)]])
    assert reached(rows) == [("guarded", 1, 1, 100, "e1"), ("guarded", 1, 2, 101, "e2")]


def test_an_exclusion_at_the_same_millisecond_comes_before_the_steps() -> None:
    """It stops the attempt whose next step is stamped then, not one that enters then."""
    blocked = run(job(GUARDED), [[event(1, "signup", 100), event(2, "purchase", 102), event(3, "refund", 102)]])
    assert reached(blocked) == [("guarded", 1, 1, 100, "e1")]
    entered = run(job(GUARDED), [[event(1, "signup", 100), event(3, "refund", 100), event(2, "purchase", 101)]])
    assert reached(entered) == [("guarded", 1, 1, 100, "e1"), ("guarded", 1, 2, 101, "e2")]


def test_an_exclusion_leaves_later_attempts_alone() -> None:
    rows = run(job(GUARDED), [[event(1, "signup", 100), event(2, "refund", 101), event(3, "signup", 102),
                               event(4, "purchase", 103), event(5, "login", 104)]])  # fmt: skip
    assert reached(rows) == [("guarded", 1, 1, 100, "e1"), ("guarded", 2, 1, 102, "e3"), ("guarded", 2, 2, 103, "e4"),
                             ("guarded", 2, 3, 104, "e5")]  # fmt: skip


def test_the_attempt_count_restarts_after_a_long_silence_with_new_ids() -> None:
    """Silence longer than the retention (25 ms here) between the funnel's events, in event time."""
    first = [event(1, "signup", 100), event(2, "signup", 110)]
    soon, late = event(3, "signup", 135), event(4, "signup", 136)  # 25 ms after the last: not longer
    assert [r["attempt"] for r in run(job(SINGLE), [first, [soon]])] == [1, 2, 3]
    restarted = run(job(SINGLE), [first, [late]])
    assert [r["attempt"] for r in restarted] == [1, 2, 1]
    assert len({r["step_id"] for r in restarted}) == 3


def test_the_silence_is_at_least_the_window() -> None:
    """A retention shorter than the window would restart the count under an open attempt."""
    rows = run(job(TRIO, retention=1), [[event(1, "page_view", 100, path="/pricing"),
                                         event(2, "page_view", 105, path="/pricing"), event(3, "signup", 110)]])  # fmt: skip
    assert reached(rows) == [("trio", 1, 1, 100, "e1"), ("trio", 2, 1, 105, "e2"), ("trio", 2, 2, 110, "e3")]


# --- the job's slice ----------------------------------------------------------------------


def test_events_wait_for_the_watermark() -> None:
    funnels = job()
    state = funnels.empty()
    assert funnels.on_events("u", state, [event(1, "feature_used", 100, feature="export")]) == []
    assert funnels.is_empty(state) and funnels.deadline(state) is None
    assert funnels.on_events("u", state, [event(2, "signup", 105), event(3, "page_view", 103, path="/pricing")]) == []
    assert funnels.deadline(state) == 103 and funnels.live(state) == 0
    assert funnels.on_watermark("u", state, 103) == []  # not passed yet
    rows = funnels.on_watermark("u", state, 104)
    assert sorted((r.values["funnel"], r.values["step_index"]) for r in rows) == [
        ("trio", 1),
        ("views", 1),
        ("views", 2),
    ]
    assert {r.output for r in rows} == {FUNNEL_STEPS}
    assert funnels.deadline(state) == 105 and funnels.live(state) == 2
    rows = funnels.on_watermark("u", state, 106)
    assert sorted((r.values["funnel"], r.values["step_index"]) for r in rows) == [("guarded", 1), ("single", 1),
                                                                                ("trio", 2), ("views", 3)]  # fmt: skip
    assert funnels.deadline(state) == 103 + WINDOW  # trio's attempt can still reach its purchase
    assert funnels.live(state) == 2  # trio at 2, guarded at 1
    funnels.on_watermark("u", state, 105 + WINDOW + 1)
    assert funnels.live(state) == 0 and not funnels.is_empty(state)  # the counts outlive the attempts
    assert funnels.deadline(state) == 105 + RETENTION
    funnels.on_watermark("u", state, 105 + RETENTION + 1)
    assert funnels.is_empty(state)


def test_an_attempt_stays_open_until_the_watermark_passes_its_window() -> None:
    """With the watermark at the window's end, an event stamped then is still on time, and still fits."""
    funnels = job(TRIO)
    state = funnels.empty()
    funnels.on_events("u", state, [event(1, "page_view", 100, path="/pricing"), event(2, "signup", 109)])
    funnels.on_watermark("u", state, 100 + WINDOW)
    assert funnels.live(state) == 1 and funnels.deadline(state) == 100 + WINDOW
    funnels.on_events("u", state, [event(3, "purchase", 100 + WINDOW)])
    assert [r.values["step_index"] for r in funnels.on_watermark("u", state, 100 + WINDOW + 1)] == [3]


def test_the_slice_survives_encoding_at_any_point() -> None:
    funnels = job()
    state = funnels.empty()
    funnels.on_events("u", state, [event(1, "page_view", 100, path="/pricing"), event(2, "signup", 101),
                                   event(3, "refund", 102), event(4, "signup", 120)])  # fmt: skip
    funnels.on_watermark("u", state, 110)
    decoded = funnels.decode(funnels.encode(state), funnels.version)
    assert decoded == state
    assert funnels.encode(decoded) == funnels.encode(state)
    assert funnels.current_rows("u", decoded) == funnels.current_rows("u", state)
    assert funnels.on_watermark("u", decoded, 10**6) == funnels.on_watermark("u", state, 10**6)


def test_state_kept_under_another_definition_is_dropped() -> None:
    old = job(TRIO, GUARDED)
    state = old.empty()
    old.on_events("u", state, [event(1, "page_view", 100, path="/pricing"), event(2, "signup", 101)])
    data = old.encode(state)
    renamed_step = Funnel("trio", (PRICING, SIGNUP, FunnelStep("refunded", "refund")), WINDOW)
    assert set(job(renamed_step, GUARDED).decode(data, 1)) == {"guarded"}
    assert set(job(Funnel("trio", (PRICING, SIGNUP, PURCHASE), WINDOW)).decode(data, 1)) == {"trio"}  # equal definition


def test_current_rows_repeat_the_open_attempts() -> None:
    funnels = job(TRIO)
    state = funnels.empty()
    funnels.on_events("u", state, [event(1, "page_view", 100, path="/pricing"), event(2, "signup", 101)])
    published = funnels.on_watermark("u", state, 102)
    assert funnels.current_rows("u", state) == published
    funnels.on_events("u", state, [event(3, "purchase", 103)])
    funnels.on_watermark("u", state, 104)
    assert funnels.current_rows("u", state) == []  # through the last step: nothing held


def test_the_runner_handles_events_already_behind_the_watermark_in_the_same_record(tmp_path: Path) -> None:
    """Steps are published by the record that brings them, once a later event moves the watermark past them."""
    store: dict[bytes, bytes] = {}
    runner = JobRunner(
        load_settings({"PULSE_DATA_DIR": str(tmp_path)}), store, jobs=[job(SINGLE, retention=86_400_000)]
    )
    minute = 60_000
    lines = [{"event_id": "s1", "type": "signup", "user_id": "a", "ts": T0},
             {"event_id": "l1", "type": "login", "user_id": "b", "ts": T0 + 11 * minute}]  # fmt: skip
    out = runner.process(b"\n".join(orjson.dumps(line) for line in lines), "events", 0, 0)
    assert [(r["user_id"], r["event_id"]) for r in out.rows[FUNNEL_STEPS]] == [("a", "s1")]
    store.update({k: v for k, v in out.writes.items() if v is not None})
    quiet = runner.process(orjson.dumps({"event_id": "s2", "type": "signup", "user_id": "a", "ts": T0 + 12 * minute}),
                           "events", 0, 1)  # fmt: skip
    assert FUNNEL_STEPS not in quiet.rows  # on time, not yet passed: it waits


# --- order independence and windowFunnel -------------------------------------------------


def window_funnel(funnel: Funnel, events: Sequence[Event]) -> int:
    """The furthest level, written plainly: for each entry, take the first event that fits each next step.

    Steps of one event are taken as separate (time, step) points sorted by time then step, as
    windowFunnel does; exclusions (step 0) sort first and cut short any attempt they fall in.
    """
    points = sorted(
        [(e.ts, 0) for e in events if any(x.matches(e) for x in funnel.exclusions)]
        + [(e.ts, level) for e in events for level, step in enumerate(funnel.steps, 1) if step.matches(e)]
    )
    best = 0
    for start, (entry_ts, level) in enumerate(points):
        if level != 1:
            continue
        at = 1
        for ts, next_level in points[start + 1 :]:
            if next_level == 0 or ts - entry_ts > funnel.window_ms:
                break
            if next_level == at + 1:
                at += 1
        best = max(best, at)
    return best


TYPES = [("page_view", "/pricing"), ("page_view", "/docs"), ("signup", None), ("purchase", None), ("refund", None),
         ("login", None), ("ticket_opened", None)]  # fmt: skip


@st.composite
def timelines(draw: st.DrawFn) -> tuple[list[Event], list[list[Event]], list[list[Event]]]:
    """Events of two users, often at the same millisecond, and two arrivals each at most LATENESS late, split at random."""
    count = draw(st.integers(1, 30))
    events = []
    for i in range(count):
        type_, path = draw(st.sampled_from(TYPES))
        events.append(event(i, type_, draw(st.integers(0, 80)), draw(st.sampled_from(["a", "b"])), path))

    def arrival() -> list[list[Event]]:
        delays = draw(st.lists(st.integers(0, LATENESS), min_size=count, max_size=count))
        ties = draw(st.permutations(range(count)))
        order = sorted(range(count), key=lambda i: (events[i].ts + delays[i], ties[i]))
        cuts = sorted(set(draw(st.lists(st.integers(1, count), max_size=count))))
        bounds = [0, *cuts, count]
        return [[events[i] for i in order[a:b]] for a, b in pairwise(bounds) if a < b]

    return events, arrival(), arrival()


@settings(max_examples=300, deadline=None)
@given(timelines())
def test_any_arrival_and_packing_gives_the_rows_of_windowfunnel(timeline: tuple) -> None:
    events, first, second = timeline
    funnels = job()
    rows = run(funnels, first)
    assert sorted(rows, key=lambda r: r["step_id"]) == sorted(run(funnels, second), key=lambda r: r["step_id"])
    assert len({r["step_id"] for r in rows}) == len(rows), "one row per step an attempt reached"
    furthest: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        key = (row["funnel"], row["user_id"])
        furthest[key] = max(furthest[key], row["step_index"])
    for funnel in FUNNELS:
        for user in ("a", "b"):
            assert furthest[funnel.name, user] == window_funnel(funnel, [e for e in events if e.user_id == user])
    attempts: dict[tuple[str, str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        attempts[row["funnel"], row["user_id"], row["attempt"], row["step_id"].rsplit("|", 1)[1]].append(row)
    for steps in attempts.values():
        steps.sort(key=lambda r: r["step_index"])
        assert [r["step_index"] for r in steps] == list(range(1, len(steps) + 1))
        assert all(0 <= r["since_entry_s"] * 1000 <= WINDOW for r in steps)
