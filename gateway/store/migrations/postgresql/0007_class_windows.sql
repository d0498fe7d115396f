-- Class windows set at run time, as migrations/sqlite/0007_class_windows.sql: a class's chat window set by its
-- class teacher (or the administration, or the IT admin) in place of the school file's `window:` until reset.
-- Times are the school's wall clock, "HH:MM" (text order is time order).
CREATE TABLE class_windows (
    school_id   text NOT NULL,
    class_name  text NOT NULL,
    opens       text NOT NULL CHECK (opens ~ '^([01][0-9]|2[0-3]):[0-5][0-9]$'),
    closes      text NOT NULL CHECK (closes ~ '^([01][0-9]|2[0-3]):[0-5][0-9]$'),
    set_by      text NOT NULL,
    set_at      timestamptz NOT NULL,
    PRIMARY KEY (school_id, class_name),
    CHECK (opens COLLATE "C" < closes COLLATE "C")
);

-- The API tokens of a school (the settings page lists them, without their hashes).
CREATE INDEX api_tokens_by_school ON api_tokens (school_id, staff_id);
