"""The direct Faust peer: sessions the way a typical Faust user writes them.

A plain ``faust.App`` with an in-memory table keyed by user that holds the user's current
session, and one agent over the input topic (one event per record) that, for every event,
reads the user's session, writes it back (one table write, so one changelog record, per
event) and sends the session row to the output topic. None of our pipeline's machinery:
no packing of events into records, no batching of state writes per record, no corrections
of :mod:`stream_jobs.faust_fixes` (a fresh group on an idle broker does not need them).

Run as ``python -m bench.peers.faust_app '<PeerRun JSON>'``; it runs until stopped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import faust

from bench.peers.protocol import PeerRun, Progress
from bench.peers.rule import next_session, session_row


class Event(faust.Record, serializer="json"):
    """The fields of an event the sessions need; a Record ignores the others."""

    event_id: str
    type: str
    user_id: str
    ts: int


def create_app(run: PeerRun) -> faust.App:
    app = faust.App(
        run.group,
        broker=f"kafka://{run.bootstrap}",
        store="memory://",
        datadir=str(Path(run.work_dir) / "faust"),
        topic_partitions=run.partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    events = app.topic(run.input_topic, value_type=Event)
    rows = app.topic(run.output_topic, value_serializer="json")
    sessions = app.Table("sessions", partitions=run.partitions)
    rules = run.rules
    progress = Progress(run)

    @app.agent(events)
    async def sessionize(stream: faust.StreamT[Event]) -> None:
        async for event in stream:
            session = next_session(sessions.get(event.user_id), event.ts, event.type == "page_view", rules)
            sessions[event.user_id] = session
            await rows.send(key=event.user_id, value=session_row(event.user_id, session))
            progress.processed()

    return app


def main() -> None:
    run = PeerRun.from_json(sys.argv[1])
    Path(run.work_dir).mkdir(parents=True, exist_ok=True)
    faust.Worker(create_app(run), loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
