-- A school's chats (Store.chats), read by every post: without this index each read scanned every school's
-- chats, so posting a region's closure school by school took time growing with the square of the schools.
-- (Store.dead_chats has chats_dead.)
CREATE INDEX chats_by_school ON chats (school_id);
