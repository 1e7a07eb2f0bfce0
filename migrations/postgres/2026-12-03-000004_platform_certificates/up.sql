-- The last answer of WeChat Pay API v3's GET /v3/certificates, shared by every instance so that a
-- refresh window costs one download rather than one per instance. The body is kept exactly as
-- WeChat sent it: its certificates stay encrypted under the APIv3 key, and an instance reading it
-- decrypts (and so authenticates) them again. One row per merchant (mch_id).
CREATE TABLE platform_certificates (
    mch_id TEXT PRIMARY KEY NOT NULL,
    body TEXT NOT NULL,
    fetched_at TIMESTAMP NOT NULL
);
