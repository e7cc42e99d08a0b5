"""The benchmark's backlog figures: the steady rate, the worker's CPU over it, and the rows the report makes of them."""

from __future__ import annotations

import time

from bench.pipeline import _CounterSampler
from bench.report import rows


def _sampler(samples: list[tuple[float, float, float | None]]) -> _CounterSampler:
    sampler = _CounterSampler(port=0, started=time.perf_counter())
    sampler.samples = samples
    return sampler


def test_the_steady_span_runs_from_a_tenth_to_nine_tenths_of_the_events() -> None:
    # 1,000 events: 100 at t=1.5 (interpolated between 1 and 2), 900 at t=5.5; CPU 0.8 s a second throughout
    sampler = _sampler([(0.0, 0, 10.0), (1.0, 0, 10.0), (2.0, 200, 10.8), (5.0, 800, 13.2), (6.0, 1000, 14.0)])
    assert sampler.left_zero() == 1.0
    assert sampler.steady_eps() == 800 / (5.5 - 1.5)
    assert abs(sampler.steady_cpu() - 0.8) < 1e-9  # type: ignore[operator]


def test_the_cpu_is_none_without_the_workers_cpu_samples() -> None:
    sampler = _sampler([(0.0, 0, None), (1.0, 500, None), (2.0, 1000, None)])
    assert sampler.steady_eps() == 800 / 1.6
    assert sampler.steady_cpu() is None


def test_no_steady_figures_when_the_samples_miss_the_span() -> None:
    sampler = _sampler([(0.0, 1000, 1.0), (1.0, 1000, 2.0)])  # the backlog was gone before the first sample
    assert sampler.steady_eps() is None and sampler.steady_cpu() is None
    assert _sampler([]).steady_eps() is None


def test_the_report_sets_the_worker_per_core_and_its_jobs_alone_against_the_target() -> None:
    results = {
        "raw_consumer_eps": 1_000_000.0,
        "all_worker_eps": 18_000.0,
        "all_backlog": {"steady_eps": 20_000.0, "steady_cpu": 0.8},
        "jobs_in_process_eps": 30_000.0,
    }
    table = {what: (value, ceiling, ratio) for what, value, ceiling, ratio in rows(results)}
    per_core = table["worker, all jobs, steady, per core (the worker kept 80% of one busy)"]
    assert per_core == ("25,000 events/s", "50,000 (target, per worker process on one core)", "50.0%")
    alone = table["the jobs alone: the worker's runner in process on the same events, no Kafka or Faust"]
    assert alone == ("30,000 events/s", "50,000 (target, per worker process on one core)", "60.0%")
    beside = table["worker, all jobs, next to its jobs alone in process"]
    assert beside == ("18,000 events/s", "30,000 (the jobs alone)", "60.0%")


def test_the_report_leaves_out_the_figures_a_run_did_not_measure() -> None:
    results = {"all_worker_eps": 18_000.0, "all_backlog": {"steady_eps": 20_000.0, "steady_cpu": None}}
    what = [row[0] for row in rows(results)]
    assert what == ["worker, all jobs (+ sessions)", "worker, all jobs, steady (10% to 90% of the backlog)"]
