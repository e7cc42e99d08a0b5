"""Write keys: the keys file, its re-reading, and each key's token bucket (producers/segment_keys.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from producers.segment_keys import CHECK_EVERY_S, KeyRing, TokenBucket
from pulse.settings import (
    CollectorTuning,
    SettingsError,
    env_write_keys,
    hash_write_key,
    load_settings,
    read_write_keys,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def keys_file(path: Path, *entries: str) -> Path:
    path.write_text("keys:\n" + "".join(f"  - {entry}\n" for entry in entries))
    return path


def entry(name: str, key: str, extra: str = "") -> str:
    return f"{{name: {name}, source: {name}-app, sha256: {hash_write_key(key)}{extra}}}"


def rewrite(path: Path, *entries: str) -> None:
    """Rewrite the file so its stamp changes even within one mtime tick (another size or inode)."""
    fresh = path.with_suffix(".new")
    keys_file(fresh, *entries)
    os.replace(fresh, path)


# --- the token bucket -----------------------------------------------------------------------


def test_a_bucket_lets_a_burst_through_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    assert bucket.take(20, 0.0) == 0.0
    assert bucket.take(5, 0.0) == pytest.approx(0.5)  # 5 tokens at 10 a second
    assert bucket.take(5, 0.5) == 0.0
    assert bucket.take(1, 0.5) == pytest.approx(0.1)


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    assert bucket.take(20, 1_000.0) == 0.0
    assert bucket.take(1, 1_000.0) > 0


def test_a_request_larger_than_the_bucket_passes_when_it_is_full_and_leaves_a_debt() -> None:
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    assert bucket.take(50, 0.0) == 0.0  # -30 left
    assert bucket.take(1, 3.0) == pytest.approx(0.1)  # back to 0 after 3 s, 1 token 0.1 s later
    assert bucket.take(50, 3.0) == pytest.approx(2.0)  # needs the whole bucket: 20 tokens


# --- the key ring -------------------------------------------------------------------------------


def test_without_keys_the_collector_is_open() -> None:
    ring = KeyRing((), None, CollectorTuning())
    assert not ring.required and ring.find("anything") is None


def test_env_keys_and_file_keys_are_found_by_their_hash(tmp_path: Path) -> None:
    path = keys_file(tmp_path / "keys.yaml", entry("web", "w-secret"), entry("ios", "i-secret"))
    ring = KeyRing(env_write_keys(frozenset({"k1"})), path, CollectorTuning())
    assert ring.required
    found = ring.find("w-secret")
    assert found is not None and (found.name, found.source) == ("web", "web-app")
    assert ring.find(" i-secret ").name == "ios"  # type: ignore[union-attr]
    assert ring.find("k1").name == f"env:{hash_write_key('k1')[:8]}"  # type: ignore[union-attr]
    assert ring.find("nope") is None and ring.find(None) is None and ring.find("") is None


def test_a_changed_file_is_re_read_within_a_second(tmp_path: Path) -> None:
    clock = Clock()
    path = keys_file(tmp_path / "keys.yaml", entry("web", "old"))
    ring = KeyRing((), path, CollectorTuning(), clock)
    rewrite(path, entry("web", "old"), entry("web-2", "new"))
    assert ring.find("new") is None  # not looked at yet
    clock.now += CHECK_EVERY_S
    assert ring.find("new") is not None and ring.find("old") is not None
    rewrite(path, entry("web-2", "new"))
    clock.now += CHECK_EVERY_S
    assert ring.find("old") is None and ring.find("new") is not None


def test_a_bad_file_leaves_the_keys_as_they_were(tmp_path: Path) -> None:
    clock = Clock()
    path = keys_file(tmp_path / "keys.yaml", entry("web", "old"))
    ring = KeyRing((), path, CollectorTuning(), clock)
    rewrite(path, "{name: web, source: web, key: old}")
    clock.now += CHECK_EVERY_S
    assert ring.find("old") is not None
    path.unlink()
    clock.now += CHECK_EVERY_S
    assert ring.find("old") is not None
    keys_file(path, entry("web", "fixed"))
    clock.now += CHECK_EVERY_S
    assert ring.find("fixed") is not None and ring.find("old") is None


def test_a_bad_file_at_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        KeyRing((), tmp_path / "missing.yaml", CollectorTuning())


def test_each_key_has_its_own_limit_and_the_default_for_the_rest(tmp_path: Path) -> None:
    clock = Clock()
    path = keys_file(tmp_path / "keys.yaml", entry("web", "w", ", events_per_s: 2, burst: 3"), entry("ios", "i"))
    ring = KeyRing((), path, CollectorTuning(key_events_per_s=100.0, key_burst=100), clock)
    web, ios = ring.find("w"), ring.find("i")
    assert web is not None and ios is not None
    assert ring.admit(web, 3) == 0 and ring.admit(web, 1) == 1  # 0.5 s: Retry-After rounds up
    assert ring.admit(ios, 100) == 0 and ring.admit(ios, 1) == 1
    clock.now += 0.5
    assert ring.admit(web, 1) == 0


def test_no_limit_by_default() -> None:
    ring = KeyRing(env_write_keys(frozenset({"k"})), None, CollectorTuning())
    key = ring.find("k")
    assert key is not None and all(ring.admit(key, 1_000_000) == 0 for _ in range(3))


def test_a_re_read_keeps_what_each_key_has_used(tmp_path: Path) -> None:
    clock = Clock()
    limit = ", events_per_s: 1, burst: 2"
    path = keys_file(tmp_path / "keys.yaml", entry("web", "w", limit))
    ring = KeyRing((), path, CollectorTuning(), clock)
    web = ring.find("w")
    assert web is not None and ring.admit(web, 2) == 0
    rewrite(path, entry("web", "w", limit), entry("ios", "i"))
    clock.now += CHECK_EVERY_S
    assert ring.find("i") is not None  # re-read
    assert ring.admit(web, 2) == 1  # one token back in a second, not a full bucket


# --- the keys file in the settings ------------------------------------------------------------


def test_the_keys_file_is_part_of_the_settings(tmp_path: Path) -> None:
    path = keys_file(tmp_path / "keys.yaml", entry("web", "w"))
    settings = load_settings({"PULSE_DATA_DIR": str(tmp_path), "PULSE_WRITE_KEYS_FILE": str(path)})
    assert settings.write_keys_file == path
    assert load_settings(settings.to_env()) == settings
    assert load_settings({"PULSE_DATA_DIR": str(tmp_path)}).write_keys_file is None


def test_read_write_keys(tmp_path: Path) -> None:
    digest = hash_write_key("w")
    path = tmp_path / "keys.yaml"
    path.write_text(f"keys:\n  - name: web\n    source: website\n    sha256: {digest.upper()}\n    events_per_s: 5\n")
    (key,) = read_write_keys(path)
    assert (key.name, key.source, key.sha256, key.events_per_s, key.burst) == ("web", "website", digest, 5.0, None)
    path.write_text("")
    assert read_write_keys(path) == ()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("- web", "expected a mapping with one list"),
        ("keys: {}", "expected a mapping with one list"),
        ("keys:\n  - web", r"keys\[0\]: expected a mapping"),
        ("keys:\n  - {name: web, source: w, key: plain}", "never the key"),
        ("keys:\n  - {name: web, sha256: " + "a" * 64 + "}", r"keys\[0\]\.source: expected a non-empty string"),
        ("keys:\n  - {name: web, source: w, sha256: abc}", "64 hex digits"),
        ("keys:\n  - {name: web, source: w, sha256: " + "a" * 64 + ", events_per_s: -1}", "events_per_s"),
        ("keys:\n  - {name: web, source: w, sha256: " + "a" * 64 + ", burst: 0}", "burst"),
        ("keys:\n  - {name: web, source: w, sha256: " + "a" * 64 + "}\n  - {name: web, source: w, sha256: "
         + "b" * 64 + "}", "same name"),
        ("keys:\n  - {name: a, source: w, sha256: " + "a" * 64 + "}\n  - {name: b, source: w, sha256: "
         + "a" * 64 + "}", "same sha256"),
    ],
)  # fmt: skip
def test_mistakes_in_the_keys_file_are_named(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=fragment):
        read_write_keys(path)
