-- The school's rules, as migrations/sqlite/0003_school_rules.sql: held deliveries and their bundles, the audit
-- log, forwarding by class teachers.

-- A chat delivery the messaging window held back. Held deliveries of one chat that wait for the same window
-- opening go out as one message ("one message rather than many"); `bundle` is the id of the delivery that
-- leads such a group, fixed when the group is first claimed, so that retries keep the group (and its key).
-- (Constant defaults: PostgreSQL adds these columns without rewriting the table.)
ALTER TABLE deliveries ADD COLUMN held boolean NOT NULL DEFAULT false;
ALTER TABLE deliveries ADD COLUMN bundle bigint;

-- Text added below the announcement in this delivery: the class teacher's note when forwarding.
ALTER TABLE deliveries ADD COLUMN addendum text NOT NULL DEFAULT '';

CREATE INDEX deliveries_bundle ON deliveries (bundle) WHERE bundle IS NOT NULL;

-- claim looks for due held chat deliveries apart from the others (they are claimed a chat at a time, as
-- bundles): this keeps that look as small as the held backlog.
CREATE INDEX deliveries_held_due ON deliveries (not_before, id)
    WHERE held AND channel <> 'email' AND status IN ('pending', 'sending', 'temporary_failure', 'unknown');

-- Who overrode a rule, when and why (force majeure outside the window or on a day off, ...).
CREATE TABLE audit (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id       text NOT NULL,
    at              timestamptz NOT NULL,
    actor           text NOT NULL,
    action          text NOT NULL,
    announcement_id bigint REFERENCES announcements (id),
    details         text NOT NULL
);

CREATE INDEX audit_by_school ON audit (school_id, at);

-- An announcement routed through class teachers: one task per class of the audience.
CREATE TABLE forwarding_tasks (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    announcement_id bigint NOT NULL REFERENCES announcements (id),
    school_id       text NOT NULL,
    class_name      text NOT NULL,
    teacher         text NOT NULL,          -- staff id of the class teacher ('' when the class has none)
    groups          text[] NOT NULL,        -- {parents,students}: which of the class's chats to forward to
    deadline        timestamptz NOT NULL,   -- the end of that school day's window
    status          text NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'forwarded', 'auto_forwarded', 'escalated')),
    note            text NOT NULL DEFAULT '',
    done_at         timestamptz,
    done_by         text NOT NULL DEFAULT '',
    UNIQUE (announcement_id, class_name)
);

CREATE INDEX forwarding_open ON forwarding_tasks (deadline) WHERE status = 'open';
