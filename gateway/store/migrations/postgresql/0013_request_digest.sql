-- The fingerprint of the request an Idempotency-Key was first used for, as migrations/sqlite/0012_request_digest.sql.
ALTER TABLE announcements ADD COLUMN request_digest text;
