-- The app an order's prepay was issued for: 'official_account' (WECHAT_APPID) or 'mini_program'
-- (WECHAT_MINIPROGRAM_APPID). A prepay and the openid it names belong to one appid, and WeChat
-- ties the out_trade_no to it, so the order is paid in that app or not at all. NULL until the
-- first prepay; NULL beside a prepay from before Mini Programs means the Official Account.
ALTER TABLE orders ADD COLUMN prepay_app TEXT;
