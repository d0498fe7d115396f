-- An Idempotency-Key reused with another request is refused (409): the fingerprint of the request the key was
-- first used for (AnnouncementRequest.digest). NULL for announcements made before it was kept, or without a key.
ALTER TABLE announcements ADD COLUMN request_digest TEXT;
