"""The partition of a user's events, computed the way every Kafka client agrees on.

All events of one user must land in one partition so that a stream job sees them in
order and keeps the user's state in one place. Producers batch several users' events
into one record and so choose the partition themselves; they use Kafka's default
partitioner (murmur2 of the key, as the Java client and aiokafka do), so events sent by
any other client keyed by ``user_id`` land in the same partition.
"""

from __future__ import annotations

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 hash (seed 0x9747b28c), as a signed-agnostic unsigned int."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(user_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key ``user_id``."""
    return (murmur2(user_id.encode()) & 0x7FFFFFFF) % partitions
