//! wechat-checkout: WeChat Pay (API v2, JSAPI) checkout, notify handling, operations and
//! reconciliation in one Rocket application. See README.md for the tour.

pub mod simulator;
pub mod wxpay;
