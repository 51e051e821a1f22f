-- estimated: the row's counts (some or all) are the gateway's estimate, because the provider's final
-- count never came (the client aborted the stream, the provider cut it off, or the answer has none).
-- operation: what was called ("POST /chat/completions"); tool: the tool a call executed (Composio).
ALTER TABLE usage ADD COLUMN estimated BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN operation TEXT NOT NULL DEFAULT '';
ALTER TABLE usage ADD COLUMN tool TEXT;
