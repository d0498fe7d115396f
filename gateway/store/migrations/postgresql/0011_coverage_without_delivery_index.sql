-- No index of report lines (coverage rows) by delivery: every statement reading the lines names their
-- announcement, so the primary key finds them, the lines of a delivery among them too; with the foreign keys
-- gone (0010) nothing else looked lines up by delivery. The index cost an entry for nearly every line written:
-- a thousand per post of a region's closure (bench/plan_region.py). SQLite dropped it too (its 0010).
DROP INDEX coverage_by_delivery;
