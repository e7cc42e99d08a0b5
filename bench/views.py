"""``pulse bench-views`` / ``make bench-views``: every view of the database timed on 10 million events, embedded engine.

The question is whether the views answer in under a second on 10 million events in chdb. How the
run is built, and why:

- **The dataset is one real simulator run, copied inside the engine.** A base of 3,000 customers
  over 30 days (about 114,000 events) is loaded as :mod:`devstack.offline_load` loads it: the
  stream jobs' own rows for ``events``, ``sessions``, ``funnel_steps``, ``churn_scores`` and
  ``churn_alerts``, with default settings (``load_settings({})``), so the environment's tuning
  cannot change the data. It takes about 25 s. Simulating 10 M events and pushing them through the
  jobs in Python would take an hour, while ``INSERT ... SELECT ... FROM seed, numbers(a, n)``
  writes them in a few minutes.
- **Each copy is a new set of customers.** Every ``String`` column named ``*_id`` (``user_id``,
  ``event_id``, ``session_id``, ``step_id``, ``alert_id``, ...) and every ``"*_id"`` string in the
  events' JSON (``order_id`` and ``ticket_id``, a user's own orders and tickets, which views group
  by) gets ``~<copy>`` appended. Timestamps and whatever customers share (campaigns, plans,
  features, channels) stay as they are. So the daily and monthly views see the same days with
  as many times the users, per-user and per-ticket views get as many times the rows, and no copy
  folds into another under ``FINAL`` or ``GROUP BY``. Marketing spend is the ``system`` user's
  and is copied too: spend grows with the customers, as it would.
- **Copies come from a snapshot of the base**, in a database of its own (``bench_views_seed``,
  dropped at the end, so it never shows up in what the views read), in rounds of about a million
  events, with a progress line each. The last copy takes the base's first events in
  ``(user_id, ts, event_id)`` order, cut with ``LIMIT`` so that ``events`` holds exactly the
  target. Its other tables get the rows of those users (the last user is cut short).
- **Tables are merged before anything is timed** (``OPTIMIZE ... FINAL``): the state background
  merges converge to. Right after the inserts the number of parts depends on how far merges got,
  and so would the cost of ``FINAL``. The timings are therefore a best case for the views that read
  with ``FINAL``.
- **Timing** is ``SELECT * FROM <view>`` with ``FORMAT Null``: the engine computes every column
  of every row and ships nothing. Timing ``count()`` alone would let it skip the columns it does
  not need (a ``throwIf`` column is never evaluated). Fetching the rows would time
  clickhouse-connect's decoding too. One warm-up, then the median of ``runs`` timed calls, wall
  time around the call. The rows come from a ``count()`` afterwards, which is not timed.
- **The engine directory** is a temporary one, or ``engine_dir`` to keep it. A directory that
  already holds the dataset for the same target (``bench-views-build.json`` written at the end of
  its build, and the same count in ``events``) is reused without building, after the migrations
  not yet applied: a view tuned in a new migration is then timed on the same data. Any other
  content is refused, never overwritten.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from bench.report import machine
from devstack.offline_load import load_tables
from ops.progress import Progress
from producers.simulator import SimulationConfig, simulate
from pulse.errors import PulseError
from pulse.outputs import PERSON_IDS
from pulse.settings import load_settings
from sinks.clickhouse import connect
from sinks.migrations import migrate

TARGET_EVENTS = 10_000_000
TARGET_S = 1.0  # what every view should answer in
BY_PERSON = "_by_person"  # the suffix of the tables-by-person views (see chosen_views)
ROUND_EVENTS = 1_000_000  # events a replication round writes: one progress line each
SEED = "bench_views_seed"
BUILD_FILE = "bench-views-build.json"
LEDGER = "schema_migrations"  # filled by the migrations, not the base run: never copied
JSON_COLUMNS = ("props", "context")
# A "..._id":"value" pair of JSON text (the value may hold escaped quotes), in re2 syntax, and what it becomes
# (the copy number is appended after the ~).
JSON_ID_PAIR = r'"(\w*_id)":"((?:[^"\\]|\\.)*)"'
JSON_ID_COPY = r'"\1":"\2~'

Log = Callable[[str], None]


class BenchViewsError(PulseError, RuntimeError):
    """The benchmark cannot run as asked: a bad option, or an engine directory holding something else."""


@dataclass(frozen=True)
class BenchViewsConfig:
    """A run: ``events`` in ``engine_dir`` (None: a temporary one), each view (``only``: those) timed ``runs`` times."""

    events: int = TARGET_EVENTS
    out: Path = Path("bench/results")
    engine_dir: Path | None = None
    runs: int = 3
    only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.events < 1 or self.runs < 1:
            raise BenchViewsError(f"--events and --runs must be at least 1 (got {self.events:,} and {self.runs})")


@dataclass(frozen=True)
class Dataset:
    """What was built: ``copies`` whole copies of the base (the base itself is copy 0), then a last, partial
    copy of ``last_copy_events`` events of ``last_copy_users`` users (none when the target is a multiple)."""

    events: int
    build_s: float
    base_customers: int
    base_days: int
    base_seed: int
    base_events: int
    base_users: int
    copies: int
    last_copy_events: int
    last_copy_users: int


@dataclass(frozen=True)
class ViewTiming:
    """One view: each timed run in seconds, their median, its rows; or the error that stopped it."""

    name: str
    runs: list[float]
    rows: int | None
    error: str | None = None

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None

    @property
    def under_1s(self) -> bool:
        return self.median_s is not None and self.median_s < TARGET_S

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "median_s": self.median_s, "runs": self.runs, "rows": self.rows,
                "under_1s": self.under_1s, "error": self.error}  # fmt: skip


def base_config(events: int) -> SimulationConfig:
    """3,000 customers over 30 days for 10 M events (and down to 1.2 M). A smaller target gets a base of
    about a tenth of it, so that it is still copied several times (a unit test runs the same code)."""
    return SimulationConfig(customers=max(50, min(3_000, events // 400)), days=30, seed=42)


def run_views_bench(config: BenchViewsConfig, command: str, log: Log = print) -> dict[str, Any]:
    """Build (or reuse) the dataset, time the views, write ``views.json`` and ``views.md`` to ``config.out``."""
    with engine(config.engine_dir) as (client, directory):
        dataset, reused = prepare(client, directory, config.events, log)
        names = chosen_views(client, config.only)
        timings = [time_view(client, name, config.runs, f"[{i}/{len(names)}]", log) for i, name in enumerate(names, 1)]
        clickhouse = client.command("SELECT version()")
    report = {
        "events": dataset.events,
        "build_s": dataset.build_s,
        "reused_engine": reused,
        "dataset": asdict(dataset),
        "target_s": TARGET_S,
        "runs": config.runs,
        "views": [t.as_dict() for t in sorted(timings, key=_slowest_first)],
        "machine": {**machine(), "clickhouse": clickhouse},
        "command": command,
    }
    write_report(config.out, report)
    return report


# --- the engine and its dataset ----------------------------------------------------------------


@contextmanager
def engine(directory: Path | None) -> Iterator[tuple[Client, Path]]:
    """A chdb client on ``directory`` (None: a temporary one, removed after); closed on leaving, even on error,
    so the process can open another engine next (chdb holds one directory per process)."""
    with ExitStack() as stack:
        path = directory or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-views-")))
        path.mkdir(parents=True, exist_ok=True)
        client = connect(f"chdb://{path.resolve()}")
        stack.callback(client.close)
        yield client, path


def prepare(client: Client, directory: Path, target: int, log: Log) -> tuple[Dataset, bool]:
    """The dataset of ``target`` events in the engine, and whether it was already there."""
    present = _events_present(client)
    if present is None:
        dataset = build(client, target, log)
        (directory / BUILD_FILE).write_bytes(orjson.dumps(asdict(dataset), option=orjson.OPT_INDENT_2))
        return dataset, False
    recorded = _recorded(directory)
    if recorded is None or not recorded.events == present == target:
        built = f"built for {recorded.events:,} events" if recorded else f"no {BUILD_FILE}: not built by this benchmark"
        raise BenchViewsError(f"{directory} holds {present:,} events ({built}), not a dataset of {target:,}: "
                              "delete it or choose another --engine-dir")  # fmt: skip
    applied = migrate(client)
    log(f"reusing the dataset in {directory}: {present:,} events, built in {recorded.build_s:,.0f} s"
        + (f"; migrations applied first: {', '.join(m.name for m in applied)}" if applied else ""))  # fmt: skip
    return recorded, True


def _events_present(client: Client) -> int | None:
    """Rows in ``events``, or None when the engine has no such table (a fresh directory)."""
    if not client.command("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'events'"):
        return None
    return int(client.command("SELECT count() FROM events"))


def _recorded(directory: Path) -> Dataset | None:
    path = directory / BUILD_FILE
    return Dataset(**orjson.loads(path.read_bytes())) if path.exists() else None


def build(client: Client, target: int, log: Log) -> Dataset:
    """Load the base run, copy it until ``events`` holds ``target`` rows, merge; what was built and how long it took."""
    started = time.perf_counter()
    base = base_config(target)
    load_base(client, base, log)
    tables = filled_tables(client)
    for table in tables:  # one version of each row: copies carry no versions for FINAL to fold
        client.command(f"OPTIMIZE TABLE `{table}` FINAL")
    client.command(f"DROP DATABASE IF EXISTS {SEED}")
    client.command(f"CREATE DATABASE {SEED}")
    for table in tables:
        client.command(f"CREATE TABLE {SEED}.`{table}` ENGINE = Memory AS SELECT * FROM `{table}`")
    base_events, base_users = client.query(f"SELECT count(), uniqExact(user_id) FROM {SEED}.events").result_rows[0]
    copies, rest = divmod(target, base_events)
    if copies == 0:
        raise BenchViewsError(f"the base run alone has {base_events:,} events, more than the {target:,} asked for")
    log(f"replicating {len(tables)} tables ({', '.join(tables)}): {copies - 1} copies of {base_events:,} events "
        f"and {base_users:,} users" + (f", then {rest:,} events of one more" if rest else ""))  # fmt: skip
    copy_whole(client, tables, base_events, copies)
    last_users = copy_last(client, tables, copies, rest) if rest else 0
    client.command(f"DROP DATABASE {SEED}")
    merge(client, tables, log)
    events = int(client.command("SELECT count() FROM events"))
    if events != target:
        raise BenchViewsError(f"built {events:,} events instead of {target:,}")
    build_s = time.perf_counter() - started
    log(f"dataset built: {events:,} events in {build_s:,.0f} s")
    return Dataset(events, round(build_s, 1), base.customers, base.days, base.seed, base_events, base_users, copies,
                   rest, last_users)  # fmt: skip


def load_base(client: Client, base: SimulationConfig, log: Log) -> None:
    """The simulator run loaded as the offline loader loads it (the jobs' rows, default settings)."""
    log(f"base: simulating {base.customers:,} customers over {base.days} days (seed {base.seed}) and running the jobs")
    started = time.perf_counter()
    simulation = simulate(base)
    counts = load_tables(client, load_settings({}), simulation.lines(), simulation.truth.config.end_ms)
    rows = ", ".join(f"{table} {n:,}" for table, n in sorted(counts.items()))
    log(f"base: loaded in {time.perf_counter() - started:,.0f} s (rows written: {rows})")


def filled_tables(client: Client) -> list[str]:
    """The tables the base run put rows in, ``events`` first (the others follow its copies)."""
    return client.query(f"""
        SELECT name FROM system.tables
        WHERE database = currentDatabase() AND engine LIKE '%MergeTree' AND total_rows > 0 AND name != '{LEDGER}'
        ORDER BY name != 'events', name
    """).result_columns[0]  # fmt: skip


def copy_whole(client: Client, tables: list[str], base_events: int, copies: int) -> None:
    """Copies 1 .. ``copies`` - 1 of every table, in rounds of about :data:`ROUND_EVENTS` events."""
    progress = Progress("replicate", copies * base_events, " events")
    per_round = max(1, ROUND_EVENTS // base_events)
    for first in range(1, copies, per_round):
        count = min(per_round, copies - first)
        for table in tables:
            insert_copies(client, table, f"{SEED}.`{table}`", first, count)
        progress.update((first + count) * base_events, force=True)
    progress.close(copies * base_events)


def copy_last(client: Client, tables: list[str], copy: int, events: int) -> int:
    """Copy number ``copy`` of the base's first ``events`` events (by user, then time), and of its other tables the
    rows of those users; how many users that is."""
    first_events = f"SELECT * FROM {SEED}.events ORDER BY user_id, ts, event_id LIMIT {events}"
    users = f"SELECT user_id FROM ({first_events})"
    for table in tables:
        key = "id" if table == PERSON_IDS.table else "user_id"  # person_ids maps every id, users' included
        source = f"({first_events})" if table == "events" else f"(SELECT * FROM {SEED}.`{table}` WHERE {key} IN ({users}))"
        insert_copies(client, table, source, copy, 1)
    return int(client.command(f"SELECT uniqExact(user_id) FROM ({first_events})"))


def insert_copies(client: Client, table: str, source: str, first: int, count: int) -> None:
    """Insert copies ``first`` .. ``first + count - 1`` of ``source``'s rows into ``table``, ids made the copy's own."""
    columns = client.query(f"""
        SELECT name, type FROM system.columns
        WHERE database = '{SEED}' AND table = '{table}' AND default_kind != 'ALIAS' ORDER BY position
    """).result_rows  # fmt: skip
    names = ", ".join(f"`{name}`" for name, _ in columns)
    values = ", ".join(copied(name, kind) for name, kind in columns)
    client.command(
        f"INSERT INTO `{table}` ({names}) SELECT {values} FROM {source} AS base, numbers({first}, {count}) AS copy"
    )


def copied(column: str, kind: str) -> str:
    """The expression of ``column`` in a copy: ids suffixed with ``~<copy>``, JSON ids likewise, the rest unchanged.

    No alias: ``INSERT ... SELECT`` matches columns by position.
    """
    quoted, suffix = f"`{column}`", "toString(copy.number)"
    if kind == "String" and (column == "id" or column.endswith("_id")):
        return f"concat({quoted}, '~', {suffix})"
    if column in JSON_COLUMNS:
        rewrite = (
            f"replaceRegexpAll({quoted}, {_literal(JSON_ID_PAIR)}, concat({_literal(JSON_ID_COPY)}, {suffix}, '\"'))"
        )
        return f"if(position({quoted}, '_id\":\"') = 0, {quoted}, {rewrite})"
    return quoted


def _literal(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def merge(client: Client, tables: list[str], log: Log) -> None:
    """Merge every table to one part per partition, so each run times the same state (see the module's docstring)."""
    for table in tables:
        started = time.perf_counter()
        client.command(f"OPTIMIZE TABLE `{table}` FINAL")
        log(f"merged {table} in {time.perf_counter() - started:,.1f} s")


# --- the views ----------------------------------------------------------------------------------


def chosen_views(client: Client, only: tuple[str, ...]) -> list[str]:
    """Every view of the database but the tables by person, or those of ``only`` (each must be one).

    ``events_by_person`` and the like (migration 0021) are tables read with ``user_id`` resolved
    to the person, for the KPI views to read from: their ``SELECT *`` is a full read of the table,
    timed as part of every view that reads them, not a figure anyone queries.
    """
    views = client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine = 'View' "
        f"AND NOT endsWith(name, '{BY_PERSON}') ORDER BY name"
    ).result_columns[0]  # fmt: skip
    if unknown := sorted(set(only) - set(views)):
        raise BenchViewsError(f"no such view: {', '.join(unknown)} (the views: {', '.join(views)})")
    return [view for view in views if view in only] if only else views


def time_view(client: Client, name: str, runs: int, position: str, log: Log) -> ViewTiming:
    """A warm-up, then ``runs`` timed runs of the whole view computed and not shipped, then its row count.
    A view that fails is reported with its error, not skipped."""
    select = f"SELECT * FROM `{name}`"
    try:
        client.raw_query(select, fmt="Null")
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            client.raw_query(select, fmt="Null")
            times.append(round(time.perf_counter() - started, 4))
        timing = ViewTiming(name, times, int(client.command(f"SELECT count() FROM `{name}`")))
    except DatabaseError as exc:
        timing = ViewTiming(name, [], None, str(exc).splitlines()[0])
    log(f"{position} {name}: {_outcome(timing)}")
    return timing


def _outcome(timing: ViewTiming) -> str:
    if timing.median_s is None:
        return f"FAILED: {timing.error}"
    runs = ", ".join(f"{s:.3f}" for s in timing.runs)
    return f"{timing.median_s:.3f} s median ({runs}), {timing.rows:,} rows: {verdict(timing.median_s, TARGET_S)}"


def verdict(median_s: float, target_s: float) -> str:
    """``under 1 s``, or ``over 1 s (3.2x)``: how many times the target it took."""
    return f"under {target_s:g} s" if median_s < target_s else f"over {target_s:g} s ({median_s / target_s:.1f}x)"


def _slowest_first(timing: ViewTiming) -> tuple[bool, float, str]:
    """Failed views first, then by median, slowest first."""
    return timing.median_s is not None, -(timing.median_s or 0.0), timing.name


# --- the report ---------------------------------------------------------------------------------


def write_report(out: Path, report: dict[str, Any]) -> None:
    """``views.json`` and ``views.md`` in ``out``; nothing else there is touched."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "views.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (out / "views.md").write_text(markdown(report), encoding="utf-8")


def markdown(report: dict[str, Any]) -> str:
    """The report as a table of the views, slowest first, each with its verdict against the target."""
    views, target = report["views"], report["target_s"]
    under = sum(view["under_1s"] for view in views)
    lines = [
        f"# Views on {report['events']:,} events, embedded engine",
        "",
        f"**{under} of {len(views)} views answer in under {target:g} s.** {_method(report)}",
        "",
        _data(report),
        "",
        "| view | median | runs (s) | rows | verdict |",
        "|---|---:|---|---:|---|",
        *(_row(view, target) for view in views),
        "",
        _machine(report),
    ]
    return "\n".join(lines) + "\n"


def _method(report: dict[str, Any]) -> str:
    return (
        "Each view is timed as `SELECT * FROM <view> FORMAT Null` (every column of every row computed, none "
        f"shipped): one warm-up, then the median of {report['runs']} runs, wall time around the call."
    )


def _data(report: dict[str, Any]) -> str:
    data = report["dataset"]
    last = ""
    if data["last_copy_events"]:
        last = f", then a last copy of {data['last_copy_events']:,} events of {data['last_copy_users']:,} users"
    reused = " (engine directory reused)" if report["reused_engine"] else ""
    return (
        f"Data: a simulation of {data['base_customers']:,} customers over {data['base_days']} days (seed "
        f"{data['base_seed']}: {data['base_events']:,} events of {data['base_users']:,} users, loaded as the offline "
        f"loader does) copied into {data['copies']} sets of users{last}; tables merged before timing. Built in "
        f"{report['build_s']:,.0f} s{reused}."
    )


def _machine(report: dict[str, Any]) -> str:
    found = report["machine"]
    return (
        f"Machine: {found['cores']} cores, ClickHouse {found['clickhouse']} (chdb {found['packages']['chdb']}), "
        f"Python {found['python']}. Command: `{report['command']}`."
    )


def _row(view: dict[str, Any], target: float) -> str:
    if view["median_s"] is None:
        return f"| `{view['name']}` | - | - | - | **failed**: {view['error']} |"
    runs = ", ".join(f"{s:.3f}" for s in view["runs"])
    shown = verdict(view["median_s"], target)
    shown = shown if view["under_1s"] else f"**{shown}**"
    return f"| `{view['name']}` | {view['median_s']:.3f} s | {runs} | {view['rows']:,} | {shown} |"
