-- Staff web app and parents' links: staff accounts, browser sessions, API tokens, acknowledgements,
-- opt-outs, cancelled announcements.

-- A staff member's password (argon2id hash). Who the staff are, and their roles, stay in the school file.
CREATE TABLE staff_accounts (
    school_id     TEXT NOT NULL,
    staff_id      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (school_id, staff_id)
);

-- A browser session. Only the SHA-256 of the cookie's value is kept: a leaked table logs nobody in.
CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    school_id   TEXT NOT NULL,
    staff_id    TEXT NOT NULL,
    csrf_token  TEXT NOT NULL,          -- checked on every state-changing request of the session
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);

CREATE INDEX sessions_by_staff ON sessions (school_id, staff_id);

-- An API token of an integration, acting as a staff member. Only its SHA-256 is kept.
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash  TEXT NOT NULL UNIQUE,
    school_id   TEXT NOT NULL,
    staff_id    TEXT NOT NULL,
    label       TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

-- «Ознакомлен»: a family confirmed it read the announcement its e-mail delivery carried (first click counts).
CREATE TABLE acknowledgements (
    delivery_id     INTEGER PRIMARY KEY REFERENCES deliveries (id),
    announcement_id INTEGER NOT NULL REFERENCES announcements (id),
    at              TEXT NOT NULL
);

CREATE INDEX acknowledgements_by_announcement ON acknowledgements (announcement_id);

-- When a guardian unsubscribed from the letters (guardians.opted_out says whether).
ALTER TABLE guardians ADD COLUMN opted_out_at TEXT;

-- An announcement the administration cancelled: what was not sent yet never goes out.
ALTER TABLE announcements ADD COLUMN cancelled_at TEXT;
ALTER TABLE announcements ADD COLUMN cancelled_by TEXT NOT NULL DEFAULT '';

-- Forwarding tasks of a cancelled announcement are closed as 'cancelled'. SQLite cannot change a CHECK
-- constraint in place: the table is rebuilt (nothing references it; ids are kept).
CREATE TABLE forwarding_tasks_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    announcement_id INTEGER NOT NULL REFERENCES announcements (id),
    school_id       TEXT NOT NULL,
    class_name      TEXT NOT NULL,
    teacher         TEXT NOT NULL,
    groups          TEXT NOT NULL,
    deadline        TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'forwarded', 'auto_forwarded', 'escalated', 'cancelled')),
    note            TEXT NOT NULL DEFAULT '',
    done_at         TEXT,
    done_by         TEXT NOT NULL DEFAULT '',
    UNIQUE (announcement_id, class_name)
);

INSERT INTO forwarding_tasks_new (id, announcement_id, school_id, class_name, teacher, groups, deadline, status, note,
                                  done_at, done_by)
SELECT id, announcement_id, school_id, class_name, teacher, groups, deadline, status, note, done_at, done_by
FROM forwarding_tasks;

DROP TABLE forwarding_tasks;
ALTER TABLE forwarding_tasks_new RENAME TO forwarding_tasks;
CREATE INDEX forwarding_open ON forwarding_tasks (deadline) WHERE status = 'open';
