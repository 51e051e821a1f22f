-- estimated: the row's counts (some or all) are the gateway's estimate, because the provider's final
-- count never came (the client aborted the stream, the provider cut it off, or the answer has none).
-- operation: what was called ("POST /chat/completions"); tool: the tool a call executed (Composio).
ALTER TABLE usage ADD COLUMN estimated boolean NOT NULL DEFAULT false;
ALTER TABLE usage ADD COLUMN operation text NOT NULL DEFAULT '';
ALTER TABLE usage ADD COLUMN tool text;
