-- A class's chat window set at run time by its class teacher (or the administration, or the IT admin): the
-- staff pages, the API, `zvonok class-window`. It takes the place of the class's `window:` in the school file
-- until it is reset. Times are the school's wall clock, "HH:MM" (text order is time order).
CREATE TABLE class_windows (
    school_id   TEXT NOT NULL,
    class_name  TEXT NOT NULL,
    opens       TEXT NOT NULL CHECK (length(opens) = 5 AND opens GLOB '[0-2][0-9]:[0-5][0-9]'),
    closes      TEXT NOT NULL CHECK (length(closes) = 5 AND closes GLOB '[0-2][0-9]:[0-5][0-9]'),
    set_by      TEXT NOT NULL,
    set_at      TEXT NOT NULL,
    PRIMARY KEY (school_id, class_name),
    CHECK (opens < closes)
);

-- The API tokens of a school (the settings page lists them, without their hashes).
CREATE INDEX api_tokens_by_school ON api_tokens (school_id, staff_id);
