-- Staff web app and parents' links, as migrations/sqlite/0004_staff_web.sql: staff accounts, browser sessions,
-- API tokens, acknowledgements, opt-outs, cancelled announcements.

-- A staff member's password (argon2id hash). Who the staff are, and their roles, stay in the school file.
CREATE TABLE staff_accounts (
    school_id     text NOT NULL,
    staff_id      text NOT NULL,
    password_hash text NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (school_id, staff_id)
);

-- A browser session. Only the SHA-256 of the cookie's value is kept: a leaked table logs nobody in.
CREATE TABLE sessions (
    id_hash     text PRIMARY KEY,
    school_id   text NOT NULL,
    staff_id    text NOT NULL,
    csrf_token  text NOT NULL,          -- checked on every state-changing request of the session
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

CREATE INDEX sessions_by_staff ON sessions (school_id, staff_id);

-- An API token of an integration, acting as a staff member. Only its SHA-256 is kept.
CREATE TABLE api_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash  text NOT NULL UNIQUE,
    school_id   text NOT NULL,
    staff_id    text NOT NULL,
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);

-- «Ознакомлен»: a family confirmed it read the announcement its e-mail delivery carried (first click counts).
CREATE TABLE acknowledgements (
    delivery_id     bigint PRIMARY KEY REFERENCES deliveries (id),
    announcement_id bigint NOT NULL REFERENCES announcements (id),
    at              timestamptz NOT NULL
);

CREATE INDEX acknowledgements_by_announcement ON acknowledgements (announcement_id);

-- When a guardian unsubscribed from the letters (guardians.opted_out says whether).
ALTER TABLE guardians ADD COLUMN opted_out_at timestamptz;

-- An announcement the administration cancelled: what was not sent yet never goes out.
ALTER TABLE announcements ADD COLUMN cancelled_at timestamptz;
ALTER TABLE announcements ADD COLUMN cancelled_by text NOT NULL DEFAULT '';

-- Forwarding tasks of a cancelled announcement are closed as 'cancelled'.
ALTER TABLE forwarding_tasks DROP CONSTRAINT forwarding_tasks_status_check;
ALTER TABLE forwarding_tasks ADD CONSTRAINT forwarding_tasks_status_check
    CHECK (status IN ('open', 'forwarded', 'auto_forwarded', 'escalated', 'cancelled'));
