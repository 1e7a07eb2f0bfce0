-- Where the shopper is sent back to after the checkout (the merchant's shop, with out_trade_no
-- and merchant_order_id appended): optional, given when the order is created through the API.
ALTER TABLE orders ADD COLUMN return_url TEXT;
