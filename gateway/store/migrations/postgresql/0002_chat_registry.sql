-- Chat registry: when the bot's access to a chat was last confirmed by a health check.
ALTER TABLE chats ADD COLUMN checked_at timestamptz;
