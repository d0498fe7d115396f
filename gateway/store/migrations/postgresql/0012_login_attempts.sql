-- Login throttling, as migrations/sqlite/0011_login_attempts.sql.
CREATE TABLE login_attempts (
    key         text PRIMARY KEY,
    failures    integer NOT NULL,
    held_until  timestamptz NOT NULL,
    last_at     timestamptz NOT NULL
);

CREATE INDEX login_attempts_by_last ON login_attempts (last_at);
