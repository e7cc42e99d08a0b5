"""When the worker says it is stalled: records waiting and none processed, or a commit that stopped moving."""

from __future__ import annotations

from stream_jobs.health import WorkerHealth


def test_idle_is_healthy_and_waiting_records_unprocessed_is_a_stall() -> None:
    health = WorkerHealth(stall_seconds=60, started_at=0)
    health.observe(10, True, committed={0: 5}, highwaters={0: 5})
    assert health.verdict(3_600).alive  # an hour idle without lag
    health.observe(3_600, True, committed={0: 5}, highwaters={0: 9})
    assert health.verdict(3_601).alive  # records just arrived: not stalled yet
    assert not health.verdict(3_661).alive
    health.processed(0, 5, 3_662)
    assert health.verdict(3_662).alive


def test_a_commit_stuck_while_records_after_it_are_processed_is_a_stall() -> None:
    health = WorkerHealth(stall_seconds=60, started_at=0)
    health.observe(0, True, committed={0: 10}, highwaters={0: 100})
    for second in range(1, 100):
        health.processed(0, 10 + second, float(second))  # progress every second
        health.observe(float(second), True, committed={0: 10}, highwaters={0: 200})
    verdict = health.verdict(99)
    assert not verdict.alive and "commit stuck at 10" in verdict.reason
    health.observe(100, True, committed={0: 109}, highwaters={0: 200})
    assert health.verdict(100).alive


def test_revoked_partitions_are_forgotten() -> None:
    health = WorkerHealth(stall_seconds=60, started_at=0)
    health.processed(1, 50, 1)
    health.observe(2, True, committed={0: 3}, highwaters={0: 3})
    assert set(health.partitions) == {0} and health.verdict(500).alive
