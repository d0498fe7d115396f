-- The queue a new announcement waits behind (Store.backlog, for the estimate every post shows), counted from
-- this index alone: the open deliveries by channel and account. Without it each post read the row of every open
-- delivery, so posting a region's closure school by school took time growing with the square of the schools.
CREATE INDEX deliveries_open_by_account ON deliveries (channel, account, not_before)
    WHERE status IN ('pending', 'sending', 'temporary_failure', 'unknown');
