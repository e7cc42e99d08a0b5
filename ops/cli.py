"""``pulse``: the command line of Customer Pulse.

Every command reads its settings from the environment (see ``pulse --help`` and the
README): ``KAFKA_BOOTSTRAP``, ``CLICKHOUSE_DSN``, ``PULSE_DATA_DIR`` and friends.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

import orjson

from pulse.errors import PulseError
from pulse.settings import Settings, SettingsError, load_settings

ENVIRONMENT_HELP = """\
environment:
  KAFKA_BOOTSTRAP        Kafka bootstrap servers; unset = the project's local broker
  PULSE_KAFKA_PORT       local broker port (default 9092; controller: PULSE_KAFKA_CONTROLLER_PORT, 9093)
  CLICKHOUSE_DSN         chdb:///path (embedded, default <data dir>/clickhouse) or http://user:pass@host:8123/db
  PULSE_DATA_DIR         data, pid files and logs (default ./.pulse)
  PULSE_CACHE_DIR        downloaded Kafka jars (default ~/.cache/customer-pulse)
  PULSE_TOPIC_PREFIX     prefix of every topic name (default "pulse.")
  PULSE_PARTITIONS       partitions per topic (default 4); PULSE_REPLICATION_FACTOR (default 1)
  PULSE_APP_ID           Faust app id and consumer-group prefix (default customer-pulse)
  PULSE_WORKER_METRICS_PORT  worker /metrics port (default 9464)
  PULSE_STATE_STORE      worker table store: memory:// (default; keeps what a rebalance leaves in place)
                         or rocksdb:// (needs rocksdict; state on disk)
  PULSE_SINK_PORT        sink port for /query, /healthz, /metrics and ClickHouse's HTTP interface (default 8124)
  PULSE_READER_USER      login of the sink's ClickHouse HTTP interface (default pulse; PULSE_READER_PASSWORD, pulse)
  PULSE_COLLECTOR_PORT   HTTP collector port (default 8088)
  PULSE_BIND_HOST        address the collector, worker and sink listen on (default 127.0.0.1; 0.0.0.0 in containers)
  PULSE_WRITE_KEYS       comma-separated write keys the collector accepts (unset: no auth)
  PULSE_WRITE_KEYS_FILE  YAML of hashed write keys with names, sources and rate limits (see pulse hash-write-key)
  PULSE_CONFIG           YAML file with tuning sections: producer, dedup, sink, validation, collector
"""

CLV_HELP = """\
Predict what each customer will buy: BG/NBD for how many purchase days are to come (and the
probability the customer is still "alive"), Gamma-Gamma for what a purchase day is worth,
fitted by maximum likelihood on the purchase events in ClickHouse up to --until.

Per customer, purchases are summed per UTC day: frequency = days with a purchase after the
first; recency = first to last purchase day; age (T) = first purchase day to --until;
monetary = mean value of the repeat purchase days; times in --unit. Prints the fitted
parameters and log-likelihoods as JSON on stdout (progress on stderr) and sends each
customer's expected purchases over --horizon, probability alive, expected value of a
purchase day and CLV (their product) through the sink to the table clv_predictions
(one row per customer and --until; a refit of the same date replaces it). Needs the
pipeline running (pulse up). Exits 1 when there is too little history to fit.
"""

REPORT_HELP = """\
Print the KPIs of a period, read from the kpi_* views (docs/metrics.md):

  acquisition   visits, signups, new customers, marketing spend, CAC (spend / new customers)
  activation    onboarding completion % (onboarded / signups), trial-to-paid % (of the trials)
  engagement    DAU (mean of the days), MAU (30 days up to --to), stickiness (DAU / MAU), bounce %
  revenue       revenue (net of refunds), orders, average order value
  retention     users who churned in the period; churn risk tiers now (latest score per user)
  satisfaction  NPS (-100..100), CSAT %, CES (mean score)
  support       tickets opened, median first response of the period's tickets

The period is --from .. --to, UTC days, both included. Rates are recomputed from the summed
numerators and denominators of the period's days, never averaged over days. Default: the 30
days up to the newest event's day; --from alone runs to the newest day, --to alone covers the 30
days up to it.

Prints an aligned table; --json prints the same figures plus the chart series as JSON with stable
keys (period, acquisition, activation, engagement, revenue, retention, satisfaction, support,
charts); --html FILE also writes one self-contained HTML page (inline SVG, no network needed)
with charts: daily actives, NPS trend, funnel steps, weekly retention cohort heat map, churn
tiers. With the embedded engine the queries go to the running sink (pulse up).

examples: pulse report
          pulse report --from 2025-11-01 --to 2025-11-30 --json | jq .revenue
          pulse report --html report.html
"""

SOAK_HELP = """\
Check that killing the worker or the sink never changes the results, many times over.

Each cycle runs a fresh pipeline of its own (topic prefix, consumer groups, data directory,
ports, embedded ClickHouse) on one broker for the whole soak: a local one of the soak's own on
free ports, or KAFKA_BOOTSTRAP. A cycle
  1. starts the stack (`pulse up`) and publishes a simulation with late, resent and malformed
     lines, spread over --publish-seconds;
  2. SIGKILLs the worker, the sink or both (--kill) at one or two moments of that window (a
     few just after it) and restarts them with `pulse up`;
  3. waits until the worker's and the sink's consumer groups caught up; a group still behind
     after --stall-timeout makes the cycle fail as "stalled", naming the group and its lag;
  4. compares events by type, dead letters by reason and sessions row for row with the
     simulation's ground truth, then stops the stack and deletes the cycle's topics and data.

One line per cycle says what was killed and when, the seconds it took, and "ok" or what
differed; a summary follows. Kills and simulations come from --seed, so the same command
replays the same cycles. Logs of failed cycles are kept in <data dir>/soak/failed.
Exit status 1 if any cycle failed. With the defaults a cycle takes about half a minute.
Tuning (PULSE_CONFIG), PULSE_PARTITIONS and PULSE_STATE_STORE apply to every cycle; topic
prefix, app id, ports and ClickHouse are each cycle's own.

example: pulse soak --cycles 5 --kill worker
"""

STATUS_HELP = """\
Show every stage of the pipeline at a glance, one row each: the Kafka broker, the collector, the
worker and its extra workers (worker-2, ...), the sink.

  STATE     up; starting (a worker joining its group or restoring state: /readyz answers 503);
            stalled (/healthz answers 503, NOTE says why); down (its status page does not answer)
  PID       from the pid file `pulse up` wrote ("-" when it did not start it, or it is gone)
  LAG       records its consumer group has not committed yet, on the partitions it holds
  EVENTS/S  events a second between the last two reads of its counters: put into Kafka
            (collector), read from the events topic (worker), made queryable (sink)
  EVENTS    the same counter since the process started

Below the table: the whole lag of the worker's and the sink's consumer groups, the
event-to-queryable latency p50/p99 (the sink's pulse_event_lag_seconds), dead letters by reason
and open sessions, as the stages counted them since they started (the dead letters `pulse
produce` writes are not counted). Stages are found on their configured ports
(PULSE_COLLECTOR_PORT, PULSE_WORKER_METRICS_PORT, PULSE_SINK_PORT), so this works for stages
next to an external broker (KAFKA_BOOTSTRAP) too.

`pulse status` reads the counters twice, a second apart. Exit status 0 when every stage is up,
1 otherwise.
"""

ALERTS_HELP = """\
Churn alerts for the services that act on them. The churn-risk job publishes one JSON object per
alert (the contract: pulse/schemas/churn_alert.schema.json; fields alert_id, user_id, old_tier,
new_tier, score, reasons, ts, emitted_at) to the topic <PULSE_TOPIC_PREFIX>alerts, as NDJSON.

  pulse alerts tail [--from-beginning] [--json]      print alerts as they arrive, until Ctrl-C
  pulse alerts webhook URL --secret whsec_...        POST each alert to URL (Standard Webhooks)

See `pulse alerts tail --help` and `pulse alerts webhook --help`.
"""

WEBHOOK_HELP = """\
POST every churn alert to URL as a Standard Webhook (https://www.standardwebhooks.com): the body is
the alert's JSON as published, with the headers
  webhook-id         the alert_id: the same for every attempt and every replay; use it to drop copies
  webhook-timestamp  unix seconds of this attempt
  webhook-signature  v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}"> keyed with the
                     secret's bytes (base64 after whsec_); one per --secret, space-separated
Any Standard Webhooks library verifies them (e.g. Python's standardwebhooks: Webhook(secret).verify).

A 2xx answer delivers the alert. Anything else is retried with exponential back-off (--retry-delay,
doubling, at most --max-retry-delay, with jitter; a Retry-After is honoured), --attempts times in
all, except a 4xx other than 408 and 429, which is final. An alert not delivered goes to the
dead-letter topic with reason webhook_undeliverable, its last status or error and answer body in
the errors (a line that is not an alert with a usable alert_id: webhook_unsendable).

Alerts are read by the consumer group --group, one at a time and in order per partition, and the
group's position is committed after each alert is delivered or dead-lettered, so a restart resumes
at the first alert not settled and a delivered alert is not sent again (unless the forwarder died
between the answer and the commit: delivery is at least once, hence webhook-id). Run several with
the same --group to share the partitions. A new group starts at the oldest alert still kept (7 days)
or, with --start-at latest, at new ones. Prints a line per alert delivered, retried or
dead-lettered; SIGTERM or Ctrl-C stops after the alert in flight (Ctrl-C twice: at once).

metrics (--metrics-port): pulse_webhook_deliveries_total{outcome="delivered|retried|dead_lettered"},
pulse_webhook_in_flight, pulse_dependency_up{process="alerts-webhook",dependency="kafka"}.

example: PULSE_WEBHOOK_SECRET=whsec_... pulse alerts webhook https://crm.example.com/hooks/churn --metrics-port 9470
new secret: python -c "import base64,os; print('whsec_' + base64.b64encode(os.urandom(32)).decode())"
"""

BENCH_VIEWS_HELP = """\
Answer "do the views answer in under a second on 10 million events in the embedded engine?".

Builds a dataset of --events events in an embedded ClickHouse (chdb): a simulation of 3,000
customers over 30 days (about 114,000 events) loaded as the offline loader does (events, sessions,
funnel steps, churn scores and alerts, default settings), whose rows are then copied inside the
engine, each copy a new set of customers (every *_id suffixed ~1, ~2, ..., order and ticket ids in
the JSON too; timestamps unchanged, so the same days see more users), until events holds exactly
--events rows; then the tables are merged (OPTIMIZE FINAL). A few minutes for 10 million on 2 cores.

Then times every view of the database (system.tables, engine View), or those of --only:
SELECT * FROM <view> FORMAT Null, which computes every column of every row and ships none; one
warm-up, then the median of --runs runs, wall time around the call; then its rows are counted.
A view that fails is reported as failed, not skipped.

Writes views.json (keys: events, build_s, reused_engine, dataset, target_s, runs, views (each:
name, median_s, runs, rows, under_1s, error), machine, command) and views.md (the views slowest
first, each against the 1 s target) to --out; no other file there is touched. Progress is printed
as it goes. Exit status 1 if a view failed, else 0: a slow view is a finding, not a failure.

The engine lives in a temporary directory, removed afterwards, unless --engine-dir keeps it. A
directory that already holds this benchmark's dataset of --events events is reused without a build
(migrations not yet applied are applied first, so a view tuned in a new migration is timed on the
same data); a directory holding anything else is refused, never overwritten. One process holds an
embedded engine: not the directory of a running sink (pulse up).

examples: pulse bench-views
          pulse bench-views --engine-dir /tmp/views-engine --only kpi_engagement_daily,kpi_conversions
"""

Handler = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        return args.handler(args, settings)
    except SettingsError as exc:
        print(f"pulse: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a CLI user wants the message, not a traceback
        if logging.getLogger().isEnabledFor(logging.DEBUG) or getattr(args, "debug", False):
            raise
        # our own errors say what and why; a library's needs its class name to make sense
        what = str(exc) if isinstance(exc, PulseError) else f"{type(exc).__name__}: {exc}"
        print(f"pulse {args.command}: {what}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pulse",
        description="Customer Pulse: real-time customer analytics on Kafka, Faust and ClickHouse.",
        epilog=ENVIRONMENT_HELP + "\nquick start: pulse up; pulse produce events.jsonl; pulse query 'SELECT count() FROM events FINAL'; pulse down",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, summary: str, description: str = "") -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=summary, description=description or summary, epilog=ENVIRONMENT_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        sub.set_defaults(handler=handler)
        return sub

    kafka = command("kafka", _kafka, "run the project's local Kafka broker (3.9.1, KRaft, 127.0.0.1)",
                    "Start, stop or inspect the local single-node Kafka broker. Jars come from Maven Central on "
                    "first start and are cached in PULSE_CACHE_DIR; data lives in <data dir>/kafka. "
                    "Not needed when KAFKA_BOOTSTRAP points at another cluster.")  # fmt: skip
    kafka.add_argument(
        "action", choices=["fetch", "start", "stop", "status"],
        help="fetch (resolve the jars only), start (waits until it answers), stop (only the broker we started), status",
    )  # fmt: skip
    topics = command("topics", _topics, "make the Kafka topics match the topic spec, or report where they differ",
                     "Compare every topic of the pipeline (events, outputs, dead letters and the worker's Faust "
                     "topics) with the topic spec, deploy/kafka/topics.yaml: partitions (default PULSE_PARTITIONS), "
                     "replication (PULSE_REPLICATION_FACTOR), cleanup policy, retention, min.insync.replicas and "
                     "any other config it names; print each difference and what was done about it. apply (the "
                     "default) creates missing topics, adds partitions where the spec wants more, sets configs "
                     "that differ and removes topic overrides the spec does not name. It never lowers partitions "
                     "or changes replication, and adds none to the events topic or the worker's state changelog "
                     "without --allow-repartition. diff (or apply --dry-run) changes nothing. Exit status 1 if "
                     "drift is left (always, for diff with differences).")  # fmt: skip
    topics.add_argument("action", nargs="?", choices=["apply", "diff"], default="apply",
                        help="apply (default): make the broker match; diff: only report")  # fmt: skip
    topics.add_argument("--dry-run", action="store_true", help="report what apply would change; change nothing")
    topics.add_argument("--allow-repartition", action="store_true",
                        help="add partitions to the events topic and the state changelog too. Users hash to "
                             "partitions and the worker's state follows them: with more partitions many users' new "
                             "events land where their state (open sessions, seen event ids, first touch) is not, "
                             "and those users start over. Only once the worker drained the events topic and that "
                             "loss is accepted")  # fmt: skip
    topics.add_argument("--spec", type=Path, metavar="FILE",
                        help="topic spec to apply (default: deploy/kafka/topics.yaml, shipped with the package)")  # fmt: skip
    migrate = command("migrate", _migrate, "apply pending ClickHouse migrations (idempotent)",
                      "Apply sinks/migrations/*.sql not yet recorded in schema_migrations. With the embedded "
                      "engine, the sink holds the database while it runs (it migrates on start), so stop it first. "
                      "With --cluster NAME (a cluster of the server's remote_servers, CLICKHOUSE_DSN a node of it) "
                      "every statement runs ON CLUSTER: each table becomes <table>_local, a Replicated*MergeTree "
                      "on every shard (Keeper path /clickhouse/tables/{shard}/{database}/{table}, replica "
                      "{replica}: both macros must be set on each node), and <table> a Distributed table over them "
                      "sharded by cityHash64 of the first ORDER BY column; schema_migrations is replicated to "
                      "every node. See docs/clickhouse-cluster.md. "
                      "example: pulse migrate --cluster pulse --print")  # fmt: skip
    migrate.add_argument("--cluster", metavar="NAME", help="migrate a cluster: Replicated and Distributed tables, ON CLUSTER")
    migrate.add_argument("--print", action="store_true",
                         help="print every statement (of the single-node variant, or with --cluster the cluster "
                              "variant) instead of running anything; needs no ClickHouse")  # fmt: skip
    forget = command("forget", _forget, "erase a person everywhere (GDPR/CCPA): state, every table, dead letters",
                     "Erase the person ID belongs to (the id, the person it was merged into, every id merged into "
                     "that person, as person_ids maps them): the worker erases their state and keeps a hash of each "
                     "id on a suppression list, so their events are dropped if they come again or the events topic "
                     "is replayed; then, once the worker and the sink caught up, their rows are deleted from every "
                     "ClickHouse table (dead letters that name them too) and an audit row without personal data is "
                     "written to the erasures table. Prints what was removed. Needs the pipeline running (pulse up). "
                     "example: pulse forget u000123 --reference GDPR-2026-0042")  # fmt: skip
    forget.add_argument("id", metavar="ID", help="any id of the person: user id or anonymous id")
    forget.add_argument("--reference", default="", help="the request's reference for the audit row (a ticket number)")
    forget.add_argument("--timeout", type=float, default=300.0, metavar="S",
                        help="seconds to wait for the pipeline to catch up (default 300)")  # fmt: skip
    forget.add_argument("--cluster", metavar="NAME",
                        help="the ClickHouse cluster the tables live on (see pulse migrate --cluster)")  # fmt: skip
    hash_key = command("hash-write-key", _hash_write_key, "print the SHA-256 of a write key, for PULSE_WRITE_KEYS_FILE",
                       "Print the hash under which a write key goes into the keys file (docs/segment.md#write-keys, "
                       "deploy/write-keys.example.yaml): the file holds hashes only. Reads the key from standard input "
                       "when none is given, so it stays out of the shell's history. "
                       "example: printf %s \"$KEY\" | pulse hash-write-key")  # fmt: skip
    hash_key.add_argument("key", nargs="?", metavar="KEY", help="the key (default: read from standard input)")
    worker = command("worker", _worker, "run the stream jobs (Faust worker) in the foreground",
                     "Validate, de-duplicate and normalise events from the events topic (dead-lettering bad input) "
                     "and run the stream jobs on them: sessions, funnel steps, churn scores and alerts. Serves "
                     "Prometheus metrics on PULSE_WORKER_METRICS_PORT. Stops on SIGINT/SIGTERM.")  # fmt: skip
    worker.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    command("sink", _sink, "run the ClickHouse sink in the foreground",
            "Consume the output topics (valid events, sessions, funnel steps, churn scores and alerts, CLV "
            "predictions) and the dead letters, and insert them into ClickHouse in batches, committing offsets "
            "only after the insert. Serves /query (read-only SQL), ClickHouse's HTTP interface (embedded engine), "
            "/healthz and /metrics on PULSE_SINK_PORT. Stops on SIGINT/SIGTERM after flushing.")  # fmt: skip
    produce = command("produce", _produce, "publish a JSONL file of events to Kafka (backfill)",
                      "Publish FILE (one JSON event per line, plain or gzip-compressed). Lines that are not JSON or "
                      "break the event contract are reported with their line numbers and sent to the dead-letter "
                      "topic. Every 100,000 lines the import waits for Kafka and records the confirmed line under "
                      "<data dir>/backfill, so an interrupted import continues with --resume. Exits 1 if Kafka did "
                      "not confirm every record.")  # fmt: skip
    produce.add_argument("file", type=Path, metavar="FILE", help="path of a .jsonl or .jsonl.gz file")
    start = produce.add_mutually_exclusive_group()
    start.add_argument("--start-line", type=int, default=1, metavar="N", help="skip the lines before line N (1-based)")
    start.add_argument("--resume", action="store_true", help="start after the last line Kafka confirmed for FILE")
    simulate = command("simulate", _simulate, "generate customer journeys with their ground truth",
                       "Simulate CUSTOMERS customers over DAYS days of event time (seeded, reproducible): acquisition, "
                       "sessions, signups, onboarding, trials, purchases, subscriptions, surveys, tickets, ad and "
                       "email events, marketing spend, plus a share of imperfect input (late, resent and malformed "
                       "lines). Writes JSONL (--out) or publishes to Kafka (--kafka); the ground truth (per user "
                       "sessions, funnel, churn, revenue, and KPI totals) goes to --truth as JSON.")  # fmt: skip
    target = simulate.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, metavar="FILE", help="write the events to FILE (.gz compresses)")
    target.add_argument("--kafka", action="store_true", help="publish the events to the events topic")
    simulate.add_argument("--truth", type=Path, metavar="FILE", help="ground truth JSON (default: next to --out)")
    simulate.add_argument("--customers", type=int, default=3_000, help="customers to simulate (default 3000)")
    simulate.add_argument("--days", type=int, default=30, help="days of event time (default 30)")
    simulate.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    simulate.add_argument("--rate", type=float, metavar="EVENTS_PER_S", help="publish at most this many lines a second")
    simulate.add_argument("--clean", action="store_true", help="no late, resent or malformed lines")
    simulate.add_argument("--anonymous-visits", action="store_true",
                          help="send events as a browser SDK does: a new customer is known by an anonymous id until "
                               "the signup, which carries both (the pipeline stitches them into one person)")  # fmt: skip
    bench = command("bench", _bench, "measure the pipeline next to its ceilings and write a report",
                    "Start a broker of its own and measure, on simulated events: EventProducer throughput, the "
                    "worker (validation alone, then all jobs) and the sink on a backlog, the live capacity (the "
                    "highest steady rate whose p99 event-to-queryable stays under --latency-target-ms, found by "
                    "search over points of --warmup-seconds + --latency-seconds, each on a drained pipeline) of "
                    "events produced to Kafka and of many HTTP clients posting to the collector, worker memory per "
                    "active user and the pause of a rebalance with "
                    "--rebalance-users users in state; next to the raw "
                    "confluent-kafka producer, raw aiokafka consumer and bare clickhouse-connect insert measured in "
                    "the same run. Writes bench.json and bench.md to --out. "
                    "example: pulse bench --only live,collector --live-rate 5000 --points 4")  # fmt: skip
    bench.add_argument("--events", type=int, default=500_000, help="events to push through (default 500,000)")
    bench.add_argument("--users", default="100000,1000000",
                       help="active-user levels for memory and the rate with that many users in state (default 100000,1000000)")
    bench.add_argument("--rebalance-users", type=int, default=1_000_000, metavar="N",
                       help="users in state for the rebuild and rebalance phases (default 1,000,000)")  # fmt: skip
    bench.add_argument("--latency-seconds", type=float, default=8.0,
                       help="measured seconds of each point of the live and collector searches, after its warm-up "
                            "(default 8)")  # fmt: skip
    bench.add_argument("--warmup-seconds", type=float, default=3.0,
                       help="uncounted traffic at a point's rate before it is measured (default 3)")  # fmt: skip
    bench.add_argument("--latency-target-ms", type=float, default=5000.0, metavar="MS",
                       help="p99 event-to-queryable a rate must stay under to hold (default 5000)")  # fmt: skip
    bench.add_argument("--points", type=int, default=6,
                       help="most points each capacity search measures (default 6)")  # fmt: skip
    bench.add_argument("--search-seconds", type=float, default=90.0,
                       help="time budget of each capacity search: no point starts that would end after it, judging "
                            "by the longest point so far (default 90)")  # fmt: skip
    bench.add_argument("--live-rate", type=float, metavar="EVENTS_PER_S",
                       help="first rate of the live search (default: half the all-jobs rate through the sink "
                            "measured in the same run, else 2000)")  # fmt: skip
    bench.add_argument("--collector-rate", type=float, metavar="EVENTS_PER_S",
                       help="first rate of the collector search (default: the live capacity measured in the same "
                            "run, else as the live search)")  # fmt: skip
    bench.add_argument("--clients", type=int, default=128,
                       help="concurrent HTTP clients (keep-alive connections) of the collector phase; each waits "
                            "for its answer, so together they send at most clients x batch / answer time (default "
                            "128)")  # fmt: skip
    bench.add_argument("--batch", type=int, default=10, help="events per request in the collector phase (default 10)")
    bench.add_argument("--peer-events", type=int, default=25_000, metavar="N",
                       help="events of the peers phase, one a record: our worker, a direct Faust app and a Quix "
                            "Streams app sessionize them side by side, and their sessions are checked equal; about "
                            "a minute in all at the default (default 25,000)")  # fmt: skip
    bench.add_argument("--only", metavar="PHASES",
                       help="comma-separated phases to run, of: producer, ceilings, validate, backlog (the worker "
                            "with all jobs on the events in Kafka), live (capacity search, events produced to "
                            "Kafka), collector (capacity search, HTTP clients posting to the collector), memory, "
                            "rebuild (the timers of --rebalance-users users rebuilt in process), rebalance (a second "
                            "worker joins and leaves with --rebalance-users users in state), peers (our worker next "
                            "to Python peers, see --peer-events); default all but rebuild")  # fmt: skip
    bench.add_argument("--profile-seconds", type=float, default=10.0,
                       help="py-spy the worker this long during the backlog phase if py-spy is installed; 0 skips "
                            "(default 10)")  # fmt: skip
    bench.add_argument("--out", type=Path, default=Path("bench/results"), help="report directory (default bench/results)")
    bench_views = command("bench-views", _bench_views, "time every ClickHouse view on 10 million events (embedded engine)",
                          BENCH_VIEWS_HELP)  # fmt: skip
    bench_views.add_argument("--events", type=int, default=10_000_000, metavar="N",
                             help="events in the dataset (default 10,000,000)")  # fmt: skip
    bench_views.add_argument("--out", type=Path, default=Path("bench/results"), metavar="DIR",
                             help="where views.json and views.md go (default bench/results)")  # fmt: skip
    bench_views.add_argument("--engine-dir", type=Path, metavar="DIR",
                             help="keep the engine in DIR, or reuse the dataset DIR already holds (default: a "
                                  "temporary directory, removed afterwards)")  # fmt: skip
    bench_views.add_argument("--runs", type=int, default=3, metavar="N",
                             help="timed runs per view after its warm-up; the median is reported (default 3)")  # fmt: skip
    bench_views.add_argument("--only", metavar="VIEW[,VIEW]",
                             help="time only these views (default: every view of the database)")  # fmt: skip
    command("collect", _collect, "run the HTTP collector in the foreground",
            "Accept events over HTTP: POST /v1/events (one event, a JSON array or NDJSON; at most 1,000 events "
            "or 1 MiB). Answers 202 once the events are in Kafka, 400 with the problems of invalid events (the "
            "valid ones are accepted), 401 without a write key when PULSE_WRITE_KEYS is set, 413 when too large, "
            "503 with Retry-After when Kafka is unavailable. Also GET /healthz and /metrics.")  # fmt: skip
    query = command("query", _query, "run a read-only SQL query against ClickHouse",
                    "Print the result of one SELECT. With the embedded engine the query goes to the running sink.")  # fmt: skip
    query.add_argument("sql", metavar="SQL")
    query.add_argument("--json", action="store_true", help="print {columns, rows} as JSON instead of a table")
    report = command("report", _report, "the KPIs of a period: table, JSON, or an HTML page with charts",
                     REPORT_HELP)  # fmt: skip
    report.add_argument("--from", dest="start", type=_date, metavar="DATE",
                        help="first day (UTC, YYYY-MM-DD; default 29 days before --to)")  # fmt: skip
    report.add_argument("--to", dest="end", type=_date, metavar="DATE",
                        help="last day (UTC, YYYY-MM-DD; default the newest event's day)")  # fmt: skip
    report.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    report.add_argument("--html", type=Path, metavar="FILE",
                        help="also write the report with its charts as one self-contained HTML page")  # fmt: skip
    up = command("up", _up, "start the local stack in the background",
                 "Start the broker (unless KAFKA_BOOTSTRAP is set), create topics, then the sink, the worker and the "
                 "HTTP collector, "
                 "each with a pid file in <data dir>/run and a log in <data dir>/logs.")  # fmt: skip
    up.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for each stage to be ready")
    command("down", _down, "stop everything `pulse up` started")
    status = command("status", _status, "show each stage's health, lag and throughput at a glance", STATUS_HELP)
    status.add_argument("--json", action="store_true", help="print the view as JSON, for scripts (same exit status)")
    top = command("top", _top, "redraw the status view live in the terminal until Ctrl-C",
                  "Redraw the view of `pulse status` (see `pulse status --help`) every --interval seconds until "
                  "Ctrl-C, with rates between consecutive refreshes. A stage that goes down shows \"down\" until it "
                  "answers again.")  # fmt: skip
    top.add_argument("--interval", type=_positive_seconds, default=2.0, metavar="S",
                     help="seconds between refreshes (default 2)")  # fmt: skip
    demo = command("demo", _demo, "run the pipeline on simulated traffic and print a summary",
                   "Start a fresh stack in <data dir>/demo, publish a simulation, wait until the worker and the sink "
                   "have caught up, compare events, dead letters and sessions in ClickHouse with the simulation's "
                   "ground truth, print a summary and stop everything. Exits 1 on a mismatch. New customers browse "
                   "anonymously until they sign up (pulse simulate --anonymous-visits), so the sessions and funnels "
                   "are right only if the pipeline stitches their ids into one person.")  # fmt: skip
    demo.add_argument("--customers", type=int, default=3_000, help="simulated customers (default 3000)")
    demo.add_argument("--days", type=int, default=14, help="days of event time (default 14)")
    soak = command("soak", _soak, "kill the worker and the sink again and again, checking the results each time",
                   SOAK_HELP)  # fmt: skip
    soak.add_argument("--cycles", type=int, default=30, help="cycles to run (default 30)")
    soak.add_argument("--customers", type=int, default=1_500, help="simulated customers per cycle (default 1500)")
    soak.add_argument("--days", type=int, default=7, help="days of event time per cycle (default 7)")
    soak.add_argument("--seed", type=int, default=1, help="seed of every cycle's simulation and kills (default 1)")
    soak.add_argument("--kill", default="random", metavar="WHAT",
                      help="what each cycle kills: random (worker, sink or both, drawn per cycle; the default), "
                           "worker, sink, both, or none (a check of the soak itself: every cycle must pass)")  # fmt: skip
    soak.add_argument("--publish-seconds", type=float, default=10.0, metavar="S",
                      help="spread each cycle's lines over S seconds, the window the kills fall in "
                           "(default 10)")  # fmt: skip
    soak.add_argument("--stall-timeout", type=float, default=120.0, metavar="S",
                      help="seconds a consumer group may stay behind before the cycle counts as stalled "
                           "(default 120)")  # fmt: skip
    alerts = command("alerts", _alerts, "churn alerts: print them live, or forward them to a webhook", ALERTS_HELP)
    alert_actions = alerts.add_subparsers(dest="action", required=True, metavar="ACTION")

    def alert_action(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return alert_actions.add_parser(name, help=summary, description=description, epilog=ENVIRONMENT_HELP,
                                        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip

    alerts_tail = alert_action("tail", "print churn alerts as they arrive, until Ctrl-C",
                               "Print each churn alert of the alerts topic as it arrives, until Ctrl-C: one line per "
                               "alert (event time UTC, user, old -> new tier, score, reasons, [alert_id]), or with "
                               "--json the alert's JSON line as published (for jq). Joins no consumer group and "
                               "commits nothing, so it never disturbs the forwarders or the sink.")  # fmt: skip
    alerts_tail.add_argument("--from-beginning", action="store_true",
                             help="start at the oldest alert still in the topic (default: only new alerts)")  # fmt: skip
    alerts_tail.add_argument("--json", action="store_true", help="print the raw JSON line of each alert")
    webhook = alert_action("webhook", "POST each churn alert to URL, signed per Standard Webhooks", WEBHOOK_HELP)
    webhook.add_argument("url", metavar="URL", help="http:// or https:// endpoint that receives the POSTs")
    webhook.add_argument("--secret", action="append", metavar="whsec_...",
                         help="signing secret: whsec_ + base64 of at least 24 random bytes. Give it twice while "
                              "rotating (old and new; receivers accept either). Default: PULSE_WEBHOOK_SECRET, "
                              "which keeps it out of the process list")  # fmt: skip
    webhook.add_argument("--group", metavar="NAME",
                         help="consumer group, whose committed position survives restarts (default "
                              "<PULSE_APP_ID>-alerts-webhook; one group per receiving URL)")  # fmt: skip
    webhook.add_argument("--attempts", type=int, default=5, metavar="N",
                         help="attempts per alert before it is dead-lettered (default 5)")  # fmt: skip
    webhook.add_argument("--retry-delay", type=float, default=1.0, metavar="S",
                         help="wait after the first failed attempt; doubles after each (default 1)")  # fmt: skip
    webhook.add_argument("--max-retry-delay", type=float, default=60.0, metavar="S",
                         help="longest wait between two attempts (default 60)")  # fmt: skip
    webhook.add_argument("--timeout", type=_positive_seconds, default=15.0, metavar="S",
                         help="seconds to wait for an answer to one attempt (default 15)")  # fmt: skip
    webhook.add_argument("--start-at", choices=["earliest", "latest"], default="earliest",
                         help="where a group without a committed position starts: the oldest alert kept "
                              "(default) or new alerts only")  # fmt: skip
    webhook.add_argument("--metrics-port", type=int, metavar="PORT",
                         help="serve Prometheus /metrics on PULSE_BIND_HOST:PORT")  # fmt: skip
    clv = command("clv", _clv, "predictive customer lifetime value (BG/NBD + Gamma-Gamma)", CLV_HELP)
    clv_actions = clv.add_subparsers(dest="action", required=True, metavar="ACTION")
    clv_fit = clv_actions.add_parser("fit", help="fit the model on purchases up to a date and predict every customer",
                                     description=CLV_HELP, epilog=ENVIRONMENT_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    clv_fit.add_argument("--until", type=_date, required=True, metavar="DATE",
                         help="last day (UTC, YYYY-MM-DD) of the purchases the model sees")  # fmt: skip
    clv_fit.add_argument("--unit", choices=["day", "week"], default="week",
                         help="unit of recency, age and the horizon (default week)")  # fmt: skip
    clv_fit.add_argument("--horizon", type=float, default=52.0, metavar="UNITS",
                         help="units ahead that expected purchases and CLV cover (default 52)")  # fmt: skip
    return parser


def _kafka(args: argparse.Namespace, settings: Settings) -> int:
    from devstack.stack import local_kafka

    broker = local_kafka(settings)
    if args.action == "fetch":
        print(f"Kafka jars in {broker.ensure_jars()}")
    elif args.action == "start":
        broker.start()
    elif args.action == "stop":
        print("kafka stopped" if broker.stop() else "kafka was not running")
    else:
        state = broker.status()
        print(f"kafka at {state.bootstrap}: pid {state.pid}, {'answering' if state.answering else 'not answering'}")
        return 0 if state.answering else 1
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from ops.topic_spec import DEFAULT_SPEC
    from ops.topics import apply_topics

    report = apply_topics(settings, args.spec or DEFAULT_SPEC, dry_run=args.dry_run or args.action == "diff",
                          allow_repartition=args.allow_repartition)  # fmt: skip
    for line in report.lines():
        print(line)
    if not report.drifts:
        print(f"no drift: {report.topics} topics match {report.spec}")
    elif report.applied:
        fixed = len(report.drifts) - len(report.unresolved)
        print(f"{len(report.drifts)} differences from {report.spec}: {fixed} fixed, {len(report.unresolved)} left")
    else:
        print(f"{len(report.drifts)} differences from {report.spec}; nothing changed (dry run)")
    return 1 if report.unresolved else 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.clickhouse import connect
    from sinks.migrations import MigrationError, migrate, script

    if args.print:
        print(script(cluster=args.cluster), end="")
        return 0
    if args.cluster and settings.embedded_clickhouse:
        raise MigrationError("the embedded engine is one node, not a cluster: point CLICKHOUSE_DSN at a node of "
                             f"cluster {args.cluster}, or add --print to see the statements")  # fmt: skip
    applied = migrate(connect(settings.clickhouse_dsn), cluster=args.cluster)
    for migration in applied:
        print(f"applied {migration.version:04d}_{migration.name}")
    if not applied:
        print("nothing to apply")
    return 0


def _forget(args: argparse.Namespace, settings: Settings) -> int:
    from ops.forget import forget

    erasure = forget(settings, args.id, args.reference, args.timeout, args.cluster)
    removed = {table: rows for table, rows in erasure["rows_removed"].items() if rows}
    print(f"erasure {erasure['erasure_id']}: {erasure['ids']} id(s) forgotten; rows removed: "
          + (", ".join(f"{table} {rows}" for table, rows in removed.items()) or "none"))  # fmt: skip
    return 0


def _hash_write_key(args: argparse.Namespace, _settings: Settings) -> int:
    from pulse.settings import hash_write_key

    key = args.key if args.key is not None else sys.stdin.read().strip()
    if not key:
        print("pulse hash-write-key: no key given (an argument, or standard input)", file=sys.stderr)
        return 2
    print(hash_write_key(key))
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from stream_jobs.worker import run_worker

    run_worker(settings, loglevel=args.loglevel)
    return 0


def _sink(_args: argparse.Namespace, settings: Settings) -> int:
    from sinks.service import run_sink

    run_sink(settings)
    return 0


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    from ops.progress import Progress
    from producers import EventProducer, publish_jsonl
    from producers.checkpoints import Checkpoints

    checkpoints = Checkpoints(settings.data_dir / "backfill")
    start_line = checkpoints.load(args.file) + 1 if args.resume else args.start_line
    size = args.file.stat().st_size
    progress = Progress(f"publishing {args.file.name}", total=size, unit="B")
    with EventProducer.from_settings(settings) as producer:
        try:
            report = publish_jsonl(
                args.file,
                producer,
                lambda done, line: progress.update(done, f"line {line}"),
                start_line=start_line,
                on_checkpoint=lambda line: checkpoints.save(args.file, line),
            )
        except KeyboardInterrupt as interrupt:
            confirmed = interrupt.report.confirmed_line  # type: ignore[attr-defined]
            print(f"\ninterrupted: lines up to {confirmed} are confirmed by Kafka; continue with "
                  f"`pulse produce {args.file} --resume` (or --start-line {confirmed + 1})", file=sys.stderr)  # fmt: skip
            return 130
    progress.close(size, f"line {report.lines}")
    for problem in report.problems:
        print(f"invalid: {problem}", file=sys.stderr)
    if report.invalid > len(report.problems):
        print(f"... and {report.invalid - len(report.problems)} more invalid lines", file=sys.stderr)
    delivery = report.delivery
    skipped = f", {report.skipped} skipped before line {start_line}" if report.skipped else ""
    print(
        f"{report.lines} lines: {report.valid} events published ({delivery.events_delivered} confirmed), "
        f"{report.invalid} invalid sent to the dead-letter topic, {report.blank} blank{skipped}"
    )
    for error in delivery.errors:
        print(f"delivery failed: {error}", file=sys.stderr)
    return 0 if delivery.ok else 1


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    import gzip

    from ops.progress import Progress
    from producers import EventProducer, publish_lines
    from producers.pacing import paced
    from producers.simulator import Imperfections, SimulationConfig, simulate

    imperfections = Imperfections.none() if args.clean else Imperfections()
    config = SimulationConfig(customers=args.customers, days=args.days, seed=args.seed, imperfections=imperfections,
                              anonymous_visits=args.anonymous_visits)  # fmt: skip
    simulation = simulate(config)
    total = simulation.truth.totals["lines"]
    lines = simulation.lines() if args.rate is None else paced(simulation.lines(), args.rate)
    progress = Progress("simulating", total=total, unit=" lines")
    if args.kafka:
        with EventProducer.from_settings(settings) as producer:
            report = publish_lines(lines, "simulation", producer, progress.update)
        print(f"{report.valid} events published ({report.delivery.events_delivered} confirmed), "
              f"{report.invalid} malformed sent to the dead-letter topic")  # fmt: skip
    else:
        opener = gzip.open if args.out.suffix == ".gz" else open
        with opener(args.out, "wb") as out:
            for count, line in enumerate(lines, start=1):
                out.write(line + b"\n")
                if count % 10_000 == 0:
                    progress.update(count)
        print(f"{total} lines written to {args.out}")
    progress.close(total)
    truth_path = args.truth or (args.out.with_name(args.out.name.split(".")[0] + ".truth.json") if args.out else None)
    if truth_path:
        truth_path.write_bytes(orjson.dumps(simulation.truth.to_dict()))
        print(f"ground truth in {truth_path}")
    return 0


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from bench.capacity import SearchPlan
    from bench.report import rows
    from bench.runner import DEFAULT_PHASES, BenchConfig, run_benchmark

    search = SearchPlan(target_p99_ms=args.latency_target_ms, point_s=args.latency_seconds,
                        warmup_s=args.warmup_seconds, max_points=args.points, budget_s=args.search_seconds)  # fmt: skip
    config = BenchConfig(
        events=args.events,
        memory_users=tuple(int(users) for users in args.users.split(",")),
        rebalance_users=args.rebalance_users,
        search=search,
        live_rate=args.live_rate,
        collector_rate=args.collector_rate,
        collector_clients=args.clients,
        collector_batch=args.batch,
        out_dir=args.out,
        profile_seconds=args.profile_seconds,
        peer_events=args.peer_events,
        phases=tuple(phase.strip() for phase in args.only.split(",")) if args.only else DEFAULT_PHASES,
    )
    results = run_benchmark(settings, config, "pulse " + " ".join(sys.argv[1:]), log=lambda line: print(line, flush=True))
    for what, value, ceiling, ratio in rows(results):
        print(f"{what:60} {value:>32}  {ratio:>7} of {ceiling}")
    print(f"report: {args.out / 'bench.md'}")
    return 0


def _bench_views(args: argparse.Namespace, _settings: Settings) -> int:
    from bench.views import BenchViewsConfig, run_views_bench

    only = tuple(name.strip() for name in args.only.split(",") if name.strip()) if args.only else ()
    config = BenchViewsConfig(events=args.events, out=args.out, engine_dir=args.engine_dir, runs=args.runs, only=only)
    report = run_views_bench(config, "pulse " + " ".join(sys.argv[1:]), log=lambda line: print(line, flush=True))
    views = report["views"]
    print(f"{sum(view['under_1s'] for view in views)} of {len(views)} views under {report['target_s']:g} s; "
          f"report: {args.out / 'views.md'}")  # fmt: skip
    return 1 if any(view["error"] for view in views) else 0


def _collect(_args: argparse.Namespace, settings: Settings) -> int:
    from producers.collector import run_collector

    run_collector(settings)
    return 0


def _query(args: argparse.Namespace, settings: Settings) -> int:
    from ops.reader import run_query

    result = run_query(settings, args.sql)
    if args.json:
        print(orjson.dumps({"columns": result.columns, "rows": result.rows}, default=str).decode())
        return 0
    cells = [result.columns, *[[str(value) for value in row] for row in result.rows]]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(result.columns))]
    for row in cells:
        print("  ".join(str(value).ljust(width) for value, width in zip(row, widths, strict=True)))
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from ops.reader import run_query
    from ops.report import build_report, format_table

    if args.start and args.end and args.start > args.end:
        print(f"pulse report: --from {args.start} is after --to {args.end}", file=sys.stderr)
        return 2
    report = build_report(lambda sql: run_query(settings, sql), args.start, args.end)
    if args.html:
        from ops.report_html import render_html

        args.html.write_text(render_html(report), encoding="utf-8")
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_table(report))
    if args.html:
        print(f"HTML report in {args.html}", file=sys.stderr)
    return 0


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from devstack.stack import up

    up(settings, timeout=args.timeout)
    print(f"up: kafka {settings.bootstrap}, queries and sink metrics {settings.sink_url}, "
          f"worker metrics http://127.0.0.1:{settings.worker_metrics_port}/metrics, "
          f"collector http://127.0.0.1:{settings.collector_port}/v1/events")  # fmt: skip
    return 0


def _down(_args: argparse.Namespace, settings: Settings) -> int:
    from devstack.stack import down

    down(settings)
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from devstack.status_probe import RATE_SAMPLE_S, views
    from devstack.status_view import as_json, render

    view = next(views(settings, RATE_SAMPLE_S))
    print(as_json(view).decode() if args.json else render(view))
    return 0 if view.healthy else 1


def _top(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from devstack.status_probe import views
    from devstack.status_view import top_screen

    try:
        for view in views(settings, args.interval):
            sys.stdout.write(top_screen(view, args.interval, time.strftime("%H:%M:%S")))
            sys.stdout.flush()
    except KeyboardInterrupt:  # how one leaves top: not a failure
        print()
    return 0


def _positive_seconds(text: str) -> float:
    seconds = float(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text}")
    return seconds


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from devstack.demo import run_demo
    from producers.simulator import SimulationConfig

    summary = run_demo(settings, SimulationConfig(customers=args.customers, days=args.days, anonymous_visits=True))
    print("\n".join(["", "Customer Pulse demo", *summary.lines()]))
    return 0 if summary.ok else 1


def _soak(args: argparse.Namespace, settings: Settings) -> int:
    from devstack.soak import SoakConfig, run_soak

    config = SoakConfig(
        cycles=args.cycles,
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        kill=args.kill,
        publish_seconds=args.publish_seconds,
        stall_timeout_s=args.stall_timeout,
    )
    summary = run_soak(settings, config, log=lambda line: print(line, flush=True))
    print("\n".join(summary.lines()))
    return 0 if summary.ok else 1


def _alerts(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "tail":
        return _alerts_tail(args, settings)
    return _alerts_webhook(args, settings)


def _alerts_tail(args: argparse.Namespace, settings: Settings) -> int:
    from ops.alert_feed import tail

    try:
        tail(settings, from_beginning=args.from_beginning, as_json=args.json)
    except KeyboardInterrupt:  # how one leaves tail: not a failure
        pass
    return 0


def _alerts_webhook(args: argparse.Namespace, settings: Settings) -> int:
    import os
    import signal
    import threading

    from ops.webhook_forwarder import WebhookConfig, WebhookForwarder, serve_metrics
    from ops.webhooks import RetryPolicy, parse_secret

    texts = args.secret or ([os.environ["PULSE_WEBHOOK_SECRET"]] if os.environ.get("PULSE_WEBHOOK_SECRET") else [])
    if not texts:
        print("pulse alerts webhook: give --secret whsec_... or set PULSE_WEBHOOK_SECRET", file=sys.stderr)
        return 2
    try:
        retry = RetryPolicy(attempts=args.attempts, base_delay_s=args.retry_delay, max_delay_s=args.max_retry_delay)
    except ValueError as exc:
        print(f"pulse alerts webhook: {exc}", file=sys.stderr)
        return 2
    config = WebhookConfig(
        url=args.url,
        secrets=tuple(parse_secret(text) for text in texts),
        group=args.group or f"{settings.app_id}-alerts-webhook",
        retry=retry,
        timeout_s=args.timeout,
        start_at=args.start_at,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: quit now, the alert in flight is sent again next time
        stop.set()
        print("stopping after the alert in flight (Ctrl-C again to quit now)", file=sys.stderr, flush=True)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    forwarder = WebhookForwarder(settings, config, stop=stop, log=lambda line: print(line, flush=True))
    if args.metrics_port:
        serve_metrics(args.metrics_port, settings.bind_host)
        print(f"metrics on http://{settings.bind_host}:{args.metrics_port}/metrics", flush=True)
    forwarder.run()
    return 0


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _clv(args: argparse.Namespace, settings: Settings) -> int:
    from kpi.clv_model import CannotFitError
    from ops.clv import fit_clv

    try:
        fit = fit_clv(settings, args.until, args.unit, args.horizon, log=lambda line: print(line, file=sys.stderr))
    except CannotFitError as exc:
        print(f"pulse clv fit: {exc}", file=sys.stderr)
        return 1
    print(orjson.dumps(fit, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
