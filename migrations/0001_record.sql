-- The system of record: what the reconciliation pass has applied from the
-- Redis outbox (src/outbox.rs). Redis holds the live counts; these tables hold
-- every count for good, and either side can repair the other (README,
-- "System of record").

-- One row per item: its exact counts as of the last applied event.
CREATE TABLE items (
  item TEXT PRIMARY KEY,
  -- likes_base plus the item's rows in likers.
  likes INTEGER NOT NULL DEFAULT 0,
  -- Likes imported without identities (POST /v1/admin/import).
  likes_base INTEGER NOT NULL DEFAULT 0,
  views INTEGER NOT NULL DEFAULT 0,
  -- Unix seconds: the last applied event's time, and the last drift check.
  updated_at INTEGER NOT NULL DEFAULT 0,
  checked_at INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX items_by_checked_at ON items (checked_at);

-- One row per identity that currently likes an item.
CREATE TABLE likers (
  item TEXT NOT NULL,
  who TEXT NOT NULL,
  PRIMARY KEY (item, who)
) WITHOUT ROWID;

-- Views per UTC day, kept forever (Redis keeps day buckets 400 days).
CREATE TABLE daily_views (
  item TEXT NOT NULL,
  day INTEGER NOT NULL, -- the UTC day's start, unix seconds
  views INTEGER NOT NULL,
  PRIMARY KEY (item, day)
) WITHOUT ROWID;

-- Custom counters. Integer adds sum exactly in int_value; once a float is
-- added the counter is a float and reads int_value + float_value.
CREATE TABLE counters (
  item TEXT NOT NULL,
  name TEXT NOT NULL,
  int_value INTEGER NOT NULL DEFAULT 0,
  float_value REAL NOT NULL DEFAULT 0,
  is_float INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (item, name)
) WITHOUT ROWID;

-- The outbox's high-water marks: per shard, the id of the last stream entry
-- applied (a JSON array of SHARDS ids). seq grows by one with every applied
-- batch, and every statement of a batch is guarded by the seq it read, so a
-- batch applies once even if two passes ever overlap.
CREATE TABLE outbox_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,
  marks TEXT NOT NULL
);
INSERT INTO outbox_state (id, seq, marks) VALUES (1, 0, '[]');
