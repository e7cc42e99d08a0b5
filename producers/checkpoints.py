"""Where a file import got to: the last line Kafka confirmed, kept on disk for ``--resume``.

A checkpoint remembers the file's size and modification time too: resuming a file that
changed since would skip the wrong lines, so it is refused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson

from pulse.errors import PulseError


class CheckpointError(PulseError, RuntimeError):
    """The checkpoint belongs to another version of the file."""


class Checkpoints:
    """One small JSON file per imported file, under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def load(self, path: Path) -> int:
        """The last confirmed line of ``path``, 0 when it was never imported."""
        try:
            saved = orjson.loads(self._file(path).read_bytes())
        except FileNotFoundError:
            return 0
        if saved["fingerprint"] != _fingerprint(path):
            raise CheckpointError(f"{path} changed since its checkpoint (line {saved['line']}); use --start-line")
        return int(saved["line"])

    def save(self, path: Path, line: int) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        record = {"file": str(path.resolve()), "line": line, "fingerprint": _fingerprint(path)}
        temporary = self._file(path).with_suffix(".tmp")
        temporary.write_bytes(orjson.dumps(record))
        temporary.replace(self._file(path))

    def _file(self, path: Path) -> Path:
        return self._directory / f"{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]}.json"


def _fingerprint(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]
