"""The soak's pure parts: the plan of a cycle from the seed, and how cycles are reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.soak import KILL_WINDOW, CyclePlan, CycleResult, SoakConfig, SoakError, SoakSummary, plan_cycle
from ops.cli import main


def test_a_plan_depends_on_the_seed_and_the_cycle_alone() -> None:
    config = SoakConfig(seed=7)
    assert [plan_cycle(config, n) for n in range(1, 20)] == [plan_cycle(SoakConfig(seed=7), n) for n in range(1, 20)]
    assert plan_cycle(config, 1) != plan_cycle(config, 2)
    assert [plan_cycle(config, n) for n in range(1, 20)] != [plan_cycle(SoakConfig(seed=8), n) for n in range(1, 20)]


def test_random_kills_draw_every_target_at_one_or_two_moments_of_the_window() -> None:
    config = SoakConfig(seed=3, publish_seconds=8.0)
    plans = [plan_cycle(config, n) for n in range(1, 200)]
    assert {plan.targets for plan in plans} == {("worker",), ("sink",), ("worker", "sink")}
    assert {len(plan.kill_at_s) for plan in plans} == {1, 2}
    for plan in plans:
        assert list(plan.kill_at_s) == sorted(plan.kill_at_s)
        assert all(0 <= at <= KILL_WINDOW * config.publish_seconds for at in plan.kill_at_s)
    assert any(at > config.publish_seconds for plan in plans for at in plan.kill_at_s), "none while catching up"


@pytest.mark.parametrize(
    ("kill", "targets"), [("worker", ("worker",)), ("sink", ("sink",)), ("both", ("worker", "sink"))]
)
def test_a_chosen_target_is_killed_in_every_cycle(kill: str, targets: tuple[str, ...]) -> None:
    plans = [plan_cycle(SoakConfig(kill=kill), n) for n in range(1, 30)]
    assert all(plan.targets == targets and plan.kill_at_s for plan in plans)


def test_no_kills_keep_the_same_simulations() -> None:
    """--kill none runs the very traffic of the killing soak with the same seed, as its control."""
    for n in range(1, 10):
        quiet, killing = plan_cycle(SoakConfig(kill="none"), n), plan_cycle(SoakConfig(kill="worker"), n)
        assert (quiet.targets, quiet.kill_at_s) == ((), ())
        assert quiet.simulation_seed == killing.simulation_seed


@pytest.mark.parametrize(
    "changes",
    [{"kill": "broker"}, {"cycles": 0}, {"customers": 0}, {"days": 0}, {"publish_seconds": 0.0}, {"stall_timeout_s": -1.0}],
)
def test_a_config_it_cannot_run_is_refused(changes: dict[str, object]) -> None:
    with pytest.raises(SoakError):
        SoakConfig(**changes)  # type: ignore[arg-type]


def result(number: int, problems: tuple[str, ...] = (), *, stalled: bool = False) -> CycleResult:
    plan = CyclePlan(number, 1, ("worker", "sink"), (2.0, 9.0))
    return CycleResult(plan, (2.04, 11.5), 31.24, problems, stalled)


def test_a_cycle_line_says_what_was_killed_when_how_long_and_the_verdict() -> None:
    assert result(3).line(30) == "cycle 3/30  killed worker+sink at 2.0s, 11.5s  31.2s  ok"
    failed = result(4, ("events 9 (expected 10): login 9 (expected 10)", "sessions 1 (expected 2)"))
    assert failed.line(30).endswith("31.2s  events 9 (expected 10): login 9 (expected 10); sessions 1 (expected 2)")
    quiet = CycleResult(CyclePlan(5, 1, (), ()), (), 20.0, ())
    assert quiet.line(5) == "cycle 5/5  no kills  20.0s  ok"


def test_the_summary_counts_failures_and_stalls_and_points_at_their_logs() -> None:
    results = (result(1), result(2, ("stalled: ...",), stalled=True), result(3, ("x",)))
    summary = SoakSummary(results, 95.4, Path("/d/failed"))
    assert not summary.ok
    assert summary.lines() == [
        "soak: 1 of 3 cycles ok, 2 failed (1 stalled), 95s",
        "failed cycles: 2, 3; their logs are in /d/failed",
    ]
    passed = SoakSummary((result(1),), 30.0, Path("/d/failed"))
    assert passed.ok and passed.lines() == ["soak: 1 of 1 cycles ok, 0 failed (0 stalled), 30s"]


def test_the_command_names_a_refused_option_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """SoakError is one of our own errors (PulseError): the CLI prints its message without the class name."""
    assert main(["soak", "--kill", "broker"]) == 1
    assert capsys.readouterr().err == "pulse soak: --kill must be one of random, worker, sink, both, none, got 'broker'\n"
