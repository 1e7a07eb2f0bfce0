//! Reconciliation in the console: the runs, newest date first, with their figures
//! (`GET /admin/reconciliation`, any role); one date's run and findings
//! (`GET /admin/reconciliation/<date>`); and "立即对账" for a chosen date
//! (`POST /admin/reconciliation`, operators), audited in the transaction that claims the date.
//! The run is started in its own task and waited for a while: a long one goes on after the page
//! returns, and the run page shows it when done.

use std::time::Duration;

use askama::Template;
use chrono::{NaiveDate, NaiveDateTime, Utc};
use rocket::form::FromForm;
use rocket::request::FlashMessage;
use rocket::response::content::RawHtml;
use rocket::response::{Flash, Redirect};
use rocket::{State, get, post, routes};

use super::layout::Chrome;
use super::session::{AdminForm, CsrfField, Operator, Staff};
use super::view::{beijing_time, yuan};
use crate::domain::Fen;
use crate::domain::reconciliation::{FindingRecord, ReconciliationRun, RunState};
use crate::error::AppError;
use crate::payments::Payments;
use crate::payments::reconcile::findings::FindingKind;
use crate::payments::reconcile::{RunOptions, RunOutcome};
use crate::web::page::render;
use crate::wxpay::time::beijing;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_runs, get_run, post_run]
}

const RUNS_PER_PAGE: i64 = 60;
const FINDINGS_PER_PAGE: i64 = 200;
/// How long "立即对账" waits for the run before answering (it goes on in the background).
const WAIT_FOR_RUN: Duration = Duration::from_secs(20);

pub fn state_label(state: RunState) -> &'static str {
    match state {
        RunState::Pending => "待对账",
        RunState::Running => "对账中",
        RunState::Waiting => "等待账单",
        RunState::Failed => "失败",
        RunState::NoBill => "无账单",
        RunState::Done => "已完成",
    }
}

fn state_class(state: RunState) -> &'static str {
    match state {
        RunState::Done => "ok",
        RunState::NoBill => "muted",
        RunState::Pending | RunState::Running | RunState::Waiting => "wait",
        RunState::Failed => "bad",
    }
}

/// Labels of the detail fields the reconciliation writes; amounts (`*_fen`) are shown in yuan.
const DETAIL_LABELS: &[(&str, &str)] = &[
    ("out_trade_no", "商户订单号"),
    ("transaction_id", "微信订单号"),
    ("bill_amount_fen", "账单金额"),
    ("local_paid_fen", "我方支付金额"),
    ("local_amount_fen", "我方金额"),
    ("order_amount_fen", "订单金额"),
    ("local_paid_at", "我方支付时间"),
    ("local_state", "我方状态"),
    ("bill_status", "账单状态"),
];

fn detail_lines(detail: &str) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(detail) else {
        return vec![(String::new(), detail.to_owned())];
    };
    map.into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let shown = match (&v, k.ends_with("_fen")) {
                (serde_json::Value::Number(n), true) => n.as_i64().map_or_else(|| n.to_string(), |f| yuan(Fen::new(f))),
                (serde_json::Value::String(s), _) => s.clone(),
                (other, _) => other.to_string(),
            };
            let label = DETAIL_LABELS.iter().find(|(key, _)| *key == k).map_or(k, |(_, l)| (*l).to_owned());
            (label, shown)
        })
        .collect()
}

fn when(t: Option<NaiveDateTime>) -> String {
    t.map(|t| beijing_time(t.and_utc())).unwrap_or_default()
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

fn yesterday() -> NaiveDate {
    let today = Utc::now().with_timezone(&beijing()).date_naive();
    today.pred_opt().unwrap_or(today)
}

/// One run as the pages show it.
struct RunView {
    date: String,
    state: &'static str,
    state_code: &'static str,
    class: &'static str,
    attempts: i32,
    bill_rows: i64,
    bill_paid: String,
    bill_paid_count: i64,
    bill_refund: String,
    bill_refund_count: i64,
    local_paid: String,
    local_paid_count: i64,
    matched: i64,
    findings: i64,
    started_at: String,
    finished_at: String,
    next_attempt_at: String,
    lease_owner: String,
    error: String,
}

impl RunView {
    fn of(r: ReconciliationRun) -> RunView {
        let f = r.figures;
        RunView {
            date: r.bill_date,
            state: state_label(r.state),
            state_code: r.state.as_str(),
            class: state_class(r.state),
            attempts: r.attempts,
            bill_rows: f.bill_rows,
            bill_paid: yuan(Fen::new(f.bill_paid_fen)),
            bill_paid_count: f.bill_paid_count,
            bill_refund: yuan(Fen::new(f.bill_refund_fen)),
            bill_refund_count: f.bill_refund_count,
            local_paid: yuan(Fen::new(f.local_paid_fen)),
            local_paid_count: f.local_paid_count,
            matched: f.matched,
            findings: f.findings,
            started_at: when(r.started_at),
            finished_at: when(r.finished_at),
            next_attempt_at: when(r.next_attempt_at),
            lease_owner: if r.state == RunState::Running { r.lease_owner.unwrap_or_default() } else { String::new() },
            error: r.error.unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/reconciliation.html")]
struct RunsPage {
    chrome: Chrome,
    runs: Vec<RunView>,
    older: Option<String>,
    first: bool,
    can_run: bool,
    default_date: String,
}

#[get("/admin/reconciliation?<before>")]
async fn get_runs(
    staff: Staff,
    before: Option<&str>,
    flash: Option<FlashMessage<'_>>,
    payments: &State<Payments>,
) -> Result<RawHtml<String>, AppError> {
    // Only a real date is a cursor; anything else shows the first page.
    let before = before.and_then(parse_date).map(crate::payments::reconcile::date_key);
    let mut runs = payments.reconciliation_runs(before.clone(), RUNS_PER_PAGE + 1).await?;
    let older = (runs.len() as i64 > RUNS_PER_PAGE).then(|| {
        runs.truncate(RUNS_PER_PAGE as usize);
        format!("/admin/reconciliation?before={}", runs.last().map_or("", |r| r.bill_date.as_str()))
    });
    let chrome = Chrome::new(&staff, "reconciliation", flash);
    render(&RunsPage {
        can_run: chrome.is_operator(),
        chrome,
        runs: runs.into_iter().map(RunView::of).collect(),
        older,
        first: before.is_none(),
        default_date: crate::payments::reconcile::date_key(yesterday()),
    })
}

struct FindingView {
    id: i64,
    kind: String,
    label: &'static str,
    out_trade_no: Option<String>,
    item_key: String,
    is_refund: bool,
    detail: Vec<(String, String)>,
    resolution: String,
    created_at: String,
}

impl FindingView {
    fn of(f: FindingRecord) -> FindingView {
        let kind = FindingKind::parse(&f.kind);
        FindingView {
            id: f.id,
            label: kind.map_or("其他差异", |k| k.label()),
            is_refund: kind.is_some_and(|k| k.is_refund()),
            kind: f.kind,
            out_trade_no: f.out_trade_no,
            item_key: f.item_key,
            detail: detail_lines(&f.detail),
            resolution: f.resolution.unwrap_or_default(),
            created_at: beijing_time(f.created_at.and_utc()),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/reconciliation_run.html")]
struct RunPage {
    chrome: Chrome,
    /// The date as asked for, when it is not a date.
    invalid: Option<String>,
    date: String,
    run: Option<RunView>,
    findings: Vec<FindingView>,
    more: Option<String>,
    can_run: bool,
}

#[get("/admin/reconciliation/<date>?<after>")]
async fn get_run(
    staff: Staff,
    date: &str,
    after: Option<i64>,
    flash: Option<FlashMessage<'_>>,
    payments: &State<Payments>,
) -> Result<RawHtml<String>, AppError> {
    let chrome = Chrome::new(&staff, "reconciliation", flash);
    let can_run = chrome.is_operator();
    let Some(day) = parse_date(date) else {
        // Answered as a page (not an error) so a mistyped link still shows where to go.
        let shown: String = date.chars().take(40).collect();
        return render(&RunPage {
            chrome,
            invalid: Some(shown),
            date: String::new(),
            run: None,
            findings: Vec::new(),
            more: None,
            can_run,
        });
    };
    let key = crate::payments::reconcile::date_key(day);
    let (run, mut findings) = payments.reconciliation_of(day, after, FINDINGS_PER_PAGE + 1).await?;
    let more = (findings.len() as i64 > FINDINGS_PER_PAGE).then(|| {
        findings.truncate(FINDINGS_PER_PAGE as usize);
        format!("/admin/reconciliation/{key}?after={}", findings.last().map_or(0, |f| f.id))
    });
    render(&RunPage {
        chrome,
        invalid: None,
        date: key,
        run: run.map(RunView::of),
        findings: findings.into_iter().map(FindingView::of).collect(),
        more,
        can_run,
    })
}

#[derive(FromForm)]
struct RunForm {
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    date: String,
}

impl CsrfField for RunForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The flash message of a run's outcome.
fn describe(outcome: &RunOutcome) -> (bool, String) {
    let at = |t: chrono::DateTime<Utc>| t.with_timezone(&beijing()).format("%m-%d %H:%M").to_string();
    match outcome {
        RunOutcome::Finished(r) => (
            true,
            format!(
                "{} 对账完成（{}）：账单 {} 行，匹配 {} 笔，差异 {} 条（本次新增 {} 条），查单补记支付 {} 笔",
                r.bill_date,
                state_label(r.state),
                r.figures.bill_rows,
                r.figures.matched,
                r.differences,
                r.new_findings,
                r.applied
            ),
        ),
        RunOutcome::Waiting { bill_date, next_attempt_at } => {
            (true, format!("{bill_date} 的微信账单尚在生成，将于 {} 自动重试", at(*next_attempt_at)))
        }
        RunOutcome::Failed { bill_date, error, next_attempt_at } => {
            (false, format!("{bill_date} 对账失败：{error}；将于 {} 自动重试", at(*next_attempt_at)))
        }
        RunOutcome::NotClaimed { bill_date, lease_owner: Some(owner), .. } => {
            (false, format!("{bill_date} 正在由 {owner} 对账，请稍后刷新查看结果"))
        }
        RunOutcome::NotClaimed { bill_date, .. } => (false, format!("{bill_date} 未能开始对账，请稍后重试")),
    }
}

#[post("/admin/reconciliation", data = "<form>")]
async fn post_run(
    op: Operator,
    form: AdminForm<RunForm>,
    payments: &State<Payments>,
) -> Result<Flash<Redirect>, AppError> {
    let staff = op.0;
    let list = Redirect::to("/admin/reconciliation");
    let Some(date) = parse_date(&form.0.date) else {
        return Ok(Flash::error(list, "请选择要对账的日期（YYYY-MM-DD）"));
    };
    // WeChat keeps bills for three months and has none for days to come; a date far outside that
    // is a typo, refused before anything is written.
    let today = Utc::now().with_timezone(&beijing()).date_naive();
    if date > today || date < today - chrono::Duration::days(366) {
        return Ok(Flash::error(list, format!("只能对账过去一年内、今天及以前的日期（{date}）")));
    }
    let opts = RunOptions { requested_by: Some(staff.actor()), ..RunOptions::now() };
    // Its own task: the run is not cut short if the browser goes away or the wait below ends.
    let payments = payments.inner().clone();
    let run = tokio::spawn(async move { payments.reconcile_date(date, opts).await });
    let to_run = Redirect::to(format!("/admin/reconciliation/{}", crate::payments::reconcile::date_key(date)));
    Ok(match tokio::time::timeout(WAIT_FOR_RUN, run).await {
        Ok(Ok(Ok(outcome))) => match describe(&outcome) {
            (true, message) => Flash::success(to_run, message),
            (false, message) => Flash::error(to_run, message),
        },
        Ok(Ok(Err(e))) => {
            e.log();
            Flash::error(to_run, format!("{date} 对账失败：{}", e.public_message()))
        }
        Ok(Err(join)) => {
            tracing::error!(error = %join, "reconciliation task failed");
            Flash::error(to_run, format!("{date} 对账失败，请查看日志"))
        }
        Err(_) => Flash::warning(to_run, format!("{date} 对账仍在进行，请稍后刷新本页查看结果")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_show_yuan_and_labels() {
        let lines = detail_lines(r#"{"bill_amount_fen":1990,"local_paid_fen":2000,"transaction_id":"42","x":null}"#);
        assert_eq!(
            lines,
            vec![
                ("账单金额".to_owned(), "¥19.90".to_owned()),
                ("我方支付金额".to_owned(), "¥20.00".to_owned()),
                ("微信订单号".to_owned(), "42".to_owned()),
            ]
        );
        assert_eq!(detail_lines("not json"), vec![(String::new(), "not json".to_owned())]);
    }

    #[test]
    fn dates_are_strict() {
        assert_eq!(parse_date("2026-11-27"), NaiveDate::from_ymd_opt(2026, 11, 27));
        for bad in ["2026-11-31", "2026-1-27", "WC20261127", "", "2026-11-27x", "２０２６-11-27"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
