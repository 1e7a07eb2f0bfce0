-- Alerts for staff (ALERT_WEBHOOK_URL): one row per thing to tell, unique by its key so that a
-- source seen by two passes or two instances is alerted once; delivered by the alerts job with
-- row leases, retried with back-off, and counted for the hourly limit by sent_at.
CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY,
    alert_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    link TEXT,
    occurred_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at TIMESTAMP,
    sent_at TIMESTAMP,
    summarized_by TEXT,
    lease_owner TEXT,
    lease_until TIMESTAMP
);
CREATE INDEX alerts_due ON alerts (state, next_attempt_at);
CREATE INDEX alerts_sent ON alerts (sent_at);

-- Where the search for new sources starts (sources older than the first pass with alerts on are
-- never alerted); the row also serializes the instances that claim alerts against the limit.
CREATE TABLE alert_cursors (
    name TEXT PRIMARY KEY NOT NULL,
    since TIMESTAMP NOT NULL
);

-- The alerts job looks for exceptions and webhook attempts of the last minutes.
CREATE INDEX exceptions_created ON exceptions (created_at);
CREATE INDEX webhook_attempts_at ON webhook_attempts (attempted_at);
