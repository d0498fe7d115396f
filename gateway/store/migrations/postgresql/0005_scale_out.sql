-- Several gateway processes on one database: periodic jobs that fire once per period, and provider rate
-- limits shared by every process (see PostgresStore.claim_tick and PostgresStore.reserve_permits).

-- One row per run of a periodic job: the process whose INSERT made the row runs the job for that period; the
-- others meet the primary key and skip it. `period` is the job's scheduled fire time (ISO 8601, UTC, to the
-- minute). Rows older than a couple of days are purged by claim_tick itself.
CREATE TABLE ticks (
    job        text NOT NULL,
    period     text NOT NULL,
    owner      text NOT NULL,           -- host:pid of the process that won the tick
    claimed_at timestamptz NOT NULL,
    PRIMARY KEY (job, period)
);

-- A provider's per-credential rate limit, shared (GCRA): `next_free` is the earliest moment the next request
-- with that credential may go out. A process reserves n permits by pushing it n/rate further, in one
-- statement, and then paces those n requests itself. `key` is the SHA-256 of the token, never the token.
-- Times are the database server's clock, so the processes' own clocks need not agree.
-- UNLOGGED: a reservation's commit waits for no WAL flush (its round trip is part of the pacing error), and
-- after a crash the table is simply empty again, which only means "every credential idle".
CREATE UNLOGGED TABLE rate_buckets (
    key       text PRIMARY KEY,
    next_free timestamptz NOT NULL
);
