-- Orders, their timeline, every notify delivery, exceptions for staff, API tokens, OAuth states.
-- Money is integer fen; times are UTC; booleans are 0/1 integers (the common subset of both backends).
CREATE TABLE orders (
    out_trade_no TEXT PRIMARY KEY NOT NULL,
    merchant_order_id TEXT NOT NULL UNIQUE,
    amount_fen BIGINT NOT NULL CHECK (amount_fen > 0),
    description TEXT NOT NULL,
    attach TEXT,
    state TEXT NOT NULL,
    sign_type TEXT NOT NULL,
    openid TEXT,
    client_ip TEXT,
    prepay_id TEXT,
    prepay_created_at TIMESTAMP,
    transaction_id TEXT UNIQUE,
    paid_fen BIGINT,
    paid_at TIMESTAMP,
    paid_after_close INTEGER NOT NULL DEFAULT 0,
    refunded_fen BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    closed_at TIMESTAMP,
    last_queried_at TIMESTAMP
);
CREATE INDEX orders_state_created ON orders (state, created_at);
CREATE INDEX orders_created ON orders (created_at);

CREATE TABLE order_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    out_trade_no TEXT NOT NULL REFERENCES orders (out_trade_no),
    kind TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT,
    source TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX order_events_order ON order_events (out_trade_no, id);

CREATE TABLE notify_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    received_at TIMESTAMP NOT NULL,
    remote_addr TEXT,
    out_trade_no TEXT,
    transaction_id TEXT,
    verdict TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw_body TEXT NOT NULL,
    reply TEXT NOT NULL
);
CREATE INDEX notify_log_order ON notify_log (out_trade_no, id);
CREATE INDEX notify_log_received ON notify_log (received_at);

CREATE TABLE exceptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    out_trade_no TEXT,
    detail TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    resolved_at TIMESTAMP,
    resolved_by TEXT,
    resolution_note TEXT
);
CREATE INDEX exceptions_open ON exceptions (resolved_at, id);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);

CREATE TABLE oauth_states (
    nonce TEXT PRIMARY KEY NOT NULL,
    used_at TIMESTAMP NOT NULL
);
