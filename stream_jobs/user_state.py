"""Everything the stream jobs keep about one user, as one table value.

One value per user means one table write per user per record (each write costs a
changelog record), and it keeps the seen ids and the sessions consistent with each other:
a replayed record finds both or neither of its effects in the state.

Layout: 4-byte length of the packed seen ids, the seen ids, then the sessions as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from stream_jobs.dedup import SeenIds
from stream_jobs.sessionizer import UserSessions


@dataclass
class UserState:
    seen: SeenIds = field(default_factory=SeenIds.empty)
    sessions: UserSessions = field(default_factory=UserSessions)

    def to_bytes(self) -> bytes:
        seen = self.seen.to_bytes()
        return len(seen).to_bytes(4, "little") + seen + orjson.dumps(self.sessions.to_json())

    @classmethod
    def from_bytes(cls, data: bytes | None) -> UserState:
        if not data:
            return cls()
        size = int.from_bytes(data[:4], "little")
        return cls(SeenIds.from_bytes(data[4 : 4 + size]), UserSessions.from_json(orjson.loads(data[4 + size :])))
