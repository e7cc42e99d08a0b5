"""The cache of decoded state holds the most recently written users, oldest written first out."""

from stream_jobs.envelope import Envelope
from stream_jobs.state_cache import StateCache
from stream_jobs.state_keys import user_key


def _put(cache: StateCache, key: bytes, offset: int = 0) -> None:
    cache.put(key, Envelope(applied_offset=offset), {"sessions": offset})


def test_the_oldest_written_user_goes_first_and_a_rewrite_makes_a_user_newest() -> None:
    cache = StateCache(max_users=3)
    for key in (b"a", b"b", b"c"):
        _put(cache, key)
    _put(cache, b"a", offset=7)  # written again: now the newest
    _put(cache, b"d")
    assert len(cache) == 3
    assert cache.get(b"b") is None
    entry = cache.get(b"a")
    assert entry is not None and entry[0].applied_offset == 7 and entry[1] == {"sessions": 7}
    _put(cache, b"e")
    assert cache.get(b"c") is None
    assert [key for key in (b"a", b"d", b"e") if cache.get(key) is not None] == [b"a", b"d", b"e"]


def test_evictions_keep_the_bound_over_many_users() -> None:
    cache = StateCache(max_users=100)
    for n in range(10_000):
        _put(cache, f"user-{n}".encode(), n)
    assert len(cache) == 100
    assert cache.get(b"user-9899") is None
    assert all(cache.get(f"user-{n}".encode()) is not None for n in range(9_900, 10_000))


def test_dropping_a_partition_leaves_the_others() -> None:
    cache = StateCache(max_users=10)
    for key in (user_key(1, "a"), user_key(10, "a"), user_key(1, "b")):
        _put(cache, key)
    cache.drop_prefix(user_key(1, ""))
    assert len(cache) == 1 and cache.get(user_key(10, "a")) is not None
    cache.drop([user_key(10, "a"), b"absent"])
    assert len(cache) == 0
