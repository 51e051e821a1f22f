-- true: the row's counts (some or all) are the gateway's estimate, because the provider's final count
-- never came (the client aborted the stream, the provider cut it off, or the answer carries no usage).
ALTER TABLE usage ADD COLUMN estimated boolean NOT NULL DEFAULT false;
