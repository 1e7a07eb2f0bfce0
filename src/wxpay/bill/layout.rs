//! The column vocabulary of bills: which header names mean which field, and the exact header lines
//! of every bill type in the current and the legacy format.

use crate::wxpay::types::BillType;

/// Which generation of the bill format a merchant receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BillLayout {
    /// The "免充值券" settlement format: 应结订单金额, 充值券退款金额, 订单金额, 申请退款金额, 费率备注.
    Current,
    /// The older format with 总金额 and 代金券或立减优惠金额 (24 columns for ALL).
    Legacy,
}

macro_rules! columns {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $canonical:literal $(| $synonym:literal)*),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub const COUNT: usize = $name::ALL.len();

            /// The name the current format uses, for error messages.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $canonical),* }
            }

            /// Every accepted name, `/`-separated, for error messages.
            pub fn display_name(self) -> &'static str {
                match self { $($name::$variant => concat!($canonical $(, "/", $synonym)*)),* }
            }

            /// Recognizes a (trimmed) header name, synonyms of both formats included.
            pub fn from_header_name(s: &str) -> Option<$name> {
                match s { $($canonical $(| $synonym)* => Some($name::$variant),)* _ => None }
            }

            pub(crate) fn index(self) -> usize {
                self as usize
            }
        }
    };
}

columns! {
    /// A data column. The settlement amount is 应结订单金额 today and was 总金额 in the legacy format;
    /// the coupon columns changed name three times as WeChat renamed its promotions.
    Column {
        TradeTime => "交易时间",
        Appid => "公众账号ID",
        MchId => "商户号",
        SubMchId => "特约商户号" | "子商户号",
        DeviceInfo => "设备号",
        TransactionId => "微信订单号",
        OutTradeNo => "商户订单号",
        Openid => "用户标识",
        TradeType => "交易类型",
        Status => "交易状态",
        BankType => "付款银行",
        FeeType => "货币种类",
        Settlement => "应结订单金额" | "总金额",
        Coupon => "代金券金额" | "代金券或立减优惠金额" | "企业红包金额",
        RefundId => "微信退款单号",
        OutRefundNo => "商户退款单号",
        RefundFee => "退款金额",
        CouponRefund => "充值券退款金额" | "代金券或立减优惠退款金额" | "企业红包退款金额",
        RefundType => "退款类型",
        RefundStatus => "退款状态",
        Body => "商品名称",
        Attach => "商户数据包",
        ServiceFee => "手续费",
        Rate => "费率",
        OrderFee => "订单金额",
        RequestedRefund => "申请退款金额",
        RateRemark => "费率备注",
        RefundApplyTime => "退款申请时间",
        RefundSuccessTime => "退款成功时间",
    }
}

columns! {
    /// A column of the summary (the last two lines).
    SummaryColumn {
        TradeCount => "总交易单数",
        SettlementTotal => "应结订单总金额" | "总交易额",
        RefundTotal => "退款总金额" | "总退款金额",
        CouponRefundTotal => "充值券退款总金额" | "总代金券或立减优惠退款金额" | "总企业红包退款金额",
        FeeTotal => "手续费总金额",
        OrderTotal => "订单总金额",
        RequestedRefundTotal => "申请退款总金额",
    }
}

/// Columns a bill cannot be reconciled without; their absence is a typed error.
pub const REQUIRED_COLUMNS: &[Column] = &[
    Column::TradeTime,
    Column::TransactionId,
    Column::OutTradeNo,
    Column::Status,
    Column::Settlement,
    Column::ServiceFee,
];

/// Summary columns every format has.
pub const REQUIRED_SUMMARY_COLUMNS: &[SummaryColumn] =
    &[SummaryColumn::TradeCount, SummaryColumn::SettlementTotal, SummaryColumn::FeeTotal];

/// The first summary column; a line starting with it ends the data rows.
pub const SUMMARY_MARKER: &str = "总交易单数";

/// Current ALL (27 columns), exactly as in the reference bill.
pub const CURRENT_ALL: &str = concat!(
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,",
    "应结订单金额,代金券金额,微信退款单号,",
    "商户退款单号,退款金额,充值券退款金额,退款类型,",
    "退款状态,商品名称,商户数据包,手续费,费率,",
    "订单金额,申请退款金额,费率备注",
);
/// Current SUCCESS (20 columns): no refund columns.
pub const CURRENT_SUCCESS: &str = concat!(
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,",
    "应结订单金额,代金券金额,商品名称,商户数据包,",
    "手续费,费率,订单金额,费率备注",
);
/// Current REFUND (29 columns): ALL with the two refund times after 代金券金额.
pub const CURRENT_REFUND: &str = concat!(
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,",
    "应结订单金额,代金券金额,退款申请时间,",
    "退款成功时间,微信退款单号,商户退款单号,退款金额,",
    "充值券退款金额,退款类型,退款状态,商品名称,",
    "商户数据包,手续费,费率,订单金额,申请退款金额,",
    "费率备注",
);
/// Legacy ALL (24 columns).
pub const LEGACY_ALL: &str = concat!(
    "交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,",
    "总金额,代金券或立减优惠金额,微信退款单号,",
    "商户退款单号,退款金额,代金券或立减优惠退款金额,",
    "退款类型,退款状态,商品名称,商户数据包,手续费,",
    "费率",
);
/// Legacy SUCCESS (18 columns).
pub const LEGACY_SUCCESS: &str = concat!(
    "交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,",
    "总金额,代金券或立减优惠金额,商品名称,商户数据包,",
    "手续费,费率",
);
/// Legacy REFUND (26 columns).
pub const LEGACY_REFUND: &str = concat!(
    "交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,",
    "总金额,代金券或立减优惠金额,退款申请时间,",
    "退款成功时间,微信退款单号,商户退款单号,退款金额,",
    "代金券或立减优惠退款金额,退款类型,退款状态,",
    "商品名称,商户数据包,手续费,费率",
);
pub const CURRENT_SUMMARY: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";
pub const LEGACY_SUMMARY: &str = "总交易单数,总交易额,总退款金额,总代金券或立减优惠退款金额,手续费总金额";

/// The header of a bill type. RECHARGE_REFUND bills list refunds, so they share the REFUND header.
pub fn header_line(bill_type: BillType, layout: BillLayout) -> &'static str {
    match (bill_type, layout) {
        (BillType::All, BillLayout::Current) => CURRENT_ALL,
        (BillType::Success, BillLayout::Current) => CURRENT_SUCCESS,
        (BillType::Refund | BillType::RechargeRefund, BillLayout::Current) => CURRENT_REFUND,
        (BillType::All, BillLayout::Legacy) => LEGACY_ALL,
        (BillType::Success, BillLayout::Legacy) => LEGACY_SUCCESS,
        (BillType::Refund | BillType::RechargeRefund, BillLayout::Legacy) => LEGACY_REFUND,
    }
}

/// The summary header of a layout (the same for every bill type).
pub fn summary_line(layout: BillLayout) -> &'static str {
    match layout {
        BillLayout::Current => CURRENT_SUMMARY,
        BillLayout::Legacy => LEGACY_SUMMARY,
    }
}
