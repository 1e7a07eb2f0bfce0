-- Staff accounts and their sign-in attempts, the audit log of staff actions, and refunds.
CREATE TABLE staff_users (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    -- Bumped on a password change, role change or disable: every session of the user ends.
    session_version BIGINT NOT NULL DEFAULT 1,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until TIMESTAMP,
    last_login_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE login_attempts (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL,
    ip TEXT NOT NULL,
    succeeded INTEGER NOT NULL,
    attempted_at TIMESTAMP NOT NULL
);
CREATE INDEX login_attempts_ip ON login_attempts (ip, attempted_at);

CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    out_trade_no TEXT,
    target TEXT,
    detail TEXT NOT NULL,
    remote_addr TEXT
);
CREATE INDEX audit_log_at ON audit_log (id);
CREATE INDEX audit_log_order ON audit_log (out_trade_no, id);

CREATE TABLE refunds (
    out_refund_no TEXT PRIMARY KEY NOT NULL,
    out_trade_no TEXT NOT NULL REFERENCES orders (out_trade_no),
    amount_fen BIGINT NOT NULL CHECK (amount_fen > 0),
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    refund_id TEXT,
    requested_by TEXT NOT NULL,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    succeeded_at TIMESTAMP
);
CREATE INDEX refunds_order ON refunds (out_trade_no);
CREATE INDEX refunds_state ON refunds (state, updated_at);

-- The sum of refunds not failed or closed: a guarded UPDATE on it keeps refunds within what was paid.
ALTER TABLE orders ADD COLUMN refund_reserved_fen BIGINT NOT NULL DEFAULT 0;

-- Keyset pagination of the order list, newest first, overall and by state.
CREATE INDEX orders_created_key ON orders (created_at, out_trade_no);
CREATE INDEX orders_state_created_key ON orders (state, created_at, out_trade_no);
DROP INDEX orders_created;
DROP INDEX orders_state_created;
