"""Versioned SQL migrations (``sinks/migrations/NNNN_name.sql``), applied once each.

Applied versions are recorded in ``schema_migrations`` with the file's checksum; editing
a migration after it was applied is refused rather than silently diverging. A file may
hold several statements separated by ``;`` at a line end.

The files are written for one node; with a cluster name, every statement is turned into its
cluster variant by :mod:`sinks.cluster` (Replicated tables behind Distributed ones,
``ON CLUSTER``), and the ledger is replicated to every node.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from pulse.errors import PulseError
from sinks.cluster import everywhere, on_cluster

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


class MigrationError(PulseError, RuntimeError):
    """A migration file is malformed, or differs from the one that was applied."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, cluster: str | None = None) -> list[str]:
        """The file's statements, or with ``cluster`` their cluster variants."""
        body = "\n".join(line for line in self.sql.splitlines() if not line.lstrip().startswith("--"))
        single = [part.strip() for part in re.split(r";\s*$", body, flags=re.MULTILINE) if part.strip()]
        return single if cluster is None else [variant for s in single for variant in on_cluster(s, cluster)]


def ledger(cluster: str | None = None) -> str:
    """The DDL of ``schema_migrations``: on a cluster, every node has all of it, so any node knows what ran."""
    return _LEDGER.strip() if cluster is None else everywhere(_LEDGER.strip(), cluster)


def available(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file, in version order."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.fullmatch(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_snake_case.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version in {directory}")
    return found


def script(directory: Path = MIGRATIONS_DIR, cluster: str | None = None) -> str:
    """Every statement :func:`migrate` would run on an empty database, as one SQL script to read or review."""
    parts = [f"-- schema_migrations\n{ledger(cluster)};"]
    for migration in available(directory):
        statements = "\n\n".join(f"{statement};" for statement in migration.statements(cluster))
        parts.append(f"-- {migration.version:04d}_{migration.name}\n{statements}")
    return "\n\n".join(parts) + "\n"


def migrate(client: Client, directory: Path = MIGRATIONS_DIR, cluster: str | None = None) -> list[Migration]:
    """Apply the migrations not yet applied (on every node of ``cluster`` if named); returns them. Idempotent."""
    client.command(ledger(cluster))
    applied = dict(client.query("SELECT version, checksum FROM schema_migrations FINAL").result_rows)
    done: list[Migration] = []
    for migration in available(directory):
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} was changed after it was applied; "
                    "add a new migration instead"
                )
            continue
        for statement in migration.statements(cluster):
            client.command(statement)
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        done.append(migration)
    return done
