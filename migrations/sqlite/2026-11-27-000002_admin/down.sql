CREATE INDEX orders_created ON orders (created_at);
CREATE INDEX orders_state_created ON orders (state, created_at);
DROP INDEX orders_state_created_key;
DROP INDEX orders_created_key;
ALTER TABLE orders DROP COLUMN refund_reserved_fen;
DROP TABLE refunds;
DROP TABLE audit_log;
DROP TABLE login_attempts;
DROP TABLE staff_users;
