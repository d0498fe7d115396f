-- A school's chats (Store.chats, Store.dead_chats), read by every post: without this index each read scanned
-- every school's chats, so posting a region's closure school by school took time growing with the square of
-- the schools (bench/plan_region.py: 1.6 ms a post at 187 schools, 11,220 chats). In the order chats() returns.
CREATE INDEX chats_by_school ON chats (school_id, class_name, kind, address);
