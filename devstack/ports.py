"""Free TCP ports on loopback, for brokers and services started side by side (tests, benchmark)."""

from __future__ import annotations

import socket


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all sockets are bound at once so the kernel cannot repeat one."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
