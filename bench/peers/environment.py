"""The Python a peer runs on: the project's own, or an environment of the peer's own.

Quix Streams pins confluent-kafka below the version this project runs on: installed beside
the project, it would downgrade the client every stage uses, and the benchmark would no
longer measure the pipeline as it ships. A peer with requirements therefore runs in a
virtual environment of its own under the cache directory, made once (a minute or two) and
reused while its requirements stay the same; its code comes from this checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]  # peers -> bench -> the checkout


def interpreter(name: str, requirements: Sequence[str], cache_dir: Path, log: Callable[[str], None]) -> Path:
    """The Python to run peer ``name`` with; its environment is made first if missing or stale."""
    if not requirements:
        return Path(sys.executable)
    home = cache_dir / "bench-peers" / name
    python, stamp = home / "bin" / "python", home / "requirements.txt"
    wanted = "\n".join(requirements)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    log(f"[peers] making the environment of {name} in {home} (once: {', '.join(requirements)}) ...")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(home)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements],
                   check=True)  # fmt: skip
    stamp.write_text(wanted)
    return python


def environment() -> dict[str, str]:
    """The process environment of a peer: this checkout importable, whichever Python runs it."""
    path = os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def package_version(python: Path, package: str) -> str:
    """The installed version of ``package`` as ``python`` sees it."""
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    return subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout.strip()
