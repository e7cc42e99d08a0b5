"""The backlog's steady rate and the worker's CPU over it, from the counter samples the bench reads."""

from __future__ import annotations

import time

from bench.pipeline import _CounterSampler


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
