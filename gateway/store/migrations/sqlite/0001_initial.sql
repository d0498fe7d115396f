-- Zvonok schema, version 1. Times are UTC ISO-8601 strings ("2026-11-22T08:00:00.000000+00:00"),
-- which sort in time order as text.

-- Facts about this installation. `installation` is part of every delivery key, so that keys never repeat
-- across databases (VK deduplicates random_id over a sender's whole history).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

INSERT INTO meta (key, value) VALUES ('installation', lower(hex(randomblob(6))));

CREATE TABLE guardians (
    school_id   TEXT NOT NULL,
    key         TEXT NOT NULL,          -- roster.guardian_key(): stable across imports, no personal data
    name        TEXT NOT NULL,
    email       TEXT NOT NULL DEFAULT '',
    phone       TEXT NOT NULL DEFAULT '',
    opted_out   INTEGER NOT NULL DEFAULT 0,
    left_at     TEXT,                   -- set when a re-import no longer lists the guardian
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (school_id, key)
);

CREATE TABLE guardian_classes (
    school_id   TEXT NOT NULL,
    key         TEXT NOT NULL,
    class_name  TEXT NOT NULL,
    students    TEXT NOT NULL,          -- the children's names in that class, "; "-separated
    in_chat     INTEGER NOT NULL,
    PRIMARY KEY (school_id, key, class_name),
    FOREIGN KEY (school_id, key) REFERENCES guardians (school_id, key) ON DELETE CASCADE
);

CREATE TABLE chats (
    channel       TEXT NOT NULL,
    address       TEXT NOT NULL,        -- MAX chat_id / VK peer_id
    school_id     TEXT NOT NULL,
    class_name    TEXT NOT NULL DEFAULT '',
    kind          TEXT NOT NULL DEFAULT '',
    title         TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'dead')),
    status_reason TEXT NOT NULL DEFAULT '',
    source        TEXT NOT NULL DEFAULT 'config',
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (channel, address)
);

CREATE TABLE announcements (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    school_id       TEXT NOT NULL,
    author          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    title           TEXT NOT NULL,
    text            TEXT NOT NULL,
    audience        TEXT NOT NULL,      -- JSON of domain.Audience
    audience_label  TEXT NOT NULL,
    send_at         TEXT,
    idempotency_key TEXT,
    created_at      TEXT NOT NULL,
    UNIQUE (school_id, idempotency_key)
);

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    announcement_id INTEGER NOT NULL REFERENCES announcements (id),
    channel         TEXT NOT NULL,
    account         TEXT NOT NULL,
    target          TEXT NOT NULL,
    class_name      TEXT NOT NULL,
    chat_kind       TEXT NOT NULL DEFAULT '',
    recipient_name  TEXT NOT NULL DEFAULT '',
    note            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                      ('pending', 'sending', 'temporary_failure', 'unknown',
                       'delivered', 'permanent_failure', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before      TEXT NOT NULL,
    lease_token     TEXT,
    lease_until     TEXT,
    provider_id     TEXT NOT NULL DEFAULT '',
    error_code      TEXT NOT NULL DEFAULT '',
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    finished_at     TEXT,
    UNIQUE (announcement_id, channel, target)
);

-- The dispatcher's "what is due" scan: only open deliveries are in this index.
CREATE INDEX deliveries_due ON deliveries (not_before)
    WHERE status IN ('pending', 'sending', 'temporary_failure', 'unknown');

CREATE TABLE coverage (
    announcement_id INTEGER NOT NULL REFERENCES announcements (id),
    person          TEXT NOT NULL,      -- guardian key, or "staff:<id>"
    class_name      TEXT NOT NULL,
    route           TEXT NOT NULL CHECK (route IN ('chat', 'email', 'none')),
    delivery_id     INTEGER REFERENCES deliveries (id),
    email           TEXT NOT NULL DEFAULT '',
    note            TEXT NOT NULL,
    PRIMARY KEY (announcement_id, person, class_name)
);

CREATE INDEX coverage_by_delivery ON coverage (delivery_id);

CREATE TABLE gaps (
    announcement_id INTEGER NOT NULL REFERENCES announcements (id),
    class_name      TEXT NOT NULL,
    chat_kind       TEXT NOT NULL,
    note            TEXT NOT NULL,
    PRIMARY KEY (announcement_id, class_name, chat_kind)
);

CREATE TABLE attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  INTEGER NOT NULL REFERENCES deliveries (id),
    attempt      INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    finished_at  TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    error_code   TEXT NOT NULL DEFAULT '',
    error        TEXT NOT NULL DEFAULT ''
);

CREATE INDEX attempts_by_delivery ON attempts (delivery_id);

CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    school_id   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,          -- what it is about: a chat, a bot account
    message     TEXT NOT NULL,
    resolved_at TEXT
);

-- One open alert per problem: a second report of the same dead chat does not pile up.
CREATE UNIQUE INDEX alerts_open ON alerts (school_id, kind, subject) WHERE resolved_at IS NULL;
