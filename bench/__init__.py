"""``pulse bench`` / ``make bench``: the real pipeline measured next to its ceilings, in one run.

Every figure is taken on the local stack (the project's Kafka broker, the worker, the sink,
embedded ClickHouse) and paired with the ceiling measured in the same run, so the ratios
stay comparable across noisy machines. Nothing here asserts a speed; the report states
what was measured.

Entry point: :func:`bench.runner.run_benchmark`. This package imports nothing
itself, so a peer of :mod:`bench.peers` runs in an environment of its own with
only its own dependencies.
"""
