#!/usr/bin/env python3
"""Container health check of the Customer Pulse image: GET /healthz of the role PID 1 runs.

The image runs one role per container (``pulse worker``, ``pulse sink``, ``pulse collect``);
the role and its port come from PID 1's command line and the same environment variables the
process reads. The one-shot roles (``migrate``, ``topics``) serve nothing and count as healthy.
Exit 0 when healthy, 1 otherwise (Docker's HEALTHCHECK convention). Standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

PORTS = {  # role -> (environment variable, default port) of its /healthz
    "worker": ("PULSE_WORKER_METRICS_PORT", 9464),
    "sink": ("PULSE_SINK_PORT", 8124),
    "collect": ("PULSE_COLLECTOR_PORT", 8088),
}


def role(cmdline: list[str]) -> str | None:
    """The pulse subcommand in a command line such as ``python /opt/pulse/bin/pulse --debug sink``."""
    for arg in cmdline[1:]:
        if not arg.startswith("-") and "/" not in arg:
            return arg
    return None


def main() -> int:
    try:
        cmdline = [part.decode() for part in Path("/proc/1/cmdline").read_bytes().split(b"\0") if part]
    except OSError as exc:
        print(f"cannot read PID 1's command line: {exc}")
        return 1
    current = role(cmdline)
    if current not in PORTS:
        return 0  # one-shot role, or --help: nothing to probe
    variable, default = PORTS[current]
    port = int(os.environ.get(variable) or default)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4) as answer:
            return 0 if answer.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{current} /healthz on port {port}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
