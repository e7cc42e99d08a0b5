"""The one base of the project's own errors, so a caller can tell ours from a library's."""

from __future__ import annotations


class PulseError(Exception):
    """Something Customer Pulse itself refuses or cannot do; the message says what and why."""
