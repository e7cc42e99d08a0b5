"""The batch lag histogram exposes what ``prometheus_client.Histogram`` would for the same observations."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from pulse.lag import LAG_BUCKETS_S, BatchHistogram


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_batches_expose_the_samples_of_a_histogram_observed_event_by_event() -> None:
    rng = random.Random(7)
    now_ms = 1_700_000_000_000.0
    lags_ms = [0, 100, 250, 999, 5000, 86_400_000, 10**9]  # on bounds, between them, past the last
    worker = [[int(now_ms - rng.choice(lags_ms) - rng.random()) for _ in range(50)] for _ in range(3)]
    batches = {"worker": worker, "sink": [[int(now_ms) - 1000, int(now_ms) - 1001]]}  # on a bound, and just past it
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("lag_seconds", "lag", LAG_BUCKETS_S)
    ours.register(batch)
    reference = Histogram("lag_seconds", "lag", ["stage"], buckets=LAG_BUCKETS_S, registry=theirs)
    for stage, stage_batches in batches.items():
        for times in stage_batches:
            batch.observe(stage, times, now_ms)
            for ts in times:
                reference.labels(stage).observe((now_ms - ts) / 1000)
    expected = _samples(theirs)
    got = _samples(ours)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(got[key] - value) <= 1e-6 * max(1.0, abs(value)), key
    assert got[("lag_seconds_bucket", (("le", "1.0"), ("stage", "sink")))] == 1


def test_the_exposition_names_the_buckets_as_a_histogram_does() -> None:
    registry = CollectorRegistry()
    batch = BatchHistogram("lag_seconds", "lag", LAG_BUCKETS_S)
    registry.register(batch)
    batch.observe("sink", [0], 30_000.0)
    text = generate_latest(registry).decode()
    assert 'lag_seconds_bucket{le="30.0",stage="sink"} 1.0' in text
    assert 'lag_seconds_bucket{le="10.0",stage="sink"} 0.0' in text
    assert 'lag_seconds_bucket{le="+Inf",stage="sink"} 1.0' in text
    assert 'lag_seconds_count{stage="sink"} 1.0' in text
    assert 'lag_seconds_sum{stage="sink"} 30.0' in text
