ALTER TABLE orders DROP COLUMN return_url;
