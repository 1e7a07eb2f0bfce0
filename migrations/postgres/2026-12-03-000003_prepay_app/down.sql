ALTER TABLE orders DROP COLUMN prepay_app;
