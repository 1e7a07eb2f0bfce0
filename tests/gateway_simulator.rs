//! The product's WeChat Pay client against the simulator over real HTTP: every request type,
//! the business errors, reentry, retries, timeouts, the backup host and forged replies.

mod common;

use std::time::Duration;

use chrono::Duration as ChronoDuration;
use common::*;
use wechat_checkout::simulator::{Faults, Outcome};
use wechat_checkout::wxpay::bill::BillReader;
use wechat_checkout::wxpay::download_bill::{BillDownload, DownloadBill};
use wechat_checkout::wxpay::order_query::{CloseOrder, OrderQuery};
use wechat_checkout::wxpay::refund::{Refund, RefundQuery, RefundRef};
use wechat_checkout::wxpay::types::{BillType, OrderRef, RefundStatus, TradeState, TradeType};
use wechat_checkout::wxpay::unified_order::UnifiedOrder;
use wechat_checkout::wxpay::{
    ApiKey, ErrCode, Fen, GatewayConfig, HttpPayGateway, PayGateway, SignType, WxError, time,
};

fn order(out_trade_no: &str, fen: i64) -> UnifiedOrder {
    UnifiedOrder::jsapi(
        "演示商店-测试商品",
        out_trade_no,
        Fen::new(fen),
        "203.0.113.7",
        "http://127.0.0.1:9/wechat/notify",
        "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    )
}

fn code(e: &WxError) -> Option<String> {
    e.err_code().map(|c: ErrCode| c.as_str().to_owned())
}

#[tokio::test]
async fn unified_order_and_reentry() {
    let sim = start_simulator(fast_config()).await;
    for st in [SignType::Md5, SignType::HmacSha256] {
        let gw = gateway(&sim, demo_merchant(st));
        let no = format!("UO{}", st.hex_len());
        let first = gw.unified_order(&order(&no, 1990)).await.unwrap();
        assert!(first.prepay_id.starts_with("wx"));
        assert_eq!(first.trade_type, TradeType::Jsapi);
        // Identical parameters (a new nonce, a new signature) give back the same prepay.
        let again = gw.unified_order(&order(&no, 1990)).await.unwrap();
        assert_eq!(again.prepay_id, first.prepay_id);
        // A different amount under the same out_trade_no is refused.
        let err = gw.unified_order(&order(&no, 1991)).await.unwrap_err();
        assert_eq!(code(&err).as_deref(), Some("INVALID_REQUEST"), "{err}");
        // A different trade type too.
        let mut native = order(&no, 1990);
        native.trade_type = TradeType::Native;
        native.openid = None;
        native.product_id = Some("P1".into());
        let err = gw.unified_order(&native).await.unwrap_err();
        assert_eq!(code(&err).as_deref(), Some("OUT_TRADE_NO_USED"), "{err}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn native_and_mweb_orders_return_their_urls() {
    let sim = start_simulator(fast_config()).await;
    let gw = gateway(&sim, demo_merchant(SignType::Md5));
    let mut native = order("NATIVE1", 100);
    native.trade_type = TradeType::Native;
    native.openid = None;
    native.product_id = Some("SKU1".into());
    let reply = gw.unified_order(&native).await.unwrap();
    assert!(reply.code_url.unwrap().starts_with("weixin://wxpay/bizpayurl"));
    let mut mweb = order("MWEB1", 100);
    mweb.trade_type = TradeType::Mweb;
    mweb.openid = None;
    mweb.scene_info =
        Some(r#"{"h5_info":{"type":"Wap","wap_url":"https://shop.example.com","wap_name":"演示"}}"#.into());
    assert!(gw.unified_order(&mweb).await.unwrap().mweb_url.is_some());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_request_the_client_knows_is_invalid_is_never_sent() {
    let double = raw_double(None).await;
    let gw = HttpPayGateway::new(demo_merchant(SignType::Md5), fast_gateway_config(&double.base_url)).unwrap();
    let mut no_openid = order("X1", 1);
    no_openid.openid = None;
    assert!(matches!(gw.unified_order(&no_openid).await, Err(WxError::InvalidRequest(_))));
    assert!(matches!(gw.unified_order(&order("X1", 0)).await, Err(WxError::InvalidRequest(_))));
    assert_eq!(double.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_wrong_key_is_a_signature_error() {
    let sim = start_simulator(fast_config()).await;
    let mut merchant = demo_merchant(SignType::Md5);
    merchant.key = ApiKey::new("0123456789abcdef0123456789abcdef").unwrap();
    let err = gateway(&sim, merchant).unified_order(&order("SIG1", 1)).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("SIGNERROR"), "{err}");
    assert!(!err.is_retryable());
    sim.shutdown().await;
}

#[tokio::test]
async fn query_pay_close_and_their_errors() {
    let sim = start_simulator(fast_config()).await;
    let gw = gateway(&sim, demo_merchant(SignType::HmacSha256));

    let err = gw.order_query(&OrderQuery::by_out_trade_no("NOPE")).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("ORDERNOTEXIST"));

    // Paid: query shows SUCCESS with the payment facts; close and re-order say ORDERPAID.
    let prepay = gw.unified_order(&order("PAID1", 1990)).await.unwrap();
    let q = gw.order_query(&OrderQuery::by_out_trade_no("PAID1")).await.unwrap();
    assert_eq!(q.trade_state, TradeState::NotPay);
    sim.sim.pay(&prepay.prepay_id, Outcome::Ok).await.unwrap();
    let q = gw.order_query(&OrderQuery::by_out_trade_no("PAID1")).await.unwrap();
    assert_eq!(q.trade_state, TradeState::Success);
    assert_eq!(q.total_fee, Some(Fen::new(1990)));
    let transaction_id = q.transaction_id.clone().unwrap();
    let by_id = gw.order_query(&OrderQuery { order: OrderRef::TransactionId(transaction_id) }).await.unwrap();
    assert_eq!(by_id.out_trade_no, "PAID1");
    let err = gw.close_order(&CloseOrder { out_trade_no: "PAID1".into() }).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("ORDERPAID"));
    let err = gw.unified_order(&order("PAID1", 1990)).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("ORDERPAID"));

    // Unpaid: closing inside the 5-minute window is refused, then allowed.
    gw.unified_order(&order("CLOSE1", 500)).await.unwrap();
    let err = gw.close_order(&CloseOrder { out_trade_no: "CLOSE1".into() }).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("TRADE_STATE_ERROR"), "{err}");
    sim.sim.advance_clock(Duration::from_secs(5 * 60 + 1));
    gw.close_order(&CloseOrder { out_trade_no: "CLOSE1".into() }).await.unwrap();
    let err = gw.close_order(&CloseOrder { out_trade_no: "CLOSE1".into() }).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("ORDERCLOSED"));
    let err = gw.unified_order(&order("CLOSE1", 500)).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("ORDERCLOSED"));
    assert_eq!(gw.order_query(&OrderQuery::by_out_trade_no("CLOSE1")).await.unwrap().trade_state, TradeState::Closed);
    let err = gw.close_order(&CloseOrder { out_trade_no: "NEVER".into() }).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("ORDERNOTEXIST"));
    sim.shutdown().await;
}

fn refund(out_refund_no: &str, total: i64, amount: i64) -> Refund {
    Refund {
        order: OrderRef::OutTradeNo("RF1".into()),
        out_refund_no: out_refund_no.into(),
        total_fee: Fen::new(total),
        refund_fee: Fen::new(amount),
        refund_desc: Some("顾客退货".into()),
        refund_account: None,
        notify_url: None,
    }
}

#[tokio::test]
async fn refunds_and_refund_queries() {
    let sim = start_simulator(fast_config()).await;
    let gw = gateway(&sim, demo_merchant(SignType::Md5));

    let err = gw.refund(&refund("R0", 1000, 100)).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("ORDERNOTEXIST"), "unpaid orders cannot be refunded");

    let prepay = gw.unified_order(&order("RF1", 1000)).await.unwrap();
    sim.sim.pay(&prepay.prepay_id, Outcome::Ok).await.unwrap();

    let first = gw.refund(&refund("R1", 1000, 300)).await.unwrap();
    assert_eq!(first.refund_fee, Fen::new(300));
    // The same out_refund_no again refunds nothing more: same refund back.
    let retry = gw.refund(&refund("R1", 1000, 300)).await.unwrap();
    assert_eq!(retry.refund_id, first.refund_id);
    // Same number, different amount: refused.
    let err = gw.refund(&refund("R1", 1000, 400)).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("PARAM_ERROR"), "{err}");
    // Wrong order total: refused.
    let err = gw.refund(&refund("R2", 999, 100)).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("PARAM_ERROR"), "{err}");
    // A second refund within a minute is rate limited; after it, more than what is left is refused.
    let err = gw.refund(&refund("R2", 1000, 100)).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("INVALID_REQ_TOO_MUCH"), "{err}");
    sim.sim.advance_clock(Duration::from_secs(61));
    let err = gw.refund(&refund("R2", 1000, 701)).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("ERROR"), "{err}");
    gw.refund(&refund("R2", 1000, 700)).await.unwrap();

    let q = gw.refund_query(&RefundQuery { by: RefundRef::OutTradeNo("RF1".into()), offset: None }).await.unwrap();
    assert_eq!(q.refunds.len(), 2);
    assert_eq!(q.total_fee, Fen::new(1000));
    let by_no = gw.refund_query(&RefundQuery { by: RefundRef::OutRefundNo("R1".into()), offset: None }).await.unwrap();
    assert_eq!(by_no.refunds[0].refund_id, first.refund_id);

    sim.sim.settle_refund("R1", RefundStatus::Success).await.unwrap();
    let settled =
        gw.refund_query(&RefundQuery { by: RefundRef::RefundId(first.refund_id.clone()), offset: None }).await.unwrap();
    assert_eq!(settled.refunds[0].status, RefundStatus::Success);
    assert!(settled.refunds[0].success_time.is_some());
    assert_eq!(gw.order_query(&OrderQuery::by_out_trade_no("RF1")).await.unwrap().trade_state, TradeState::Refund);

    let err =
        gw.refund_query(&RefundQuery { by: RefundRef::OutRefundNo("NONE".into()), offset: None }).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("REFUNDNOTEXIST"));
    sim.shutdown().await;
}

#[tokio::test]
async fn bills_download_as_text_and_gzip() {
    let sim = start_simulator(fast_config()).await;
    let gw = gateway(&sim, demo_merchant(SignType::Md5));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("bill");
    let today = time::beijing_date(sim.sim.now());

    // Nothing happened the day before: "No Bill Exist" is an empty bill.
    let yesterday = today.pred_opt().unwrap();
    let req = |date, gzip| DownloadBill { bill_date: date, bill_type: BillType::All, gzip, device_info: None };
    sim.sim.advance_clock(Duration::from_secs(11 * 3600));
    assert_eq!(gw.download_bill(&req(yesterday, false), &dest).await.unwrap(), BillDownload::NoBill);

    // Pay two orders today, then come back tomorrow after 10:00.
    let now = sim.sim.now();
    let day = time::beijing_date(now);
    for (no, fen) in [("B1", 1990), ("B2", 1)] {
        let p = gw.unified_order(&order(no, fen)).await.unwrap();
        sim.sim.pay(&p.prepay_id, Outcome::Ok).await.unwrap();
    }
    let err = gw.download_bill(&req(day, false), &dest).await.unwrap_err();
    assert!(matches!(err, WxError::ReturnFail { .. }), "today's bill does not exist yet: {err}");
    let next_morning = time::beijing_day_start(day.succ_opt().unwrap()) + ChronoDuration::hours(9);
    sim.sim.advance_clock((next_morning - sim.sim.now()).to_std().unwrap());
    assert!(matches!(gw.download_bill(&req(day, false), &dest).await, Err(WxError::BillCreating)));
    sim.sim.advance_clock(Duration::from_secs(3600 + 60));

    for gzip in [false, true] {
        let got = gw.download_bill(&req(day, gzip), &dest).await.unwrap();
        let BillDownload::Written { gzip: was_gzip, bytes } = got else { panic!("no bill: {got:?}") };
        assert_eq!(was_gzip, gzip);
        assert!(bytes > 0);
        // The product's parser reads what the client downloaded: rows by header name, exact fen,
        // and the summary lines cross-checked.
        let mut bill = BillReader::open(std::fs::File::open(&dest).unwrap(), gzip).unwrap();
        let mut rows: Vec<(String, Fen)> = bill
            .by_ref()
            .map(|r| r.map(|row| (row.out_trade_no, row.settlement_fee)))
            .collect::<Result<_, _>>()
            .unwrap();
        rows.sort();
        assert_eq!(rows, vec![("B1".to_owned(), Fen::new(1990)), ("B2".to_owned(), Fen::new(1))]);
        let summary = bill.finish().unwrap();
        assert_eq!(summary.trade_count, 2);
        assert_eq!(summary.settlement_total, Fen::new(1991));
    }

    sim.sim.set_faults(Faults { bill_creating: true, ..Faults::default() });
    assert!(matches!(gw.download_bill(&req(day, false), &dest).await, Err(WxError::BillCreating)));
    sim.shutdown().await;
}

#[tokio::test]
async fn system_errors_are_retried_with_the_same_request_then_reported() {
    let sim = start_simulator(fast_config()).await;
    let gw = gateway(&sim, demo_merchant(SignType::Md5));
    sim.sim.set_faults(Faults { system_error_rate: 1.0, ..Faults::default() });
    let err = gw.unified_order(&order("SYS1", 1)).await.unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("SYSTEMERROR"));
    assert!(err.is_retryable());
    // Garbled replies are retried too; once the faults stop the identical request succeeds.
    sim.sim.set_faults(Faults { garbled_rate: 0.5, system_error_rate: 0.3, ..Faults::default() });
    let gw_many = HttpPayGateway::new(
        demo_merchant(SignType::Md5),
        GatewayConfig { max_attempts: 30, ..fast_gateway_config(&sim.api_base()) },
    )
    .unwrap();
    let p1 = gw_many.unified_order(&order("SYS2", 1)).await.unwrap();
    let p2 = gw_many.unified_order(&order("SYS2", 1)).await.unwrap();
    assert_eq!(p1.prepay_id, p2.prepay_id);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_timeout_is_retried_identically_then_typed() {
    let double = raw_double(None).await;
    let config = GatewayConfig { request_timeout: Duration::from_millis(200), ..fast_gateway_config(&double.base_url) };
    let gw = HttpPayGateway::new(demo_merchant(SignType::Md5), config).unwrap();
    let err = gw.order_query(&OrderQuery::by_out_trade_no("T1")).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(double.hits.load(std::sync::atomic::Ordering::SeqCst), 3);
    let bodies = double.bodies.lock().await;
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "every retry sends the same bytes");

    // The simulator's slow replies: the first attempts time out, the reentry returns the prepay.
    let sim = start_simulator(fast_config()).await;
    sim.sim.set_faults(Faults { slow_rate: 1.0, slow_ms: 800, ..Faults::default() });
    let config = GatewayConfig { request_timeout: Duration::from_millis(300), ..fast_gateway_config(&sim.api_base()) };
    let gw = HttpPayGateway::new(demo_merchant(SignType::Md5), config).unwrap();
    let err = gw.unified_order(&order("SLOW1", 1)).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    sim.sim.set_faults(Faults::default());
    let gw = gateway(&sim, demo_merchant(SignType::Md5));
    assert!(gw.unified_order(&order("SLOW1", 1)).await.is_ok(), "the order created by the timed-out call is reentered");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_backup_host_takes_over_when_the_primary_is_down() {
    let sim = start_simulator(fast_config()).await;
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let config = GatewayConfig { backup_url: Some(sim.api_base()), ..fast_gateway_config(&dead_url) };
    let gw = HttpPayGateway::new(demo_merchant(SignType::Md5), config).unwrap();
    assert!(gw.unified_order(&order("BACKUP1", 1)).await.is_ok());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_reply_with_a_bad_signature_is_rejected() {
    const FORGED: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><result_code><![CDATA[SUCCESS]]></result_code><appid>wxd930ea5d5a258f4f</appid><mch_id>10000100</mch_id><trade_state>SUCCESS</trade_state><out_trade_no>F1</out_trade_no><transaction_id>4200000000000000000000000001</transaction_id><total_fee>1</total_fee><nonce_str>abc</nonce_str><sign>9A0A8659F005D6984697E2CA0A9CF3B7</sign></xml>";
    let double = raw_double(Some(FORGED)).await;
    let gw = HttpPayGateway::new(demo_merchant(SignType::Md5), fast_gateway_config(&double.base_url)).unwrap();
    let err = gw.order_query(&OrderQuery::by_out_trade_no("F1")).await.unwrap_err();
    assert!(matches!(err, WxError::BadReplySignature(_)), "{err}");
    assert_eq!(double.hits.load(std::sync::atomic::Ordering::SeqCst), 1, "a forged reply is not retried");
}
