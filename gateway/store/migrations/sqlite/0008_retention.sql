-- Personal-data retention (Store.purge_personal_data): when an announcement's recipients were made anonymous.
-- An announcement with `purged_at` set names nobody: its e-mail deliveries' addresses and names, its report
-- lines' guardians and addresses, and its letters' error texts are gone; counts, statuses, classes and times stay.
ALTER TABLE announcements ADD COLUMN purged_at TEXT;

-- The daily purge looks only at announcements not purged yet, oldest first.
CREATE INDEX announcements_unpurged ON announcements (created_at) WHERE purged_at IS NULL;

-- ... and at the guardians who left the school.
CREATE INDEX guardians_left ON guardians (left_at) WHERE left_at IS NOT NULL;
