"""State keys name their partition exactly: dropping partition 1 leaves partition 10 alone."""

from stream_jobs.state_keys import clock_key, forgotten_key, keys_of, user_key


def test_the_keys_of_partitions_are_theirs_and_only_theirs() -> None:
    keys = [user_key(1, "a"), user_key(10, "a"), user_key(1, "1|x"), clock_key(1), clock_key(10), forgotten_key(1),
            forgotten_key(12), user_key(2, "b")]  # fmt: skip
    assert keys_of({1}, keys) == [user_key(1, "a"), user_key(1, "1|x"), clock_key(1), forgotten_key(1)]
    assert keys_of({10, 12}, keys) == [user_key(10, "a"), clock_key(10), forgotten_key(12)]
    assert keys_of(set(), keys) == []
