-- What an API token may do: read, write (orders, close) or refund (everything). Tokens issued
-- before scopes existed could do everything, so they keep doing so.
ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'refund';

-- Idempotency-Key (the Stripe semantics): one row per key of one API principal, inserted before
-- the request runs (so a concurrent twin finds it and is refused) and completed with the answer
-- that a retry with the same request is given again. Purged 24 hours after created_at.
CREATE TABLE api_idempotency_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    principal TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code INTEGER,
    response_body TEXT,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (principal, idem_key)
);
CREATE INDEX api_idempotency_keys_created ON api_idempotency_keys (created_at);
