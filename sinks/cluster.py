"""The cluster variant of a migration statement: Replicated tables on every shard, a Distributed table over them.

The migrations are written once, for one node; this derives what a cluster needs from each
statement, so the two variants cannot drift apart:

- ``CREATE TABLE t`` becomes ``t_local`` ``ON CLUSTER``, its ``*MergeTree`` engine the
  ``Replicated*MergeTree`` of the same kind and arguments (its replicas keep the shard's copy
  in Keeper under :data:`SHARDED_PATH`), plus ``t`` itself as a ``Distributed`` table over the
  ``t_local`` tables. Readers and the sink keep using ``t``: nothing else changes name.
- Rows are sharded by ``cityHash64`` of the first ``ORDER BY`` column. ReplacingMergeTree
  folds duplicates (a resent event, a session's versions) only where they meet, on one shard;
  a key from the sorting key puts them together, and for ``user_id`` it also keeps a user's
  timeline and sessions on one shard, so per-user queries ask one shard.
- ``ALTER TABLE t`` alters ``t_local`` on every node, and the Distributed ``t`` too when it
  changes columns, which both must have.
- ``CREATE VIEW`` and ``CREATE DICTIONARY`` get ``ON CLUSTER``: they read the Distributed
  tables by their old names.

Anything else (a materialized view needs a target table per shard, for one) is refused
rather than guessed at.
"""

from __future__ import annotations

import re

from pulse.errors import PulseError

SHARDED_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
EVERYWHERE_PATH = "/clickhouse/tables/all/{database}/{table}"  # one replica set spanning every node
REPLICA = "{replica}"
LOCAL = "_local"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CREATE_TABLE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)(?=\s)")
_CREATE_VIEW = re.compile(r"CREATE (?:OR REPLACE )?VIEW (?:IF NOT EXISTS )?(\w+)(?=\s)")
_CREATE_DICTIONARY = re.compile(r"CREATE (?:OR REPLACE )?DICTIONARY (?:IF NOT EXISTS )?(\w+)(?=\s)")
_ALTER_TABLE = re.compile(r"ALTER TABLE (\w+)\s+(.*)", re.DOTALL)
_COLUMN_COMMAND = re.compile(r"(ADD|DROP|MODIFY|RENAME|COMMENT|CLEAR) COLUMN\b")
_ENGINE = re.compile(r"ENGINE = (\w*)MergeTree\b(?:\(([^)]*)\))?")
_ORDER_BY = re.compile(r"\bORDER BY \(?\s*(\w+)")
_DEDUP_WINDOW = re.compile(r"\bnon_replicated_deduplication_window\b")


class ClusterDDLError(PulseError, ValueError):
    """A statement or a cluster name this module cannot turn into cluster DDL; the message says which."""


def on_cluster(statement: str, cluster: str) -> list[str]:
    """The statements that do on ``cluster`` what ``statement`` does on one node, in order."""
    _check(cluster)
    if match := _CREATE_TABLE.match(statement):
        return _sharded(statement, match, cluster)
    if match := _ALTER_TABLE.match(statement):
        table, commands = match[1], match[2]
        local = f"ALTER TABLE {table}{LOCAL} ON CLUSTER {cluster} {commands}"
        if _COLUMN_COMMAND.match(commands):
            return [local, f"ALTER TABLE {table} ON CLUSTER {cluster} {commands}"]
        return [local]
    if match := _CREATE_VIEW.match(statement) or _CREATE_DICTIONARY.match(statement):
        return [f"{statement[: match.end()]} ON CLUSTER {cluster}{statement[match.end() :]}"]
    raise ClusterDDLError(f"no cluster variant for: {statement.splitlines()[0]} (teach sinks/cluster.py)")


def everywhere(statement: str, cluster: str) -> str:
    """``CREATE TABLE`` as one replicated table holding every row on every node: for small tables read anywhere."""
    _check(cluster)
    match = _CREATE_TABLE.match(statement)
    if not match:
        raise ClusterDDLError(f"not a CREATE TABLE: {statement.splitlines()[0]}")
    return _replicated(statement, match, match[1], cluster, EVERYWHERE_PATH)


def _sharded(statement: str, match: re.Match[str], cluster: str) -> list[str]:
    table = match[1]
    local = _replicated(statement, match, table + LOCAL, cluster, SHARDED_PATH)
    key = _ORDER_BY.search(statement, _engine(statement, table).end())  # the table's, not a projection's
    if not key:
        raise ClusterDDLError(f"{table}: no ORDER BY to derive a sharding key from")
    distributed = (
        f"CREATE TABLE IF NOT EXISTS {table} ON CLUSTER {cluster} AS {table}{LOCAL}\n"
        f"ENGINE = Distributed({cluster}, currentDatabase(), {table}{LOCAL}, cityHash64({key[1]}))"
    )
    return [local, distributed]


def _replicated(statement: str, match: re.Match[str], name: str, cluster: str, path: str) -> str:
    body = statement[match.end() :]
    engine = _engine(body, match[1])
    arguments = ", ".join([f"'{path}'", f"'{REPLICA}'", *([engine[2]] if engine[2] else [])])
    body = f"{body[: engine.start()]}ENGINE = Replicated{engine[1]}MergeTree({arguments}){body[engine.end() :]}"
    return f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {cluster}{_DEDUP_WINDOW.sub('replicated_deduplication_window', body)}"


def _engine(statement: str, table: str) -> re.Match[str]:
    engine = _ENGINE.search(statement)
    if not engine:
        raise ClusterDDLError(f"{table}: only *MergeTree tables have a Replicated variant")
    return engine


def _check(cluster: str) -> None:
    if not _IDENTIFIER.fullmatch(cluster):
        raise ClusterDDLError(f"cluster name {cluster!r}: letters, digits and _ only, as in remote_servers")
