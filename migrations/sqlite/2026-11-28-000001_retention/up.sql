-- Jobs that work on the whole database rather than on rows (the retention job): one row each,
-- leased like an order (lease_owner, lease_until), and when its last pass finished, so that
-- several instances run it once per period between them.
CREATE TABLE job_runs (
    name TEXT PRIMARY KEY NOT NULL,
    lease_owner TEXT,
    lease_until TIMESTAMP,
    last_finished_at TIMESTAMP
);
-- Retention deletes by age; these let it find the old rows without reading the table.
CREATE INDEX oauth_states_used ON oauth_states (used_at);
CREATE INDEX login_attempts_at ON login_attempts (attempted_at);
