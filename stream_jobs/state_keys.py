"""The keys of the worker's state table; each names the events partition it belongs to.

``u<partition>|<user>`` per user, ``f<partition>`` for the hashes of the ids forgotten there,
``c<partition>`` for the partition's clock. A key is kept in the changelog partition of the
same number, so a worker handed a partition reads exactly these keys back.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable


def user_key(partition: int, user_id: str) -> bytes:
    return f"u{partition}|{user_id}".encode()


def clock_key(partition: int) -> bytes:
    return f"c{partition}".encode()


def forgotten_key(partition: int) -> bytes:
    """The partition's suppression list: the id hashes of the users ``pulse forget`` erased, packed."""
    return f"f{partition}".encode()


def keys_of(partitions: Collection[int], keys: Iterable[bytes]) -> list[bytes]:
    """The keys among ``keys`` that belong to ``partitions``."""
    if not partitions:
        return []
    user_prefixes = tuple(user_key(partition, "") for partition in partitions)
    singles = {make(partition) for partition in partitions for make in (clock_key, forgotten_key)}
    return [key for key in keys if key.startswith(user_prefixes) or key in singles]
