"""The Quix Streams peer: sessions with Quix Streams' per-key State API.

Quix's session windows close a session after a gap but know no maximum length, so the
session lives in the key's state instead (a stateful ``apply``): for every event, read the
user's session, write it back, return the session row, which goes to the output topic.
Everything else is Quix's defaults: RocksDB state with a changelog topic, at-least-once,
a commit every 5 s. The input records are keyed by user, the key Quix's state is kept by.

Run as ``python -m bench.peers.quix_app '<PeerRun JSON>'``; it stops by itself
after the whole input (``Application.run(count=...)``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from quixstreams import Application, State

from bench.peers.protocol import PeerRun, Progress
from bench.peers.rule import next_session, session_row


def create_app(run: PeerRun) -> Application:
    app = Application(
        broker_address=run.bootstrap,
        consumer_group=run.group,
        auto_offset_reset="earliest",
        state_dir=Path(run.work_dir) / "state",
        loglevel="WARNING",
    )
    events = app.topic(run.input_topic, key_deserializer="str", value_deserializer="json")
    rows = app.topic(run.output_topic, key_serializer="str", value_serializer="json")
    rules = run.rules
    progress = Progress(run)

    def sessionize(event: dict[str, Any], state: State) -> dict[str, Any]:
        session = next_session(state.get("session"), event["ts"], event["type"] == "page_view", rules)
        state.set("session", list(session))
        progress.processed()
        return session_row(event["user_id"], session)

    app.dataframe(events).apply(sessionize, stateful=True).to_topic(rows)
    return app


def main() -> None:
    run = PeerRun.from_json(sys.argv[1])
    Path(run.work_dir).mkdir(parents=True, exist_ok=True)
    create_app(run).run(count=run.events, collect=False)


if __name__ == "__main__":
    main()
