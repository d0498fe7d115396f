-- Login throttling (gateway.web.auth): failed or unfinished logins counted per key (an account, a client address,
-- an account from one address or one known device), shared by every process and kept over restarts. The key is a
-- keyed hash: neither logins nor addresses are stored. A key is held (no password is checked for it) until
-- `held_until`; it is forgotten a day after its last attempt.
CREATE TABLE login_attempts (
    key         TEXT PRIMARY KEY,
    failures    INTEGER NOT NULL,
    held_until  TEXT NOT NULL,
    last_at     TEXT NOT NULL
);

CREATE INDEX login_attempts_by_last ON login_attempts (last_at);
