DROP INDEX webhook_attempts_at;
DROP INDEX exceptions_created;
DROP TABLE alert_cursors;
DROP INDEX alerts_sent;
DROP INDEX alerts_due;
DROP TABLE alerts;
