-- When the HTTP collector received the event (server clock), for events that came through it.
ALTER TABLE events ADD COLUMN IF NOT EXISTS server_received_at Nullable(DateTime64(3, 'UTC')) AFTER ts
