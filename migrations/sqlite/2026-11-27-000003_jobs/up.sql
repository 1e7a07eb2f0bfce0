-- Background work that settles payments by itself: when each order and refund is next checked
-- with WeChat, row leases so that several instances never work on the same row at once,
-- reconciliation runs and their findings, and merchant webhooks with every delivery attempt.
ALTER TABLE orders ADD COLUMN query_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN next_query_at TIMESTAMP;
ALTER TABLE orders ADD COLUMN lease_owner TEXT;
ALTER TABLE orders ADD COLUMN lease_until TIMESTAMP;
ALTER TABLE orders ADD COLUMN webhook_url TEXT;
CREATE INDEX orders_next_query ON orders (next_query_at);
CREATE INDEX orders_expiry ON orders (state, expires_at);
-- Reconciliation walks paid orders by (paid_at, out_trade_no); the dashboard sums paid_fen by
-- paid_at. One covering index serves both.
CREATE INDEX orders_paid_key ON orders (paid_at, out_trade_no, paid_fen);
CREATE INDEX refunds_refund_id ON refunds (refund_id);

ALTER TABLE refunds ADD COLUMN check_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE refunds ADD COLUMN next_check_at TIMESTAMP;
ALTER TABLE refunds ADD COLUMN lease_owner TEXT;
ALTER TABLE refunds ADD COLUMN lease_until TIMESTAMP;
CREATE INDEX refunds_next_check ON refunds (next_check_at);
CREATE INDEX refunds_created_key ON refunds (created_at, out_refund_no);

CREATE TABLE reconciliation_runs (
    bill_date TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until TIMESTAMP,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    next_attempt_at TIMESTAMP,
    bill_rows BIGINT NOT NULL DEFAULT 0,
    bill_paid_count BIGINT NOT NULL DEFAULT 0,
    bill_paid_fen BIGINT NOT NULL DEFAULT 0,
    bill_refund_count BIGINT NOT NULL DEFAULT 0,
    bill_refund_fen BIGINT NOT NULL DEFAULT 0,
    local_paid_count BIGINT NOT NULL DEFAULT 0,
    local_paid_fen BIGINT NOT NULL DEFAULT 0,
    matched BIGINT NOT NULL DEFAULT 0,
    findings BIGINT NOT NULL DEFAULT 0,
    error TEXT
);

CREATE TABLE reconciliation_findings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bill_date TEXT NOT NULL,
    kind TEXT NOT NULL,
    item_key TEXT NOT NULL,
    out_trade_no TEXT,
    detail TEXT NOT NULL,
    resolution TEXT,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (bill_date, kind, item_key)
);
CREATE INDEX reconciliation_findings_order ON reconciliation_findings (out_trade_no);

CREATE TABLE webhook_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    out_trade_no TEXT NOT NULL,
    url TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP,
    lease_owner TEXT,
    lease_until TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    delivered_at TIMESTAMP
);
CREATE INDEX webhook_events_due ON webhook_events (state, next_attempt_at);
CREATE INDEX webhook_events_order ON webhook_events (out_trade_no, id);

CREATE TABLE webhook_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id BIGINT NOT NULL REFERENCES webhook_events (id),
    attempted_at TIMESTAMP NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    response_snippet TEXT
);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id, id);
