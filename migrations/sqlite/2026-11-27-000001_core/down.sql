DROP TABLE oauth_states;
DROP TABLE api_tokens;
DROP TABLE exceptions;
DROP TABLE notify_log;
DROP TABLE order_events;
DROP TABLE orders;
