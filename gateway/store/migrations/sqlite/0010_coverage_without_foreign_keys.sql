-- A report line (coverage row) keeps no foreign keys and no index by delivery, as on PostgreSQL (its 0010 and
-- 0011). Each of an announcement's thousand lines cost two key lookups and an index entry more to write:
-- 5.4 ms against 4.3 ms a post's lines, on the writer's thread, which bounds a region's closure
-- (bench/plan_region.py). The lines are written only with their announcement and its deliveries, in the same
-- transaction (Store.create_announcement), and point only at deliveries of the same announcement (test_store.py
-- checks that, on both backends); announcements and deliveries are never deleted. Every statement reading the
-- lines names their announcement, so the primary key finds them, the lines of a delivery among them too.
-- SQLite cannot drop a constraint: the table is rebuilt, its rows kept.
CREATE TABLE coverage_0010 (
    announcement_id INTEGER NOT NULL,
    person          TEXT NOT NULL,      -- guardian key, or "staff:<id>"
    class_name      TEXT NOT NULL,
    route           TEXT NOT NULL CHECK (route IN ('chat', 'email', 'none')),
    delivery_id     INTEGER,
    email           TEXT NOT NULL DEFAULT '',
    note            TEXT NOT NULL,
    PRIMARY KEY (announcement_id, person, class_name)
);
INSERT INTO coverage_0010 (announcement_id, person, class_name, route, delivery_id, email, note)
    SELECT announcement_id, person, class_name, route, delivery_id, email, note FROM coverage;
DROP TABLE coverage;
ALTER TABLE coverage_0010 RENAME TO coverage;
