"""``pulse worker`` with the post-recovery seek slowed down: the window where faust-streaming 0.15.3 lost records.

Upstream resumes the stream partitions, then awaits the seek to the committed offsets; the
fetcher, already running, fills the agent's queue meanwhile and blocks on it in the middle
of a fetched batch. The queue is cleared after the seek, the fetcher goes on delivering the
rest of its stale batch and marks those offsets read, so the re-fetched copies of the
cleared records are dropped. Here the seek takes ``SEEK_DELAY_S`` and the agent handles
records slowly until recovery has completed (only upstream's order hands it any before
that), so with a backlog larger than the queue the race becomes certain instead of rare. With ``PULSE_RACE_UNFIXED=1`` the worker runs
upstream's order instead of the fix, to show that the test reproduces the race. With
``PULSE_RACE_NO_COMMIT=1`` it never commits an offset, for a restart that finds state in
the changelog but no committed offset.

The race lives in Faust's own restore of a table, which the worker's memory store leaves
with nothing to read (it reads the changelog itself, see :mod:`stream_jobs.state_store`); a
store on disk (``rocksdb://``) still takes it. So this worker hands every restore to Faust.
"""

from __future__ import annotations

import asyncio
import os
import sys

import faust
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer

from ops.cli import main
from stream_jobs import faust_fixes, state_store
from stream_jobs.changelog_restore import Restored
from stream_jobs.events_agent import EventsAgent

SEEK_DELAY_S = 2.0
HANDLE_DELAY_S = 0.02
_perform_seek = Consumer.perform_seek
_handle = EventsAgent.handle


async def slow_perform_seek(self: Consumer) -> None:
    await asyncio.sleep(SEEK_DELAY_S)
    await _perform_seek(self)


async def handle_slowly_until_recovered(self: EventsAgent, event: faust.EventT) -> None:
    if not event.app.tables.recovery.completed.is_set():
        await asyncio.sleep(HANDLE_DELAY_S)
    await _handle(self, event)


async def never_commit(self: Consumer, *args: object, **kwargs: object) -> bool:
    return False


state_store.catch_up = lambda *_args: Restored()  # type: ignore[assignment]  # nothing kept, nothing read
Consumer.perform_seek = slow_perform_seek  # type: ignore[method-assign]
EventsAgent.handle = handle_slowly_until_recovered  # type: ignore[method-assign]
if os.environ.get("PULSE_RACE_NO_COMMIT"):
    Consumer.commit = never_commit  # type: ignore[method-assign]
if os.environ.get("PULSE_RACE_UNFIXED"):
    faust_fixes.apply = lambda: None  # type: ignore[assignment]
    Recovery.on_recovery_completed = faust_fixes.upstream_on_recovery_completed  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(["worker"]))
