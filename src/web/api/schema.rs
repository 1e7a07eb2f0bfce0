//! The shapes the API answers with, as OpenAPI schemas. The answers themselves are built by
//! `payments::order_view` (shared with the webhooks' `data`); `tests/api_contract.rs` checks every
//! real answer against these schemas, member by member, so the two cannot drift apart.

// The types exist for their schemas; nothing constructs them.
#![allow(dead_code)]

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// An order.
#[derive(ToSchema)]
#[schema(example = json!({
    "out_trade_no": "WC20261203080000A1B2C3D4",
    "merchant_order_id": "A-1001",
    "state": "PAID",
    "amount_fen": 1990,
    "amount_yuan": "19.90",
    "description": "演示商店-龙井茶",
    "attach": null,
    "checkout_url": "https://pay.example.com/pay/WC20261203080000A1B2C3D4",
    "transaction_id": "4200002026120312345678901234",
    "paid_fen": 1990,
    "paid_at": "2026-12-03T08:01:12Z",
    "paid_after_close": false,
    "created_at": "2026-12-03T08:00:00Z",
    "expires_at": "2026-12-03T10:00:00Z",
    "closed_at": null,
    "webhook_url": null,
    "return_url": "https://shop.example.com/orders/A-1001",
    "simulated": false
}))]
pub struct Order {
    /// Our order number: the one WeChat Pay knows.
    out_trade_no: String,
    /// The merchant's own id, unique.
    merchant_order_id: String,
    state: OrderState,
    /// The amount in fen (1 yuan = 100 fen).
    amount_fen: i64,
    /// The same amount in yuan, for display.
    amount_yuan: String,
    description: String,
    attach: Option<String>,
    /// The page the shopper opens in WeChat to pay.
    checkout_url: String,
    /// WeChat Pay's transaction id, once paid.
    transaction_id: Option<String>,
    /// What was paid, in fen, once paid.
    paid_fen: Option<i64>,
    paid_at: Option<String>,
    /// Paid after we had closed it: staff refund or keep it (the console shows an exception).
    paid_after_close: bool,
    created_at: String,
    expires_at: String,
    closed_at: Option<String>,
    /// Where this order's webhooks go (else `WEBHOOK_URL`).
    webhook_url: Option<String>,
    /// Where the paid (or closed) page sends the shopper back, with `out_trade_no` and
    /// `merchant_order_id` appended. Never proof of payment.
    return_url: Option<String>,
    /// `true` when the app runs against its simulator: no money moved.
    simulated: bool,
}

/// An order's state.
#[derive(ToSchema)]
pub enum OrderState {
    #[schema(rename = "CREATED")]
    Created,
    #[schema(rename = "PAYING")]
    Paying,
    #[schema(rename = "PAID")]
    Paid,
    #[schema(rename = "CLOSED")]
    Closed,
    #[schema(rename = "PAYERROR")]
    PayError,
}

/// A refund.
#[derive(ToSchema)]
#[schema(example = json!({
    "out_refund_no": "R-1001",
    "out_trade_no": "WC20261203080000A1B2C3D4",
    "state": "PROCESSING",
    "amount_fen": 500,
    "amount_yuan": "5.00",
    "reason": "退货",
    "refund_id": "50000000382026120300000000001",
    "requested_by": "api:ERP",
    "last_error": null,
    "created_at": "2026-12-03T09:00:00Z",
    "updated_at": "2026-12-03T09:00:01Z",
    "succeeded_at": null,
    "simulated": false
}))]
pub struct Refund {
    out_refund_no: String,
    out_trade_no: String,
    state: RefundState,
    amount_fen: i64,
    amount_yuan: String,
    reason: String,
    /// WeChat Pay's refund id, once it accepted the refund.
    refund_id: Option<String>,
    /// Who asked: a staff user name, or `api:<token name>`.
    requested_by: String,
    /// The last error sending it, while it is PENDING or after it FAILED.
    last_error: Option<String>,
    created_at: String,
    updated_at: String,
    succeeded_at: Option<String>,
    simulated: bool,
}

/// A refund's state.
#[derive(ToSchema)]
pub enum RefundState {
    #[schema(rename = "PENDING")]
    Pending,
    #[schema(rename = "PROCESSING")]
    Processing,
    #[schema(rename = "SUCCESS")]
    Success,
    #[schema(rename = "CHANGE")]
    Change,
    #[schema(rename = "CLOSED")]
    Closed,
    #[schema(rename = "FAILED")]
    Failed,
}

/// A page of orders, newest first.
#[derive(ToSchema)]
pub struct OrderPage {
    data: Vec<Order>,
    /// Whether older orders follow: pass `next_cursor` as `cursor` for them.
    has_more: bool,
    next_cursor: Option<String>,
    simulated: bool,
}

/// An order's refunds, oldest first.
#[derive(ToSchema)]
pub struct RefundList {
    data: Vec<Refund>,
    simulated: bool,
}

/// Every error.
#[derive(ToSchema)]
#[schema(example = json!({
    "error": { "code": "invalid", "message": "must be a positive number of fen", "field": "amount_fen" },
    "simulated": false
}))]
pub struct Error {
    error: ErrorDetail,
    simulated: bool,
}

/// What went wrong; `code` is one of the documented codes.
#[derive(ToSchema)]
pub struct ErrorDetail {
    code: String,
    message: String,
    /// The input at fault (`Idempotency-Key` for the key's errors).
    #[schema(required = false)]
    field: Option<String>,
    /// `insufficient_scope`: the scope the endpoint needs.
    #[schema(required = false)]
    required_scope: Option<String>,
    /// `insufficient_scope`: the token's scope.
    #[schema(required = false)]
    token_scope: Option<String>,
    /// `close_too_early`: when WeChat Pay will close it.
    #[schema(required = false)]
    closable_at: Option<String>,
    /// `close_too_early`: seconds until then (also the `Retry-After` header).
    #[schema(required = false)]
    retry_after_seconds: Option<i64>,
    /// `refund_refused`: the refund, FAILED.
    #[schema(required = false)]
    refund: Option<Value>,
    /// `conflict` from `POST /api/v1/orders/{out_trade_no}/payment`: why it cannot be paid now
    /// (`paid`, `closed`, `taken`, `other_app`).
    #[schema(required = false)]
    reason: Option<String>,
}

/// A Mini Program's shopper, signed in with a `wx.login` code. WeChat's `session_key` is never
/// returned.
#[derive(ToSchema)]
#[schema(example = json!({ "openid": "oZ7a1b2C3d4E5f6G7h8I9j0KlMnO", "unionid": null, "simulated": false }))]
pub struct MiniProgramSession {
    /// The shopper under the Mini Program's appid: what `POST …/payment` takes with `mini_program`.
    openid: String,
    /// Only when the Mini Program is bound to an Open Platform account.
    unionid: Option<String>,
    simulated: bool,
}

/// An order's payment parameters for one app, signed by the server.
#[derive(ToSchema)]
#[schema(example = json!({
    "out_trade_no": "WC20261203080000A1B2C3D4",
    "app": "mini_program",
    "params": {
        "timeStamp": "1796284800",
        "nonceStr": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
        "package": "prepay_id=wx20261203080000a1b2c3d4e5f6a7b8c9d0",
        "signType": "MD5",
        "paySign": "C380BEC2BFD727A4B6845133519F3AD6"
    },
    "simulated": false
}))]
pub struct Payment {
    out_trade_no: String,
    app: PaymentAppName,
    params: PaymentParams,
    simulated: bool,
}

/// The app a payment is for.
#[derive(ToSchema)]
pub enum PaymentAppName {
    #[schema(rename = "official_account")]
    OfficialAccount,
    #[schema(rename = "mini_program")]
    MiniProgram,
}

/// For `official_account` the six of `WeixinJSBridge.invoke('getBrandWCPayRequest', params, cb)`;
/// for `mini_program` the five of `wx.requestPayment`. Pass them on unchanged.
#[derive(ToSchema, Serialize)]
#[serde(untagged)]
pub enum PaymentParams {
    OfficialAccount(BridgeParams),
    MiniProgram(MiniProgramParams),
}

/// `getBrandWCPayRequest`'s parameters; `paySign` covers the other five.
#[derive(ToSchema, Serialize)]
pub struct BridgeParams {
    /// `WECHAT_APPID`.
    #[serde(rename = "appId")]
    app_id: String,
    /// Unix seconds, as a string.
    #[serde(rename = "timeStamp")]
    time_stamp: String,
    #[serde(rename = "nonceStr")]
    nonce_str: String,
    /// `prepay_id=…`.
    package: String,
    /// `MD5` or `HMAC-SHA256`: `WECHAT_SIGN_TYPE`.
    #[serde(rename = "signType")]
    sign_type: String,
    #[serde(rename = "paySign")]
    pay_sign: String,
}

/// `wx.requestPayment`'s parameters. `paySign` covers them and the Mini Program's appid
/// (`appId`), which `wx.requestPayment` does not take.
#[derive(ToSchema, Serialize)]
pub struct MiniProgramParams {
    /// Unix seconds, as a string.
    #[serde(rename = "timeStamp")]
    time_stamp: String,
    #[serde(rename = "nonceStr")]
    nonce_str: String,
    /// `prepay_id=…`.
    package: String,
    /// `MD5` or `HMAC-SHA256`: `WECHAT_SIGN_TYPE`.
    #[serde(rename = "signType")]
    sign_type: String,
    #[serde(rename = "paySign")]
    pay_sign: String,
}
