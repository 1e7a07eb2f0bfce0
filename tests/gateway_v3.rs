//! The product's WeChat Pay API v3 client against the simulator over real HTTP: prepay and its
//! reentry rule, query, close, refund and refund query, the trade bill (text and GZIP, hash
//! checked), platform certificates (downloaded once, picked up again after a rotation), the
//! WeChat Pay public key mode, a wrong merchant key (SIGN_ERROR, an operator's problem), and
//! WeChat's deliberately wrong signatures (retried, never believed).

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as ChronoDuration;
use common::*;
use wechat_checkout::simulator::{Faults, Outcome, SimV3Merchant, SimulatorConfig, SimulatorHandle};
use wechat_checkout::wxpay::bill::BillReader;
use wechat_checkout::wxpay::download_bill::{BillDownload, DownloadBill};
use wechat_checkout::wxpay::order_query::{CloseOrder, OrderQuery};
use wechat_checkout::wxpay::refund::{Refund, RefundQuery, RefundRef};
use wechat_checkout::wxpay::types::{BillType, OrderRef, RefundStatus, TradeState};
use wechat_checkout::wxpay::unified_order::UnifiedOrder;
use wechat_checkout::wxpay::v3::client::{V3Merchant, V3PayGateway};
use wechat_checkout::wxpay::v3::platform_keys::PlatformKeySource;
use wechat_checkout::wxpay::v3::verify::SignatureError;
use wechat_checkout::wxpay::v3::{ApiV3Key, MerchantKey, RequestSigner, VerifyingKey};
use wechat_checkout::wxpay::{ErrAction, ErrCode, Fen, PayGateway, WxError, time};

const APIV3_KEY: &str = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";
const SERIAL: &str = "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC";

struct Setup {
    sim: SimulatorHandle,
    key: Arc<MerchantKey>,
}

/// A simulator that knows the demo merchant's v3 key (`public_key_mode` for its notifies).
async fn setup(public_key_mode: bool) -> Setup {
    let key = Arc::new(MerchantKey::generate().unwrap());
    let config = SimulatorConfig {
        v3_merchants: vec![SimV3Merchant {
            mch_id: wechat_checkout::simulator::DEMO_MCH_ID.into(),
            apiv3_key: ApiV3Key::new(APIV3_KEY).unwrap(),
            serial_no: SERIAL.into(),
            public_key_pem: key.public_key_pem(),
            public_key_mode,
        }],
        ..fast_config()
    };
    Setup { sim: start_simulator(config).await, key }
}

fn gateway_with(s: &Setup, key: Arc<MerchantKey>, platform: PlatformKeySource) -> V3PayGateway {
    let merchant = V3Merchant {
        signer: RequestSigner { mchid: wechat_checkout::simulator::DEMO_MCH_ID.into(), serial_no: SERIAL.into(), key },
        apiv3_key: ApiV3Key::new(APIV3_KEY).unwrap(),
        appid: wechat_checkout::simulator::DEMO_APPID.into(),
        bound_appids: Vec::new(),
        platform,
    };
    V3PayGateway::new(merchant, fast_gateway_config(&s.sim.api_base())).unwrap()
}

fn gateway(s: &Setup) -> V3PayGateway {
    gateway_with(s, s.key.clone(), PlatformKeySource::certificates())
}

fn order(out_trade_no: &str, fen: i64) -> UnifiedOrder {
    UnifiedOrder::jsapi(
        "演示商店-测试商品",
        out_trade_no,
        Fen::new(fen),
        "203.0.113.7",
        "http://127.0.0.1:9/wechat/v3/notify",
        "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    )
}

#[tokio::test]
async fn prepay_query_close_and_certificates_downloaded_once() {
    let s = setup(false).await;
    let gw = gateway(&s);
    let first = gw.unified_order(&order("V3UORDER1", 1990)).await.unwrap();
    assert!(first.prepay_id.starts_with("wx"));
    // Identical parameters give back the same prepay; a changed amount is refused.
    assert_eq!(gw.unified_order(&order("V3UORDER1", 1990)).await.unwrap().prepay_id, first.prepay_id);
    let err = gw.unified_order(&order("V3UORDER1", 1991)).await.unwrap_err();
    assert!(matches!(err, WxError::Business { .. }), "{err}");

    let unpaid = gw.order_query(&OrderQuery::by_out_trade_no("V3UORDER1")).await.unwrap();
    assert_eq!((unpaid.trade_state, unpaid.transaction_id.as_deref()), (TradeState::NotPay, None));
    s.sim.sim.pay(&first.prepay_id, Outcome::Ok).await.unwrap();
    let paid = gw.order_query(&OrderQuery::by_out_trade_no("V3UORDER1")).await.unwrap();
    let payment = paid.payment().expect("a paid order carries its payment");
    assert_eq!(payment.total_fee, Fen::new(1990));
    let by_id = OrderQuery { order: OrderRef::TransactionId(payment.transaction_id.clone()) };
    assert_eq!(gw.order_query(&by_id).await.unwrap().out_trade_no, "V3UORDER1");

    let err = gw.order_query(&OrderQuery::by_out_trade_no("V3NONE")).await.unwrap_err();
    assert_eq!(err.err_code(), Some(ErrCode::ORDERNOTEXIST), "{err}");

    // Close: an unpaid order closes (204); a paid one answers ORDER_PAID.
    gw.unified_order(&order("V3CLOSE1", 100)).await.unwrap();
    s.sim.sim.advance_clock(Duration::from_secs(6 * 60));
    gw.close_order(&CloseOrder { out_trade_no: "V3CLOSE1".into() }).await.unwrap();
    assert_eq!(gw.order_query(&OrderQuery::by_out_trade_no("V3CLOSE1")).await.unwrap().trade_state, TradeState::Closed);
    let err = gw.close_order(&CloseOrder { out_trade_no: "V3UORDER1".into() }).await.unwrap_err();
    assert_eq!(err.err_code().map(|c| c.action()), Some(ErrAction::TreatAsPaid), "{err}");

    assert_eq!(s.sim.sim.v3_certificate_downloads(), 1, "downloaded once, used for every answer");
    s.sim.shutdown().await;
}

#[tokio::test]
async fn refunds_and_refund_queries() {
    let s = setup(false).await;
    let gw = gateway(&s);
    let p = gw.unified_order(&order("V3REFUND1", 2500)).await.unwrap();
    s.sim.sim.pay(&p.prepay_id, Outcome::Ok).await.unwrap();
    let refund = Refund {
        order: OrderRef::OutTradeNo("V3REFUND1".into()),
        out_refund_no: "V3REFUND1-R1".into(),
        total_fee: Fen::new(2500),
        refund_fee: Fen::new(1000),
        refund_desc: Some("部分退款".into()),
        refund_account: None,
        notify_url: Some("http://127.0.0.1:9/wechat/v3/refund-notify".into()),
    };
    let accepted = gw.refund(&refund).await.unwrap();
    assert_eq!((accepted.refund_fee, accepted.total_fee), (Fen::new(1000), Fen::new(2500)));
    // The same out_refund_no again refunds nothing more.
    assert_eq!(gw.refund(&refund).await.unwrap().refund_id, accepted.refund_id);
    let query = RefundQuery { by: RefundRef::OutRefundNo("V3REFUND1-R1".into()), offset: None };
    let processing = gw.refund_query(&query).await.unwrap();
    assert_eq!(processing.refunds[0].status, RefundStatus::Processing);
    s.sim.sim.settle_refund("V3REFUND1-R1", RefundStatus::Success).await.unwrap();
    let settled = gw.refund_query(&query).await.unwrap();
    assert_eq!(settled.refunds[0].status, RefundStatus::Success);
    assert!(settled.refunds[0].success_time.is_some());

    let none = RefundQuery { by: RefundRef::OutRefundNo("NONE".into()), offset: None };
    assert_eq!(gw.refund_query(&none).await.unwrap_err().err_code(), Some(ErrCode::REFUNDNOTEXIST));
    let by_order = RefundQuery { by: RefundRef::OutTradeNo("V3REFUND1".into()), offset: None };
    assert!(matches!(gw.refund_query(&by_order).await, Err(WxError::InvalidRequest(_))));
    s.sim.shutdown().await;
}

#[tokio::test]
async fn trade_bills_download_with_their_hash_checked() {
    let s = setup(false).await;
    let gw = gateway(&s);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("bill");
    let req = |date, gzip| DownloadBill { bill_date: date, bill_type: BillType::All, gzip, device_info: None };
    let today = time::beijing_date(s.sim.sim.now());
    s.sim.sim.advance_clock(Duration::from_secs(11 * 3600));
    assert_eq!(gw.download_bill(&req(today.pred_opt().unwrap(), false), &dest).await.unwrap(), BillDownload::NoBill);

    let day = time::beijing_date(s.sim.sim.now());
    for (no, fen) in [("V3BILL1", 1990), ("V3BILL2", 1)] {
        let p = gw.unified_order(&order(no, fen)).await.unwrap();
        s.sim.sim.pay(&p.prepay_id, Outcome::Ok).await.unwrap();
    }
    let next_morning = time::beijing_day_start(day.succ_opt().unwrap()) + ChronoDuration::hours(9);
    s.sim.sim.advance_clock((next_morning - s.sim.sim.now()).to_std().unwrap());
    assert!(matches!(gw.download_bill(&req(day, false), &dest).await, Err(WxError::BillCreating)));
    s.sim.sim.advance_clock(Duration::from_secs(3600 + 60));
    for gzip in [false, true] {
        let got = gw.download_bill(&req(day, gzip), &dest).await.unwrap();
        assert!(matches!(got, BillDownload::Written { gzip: g, bytes } if g == gzip && bytes > 0), "{got:?}");
        let mut bill = BillReader::open(std::fs::File::open(&dest).unwrap(), gzip).unwrap();
        let mut rows: Vec<(String, Fen)> = bill
            .by_ref()
            .map(|r| r.map(|row| (row.out_trade_no, row.settlement_fee)))
            .collect::<Result<_, _>>()
            .unwrap();
        rows.sort();
        assert_eq!(rows, vec![("V3BILL1".to_owned(), Fen::new(1990)), ("V3BILL2".to_owned(), Fen::new(1))]);
        assert_eq!(bill.finish().unwrap().settlement_total, Fen::new(1991));
    }
    s.sim.shutdown().await;
}

#[tokio::test]
async fn a_rotation_costs_one_more_download_and_the_public_key_mode_none() {
    let s = setup(false).await;
    let gw = gateway(&s);
    gw.unified_order(&order("V3ROT1", 100)).await.unwrap();
    s.sim.sim.rotate_v3_certificate();
    // The next answer is signed with a certificate we have not seen: fetched, then believed.
    gw.order_query(&OrderQuery::by_out_trade_no("V3ROT1")).await.unwrap();
    gw.order_query(&OrderQuery::by_out_trade_no("V3ROT1")).await.unwrap();
    assert_eq!(s.sim.sim.v3_certificate_downloads(), 2);

    let info = s.sim.sim.v3_platform();
    let public =
        PlatformKeySource::public_key(&info.public_key_id, VerifyingKey::from_pem(&info.public_key_pem).unwrap());
    let by_public_key = gateway_with(&s, s.key.clone(), public);
    by_public_key.order_query(&OrderQuery::by_out_trade_no("V3ROT1")).await.unwrap();
    assert_eq!(s.sim.sim.v3_certificate_downloads(), 2, "the public key mode downloads nothing");
    // A public key that is not WeChat's: its answers are never believed.
    let wrong = PlatformKeySource::public_key(&info.public_key_id, MerchantKey::generate().unwrap().verifying_key());
    let err =
        gateway_with(&s, s.key.clone(), wrong).order_query(&OrderQuery::by_out_trade_no("V3ROT1")).await.unwrap_err();
    assert!(matches!(err, WxError::BadAnswerSignature(SignatureError::Mismatch)), "{err}");
    s.sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_merchant_key_is_a_configuration_problem_and_probes_are_never_believed() {
    let s = setup(false).await;
    let wrong = gateway_with(&s, Arc::new(MerchantKey::generate().unwrap()), PlatformKeySource::certificates());
    let err = wrong.unified_order(&order("V3KEY1", 100)).await.unwrap_err();
    assert_eq!(err.err_code(), Some(ErrCode::SIGNERROR), "{err}");
    assert_eq!(err.err_code().unwrap().action(), ErrAction::FixConfiguration);
    assert!(!err.is_retryable());

    let gw = gateway(&s);
    gw.unified_order(&order("V3PROBE1", 100)).await.unwrap();
    s.sim.sim.set_faults(Faults { v3_signtest_rate: 1.0, ..Faults::default() });
    let err = gw.order_query(&OrderQuery::by_out_trade_no("V3PROBE1")).await.unwrap_err();
    assert!(matches!(err, WxError::BadAnswerSignature(SignatureError::Probe)), "{err}");
    s.sim.sim.set_faults(Faults { system_error_rate: 1.0, ..Faults::default() });
    let err = gw.order_query(&OrderQuery::by_out_trade_no("V3PROBE1")).await.unwrap_err();
    assert!(err.is_retryable(), "SYSTEM_ERROR: retried with the same request, then reported: {err}");
    s.sim.sim.set_faults(Faults::default());
    gw.order_query(&OrderQuery::by_out_trade_no("V3PROBE1")).await.unwrap();
    s.sim.shutdown().await;
}
