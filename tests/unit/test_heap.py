"""The worker hands the heap pages it freed back to the system (stream_jobs.heap)."""

from __future__ import annotations

import os

from stream_jobs import heap

MIB = 2**20


def _rss() -> int:
    """This process's resident memory, in bytes."""
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_freed_pages_below_the_top_of_the_heap_go_back_to_the_system() -> None:
    chunks = [bytes(1000) + bytes([index % 256]) for index in range(100_000)]  # ~100 MiB, each chunk from malloc
    pin = bytes(1000) + b"!"  # allocated after them: the top of the heap stays in use
    held = _rss()
    del chunks
    freed = _rss()
    assert held - freed < 10 * MIB  # free() kept the pages: they sit below a chunk still in use
    assert heap.release_freed_memory()
    assert freed - _rss() > 80 * MIB
    assert pin.endswith(b"!")
