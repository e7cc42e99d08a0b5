"""``pulse bench`` / ``make bench``: the real pipeline measured next to its ceilings, in one run.

Every figure is taken on the local stack (the project's Kafka broker, the worker, the sink,
embedded ClickHouse) and paired with the ceiling measured in the same run, so the ratios
stay comparable across noisy machines. Nothing here asserts a speed; the report states
what was measured.
"""

from deploy.benchmark.runner import BenchConfig, run_benchmark

__all__ = ["BenchConfig", "run_benchmark"]
