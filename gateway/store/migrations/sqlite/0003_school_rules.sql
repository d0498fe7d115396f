-- The school's rules: held deliveries and their merging, the audit log, forwarding by class teachers.

-- A chat delivery the messaging window held back. Held deliveries of one chat that wait for the same window
-- opening go out as one message ("one message rather than many"); `bundle` is the id of the delivery that
-- leads such a group, fixed when the group is first claimed, so that retries keep the group (and its key).
ALTER TABLE deliveries ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN bundle INTEGER;

-- Text added below the announcement in this delivery: the class teacher's note when forwarding.
ALTER TABLE deliveries ADD COLUMN addendum TEXT NOT NULL DEFAULT '';

CREATE INDEX deliveries_bundle ON deliveries (bundle) WHERE bundle IS NOT NULL;

-- Who overrode a rule, when and why (force majeure outside the window or on a day off, ...).
CREATE TABLE audit (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    school_id       TEXT NOT NULL,
    at              TEXT NOT NULL,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    announcement_id INTEGER REFERENCES announcements (id),
    details         TEXT NOT NULL
);

CREATE INDEX audit_by_school ON audit (school_id, at);

-- An announcement routed through class teachers: one task per class of the audience.
CREATE TABLE forwarding_tasks (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    announcement_id INTEGER NOT NULL REFERENCES announcements (id),
    school_id       TEXT NOT NULL,
    class_name      TEXT NOT NULL,
    teacher         TEXT NOT NULL,          -- staff id of the class teacher ('' when the class has none)
    groups          TEXT NOT NULL,          -- "parents,students": which of the class's chats to forward to
    deadline        TEXT NOT NULL,          -- the end of that school day's window
    status          TEXT NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'forwarded', 'auto_forwarded', 'escalated')),
    note            TEXT NOT NULL DEFAULT '',
    done_at         TEXT,
    done_by         TEXT NOT NULL DEFAULT '',
    UNIQUE (announcement_id, class_name)
);

CREATE INDEX forwarding_open ON forwarding_tasks (deadline) WHERE status = 'open';
