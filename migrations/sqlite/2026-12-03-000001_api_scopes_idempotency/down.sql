DROP TABLE api_idempotency_keys;
ALTER TABLE api_tokens DROP COLUMN scope;
