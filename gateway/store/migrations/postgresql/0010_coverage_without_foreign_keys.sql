-- A report line (coverage row) no longer has foreign keys. PostgreSQL checks one with a trigger per row that
-- looks up and locks the row it references: an announcement's thousand report lines made two thousand such
-- lookups, 13 of the 22 ms its COPY took on the server (bench/plan_region.py, 187 schools). The lines are written
-- only with their announcement and its deliveries, in the same transaction (Store.create_announcement), and
-- point only at deliveries of the same announcement (test_store.py checks that, on both backends); announcements
-- and deliveries are never deleted. SQLite keeps the keys: there the check is an in-process index lookup.
ALTER TABLE coverage DROP CONSTRAINT coverage_announcement_id_fkey;
ALTER TABLE coverage DROP CONSTRAINT coverage_delivery_id_fkey;
