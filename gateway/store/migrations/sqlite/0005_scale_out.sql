-- Periodic jobs that fire once per period, as in migrations/postgresql/0005_scale_out.sql (SqliteStore.claim_tick).
-- (Provider rate limits stay in the process here: one process sends from a SQLite file, so there is no
-- rate_buckets table.)

-- One row per run of a periodic job: the caller whose INSERT made the row runs the job for that period.
-- `period` is the job's scheduled fire time (ISO 8601, UTC, to the minute).
CREATE TABLE ticks (
    job        TEXT NOT NULL,
    period     TEXT NOT NULL,
    owner      TEXT NOT NULL,           -- host:pid of the process that won the tick
    claimed_at TEXT NOT NULL,
    PRIMARY KEY (job, period)
);
