//! The dashboard `GET /admin`: today, yesterday and the last 7 days (Beijing calendar days) at a
//! glance, orders still paying, open exceptions, and 30 days of revenue as a server-rendered SVG
//! bar chart with the same figures in a table.

use askama::Template;
use chrono::{NaiveDate, Utc};
use rocket::request::FlashMessage;
use rocket::response::content::RawHtml;
use rocket::{State, get, routes};

use super::layout::Chrome;
use super::session::Staff;
use super::view::yuan;
use crate::domain::Fen;
use crate::domain::figures::{Conversion, DayRevenue};
use crate::error::AppError;
use crate::payments::Payments;
use crate::web::page::render;
use crate::wxpay::time::beijing_date;

/// Days in the revenue chart, ending today.
pub const CHART_DAYS: u64 = 30;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_dashboard]
}

/// One period's cards.
pub struct PeriodView {
    pub title: &'static str,
    pub span: String,
    pub paid_count: i64,
    pub paid: String,
    /// "87.5%", or "—" when no order was created in the period.
    pub success_rate: String,
    pub created: i64,
}

/// A paid-order total of the days in `days` from `first` to `last` inclusive.
fn paid_between(days: &[DayRevenue], first: NaiveDate, last: NaiveDate) -> (i64, Fen) {
    days.iter()
        .filter(|d| d.day >= first && d.day <= last)
        .fold((0, Fen::ZERO), |(n, sum), d| (n + d.paid_count, sum.checked_add(d.paid).unwrap_or(sum)))
}

/// `paid / created` as a percentage with one decimal, from integers (rounded half up).
pub fn success_rate(c: Conversion) -> String {
    if c.created <= 0 {
        return "—".into();
    }
    let permille = (i128::from(c.paid) * 1000 + i128::from(c.created) / 2) / i128::from(c.created);
    format!("{}.{}%", permille / 10, permille % 10)
}

fn period(title: &'static str, days: &[DayRevenue], first: NaiveDate, last: NaiveDate, c: Conversion) -> PeriodView {
    let (paid_count, paid) = paid_between(days, first, last);
    let span = if first == last {
        first.format("%m-%d").to_string()
    } else {
        format!("{} 至 {}", first.format("%m-%d"), last.format("%m-%d"))
    };
    PeriodView { title, span, paid_count, paid: yuan(paid), success_rate: success_rate(c), created: c.created }
}

/// A bar of the chart, geometry precomputed so the template only prints numbers.
pub struct Bar {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub tooltip: String,
    /// The day under the bar, on every fifth bar and the last (today).
    pub label: Option<String>,
    pub label_x: u32,
}

pub struct Tick {
    pub y: u32,
    pub label: String,
}

pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub left: u32,
    pub right: u32,
    pub baseline: u32,
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    pub summary: String,
}

const CHART_WIDTH: u32 = 760;
const CHART_HEIGHT: u32 = 240;
const PLOT_LEFT: u32 = 72;
const PLOT_RIGHT: u32 = CHART_WIDTH - 8;
const PLOT_TOP: u32 = 12;
const PLOT_BOTTOM: u32 = CHART_HEIGHT - 28;
const TICKS: i64 = 4;

/// The smallest "round" axis step (1, 2 or 5 × 10^k fen, at least ¥1) with `TICKS` steps ≥ `max`.
pub fn axis_step(max: Fen) -> i64 {
    let m = max.get().max(1);
    let need = m / TICKS + i64::from(m % TICKS != 0);
    let mut magnitude: i64 = 100;
    loop {
        for m in [1, 2, 5] {
            if let Some(step) = magnitude.checked_mul(m)
                && step >= need
            {
                return step;
            }
        }
        match magnitude.checked_mul(10) {
            Some(next) => magnitude = next,
            None => return i64::MAX / TICKS,
        }
    }
}

/// Axis labels are whole yuan: the steps are multiples of ¥1.
fn whole_yuan(fen: i64) -> String {
    let full = yuan(Fen::new(fen));
    full.strip_suffix(".00").map(str::to_owned).unwrap_or(full)
}

pub fn chart(days: &[DayRevenue]) -> Chart {
    let max = days.iter().map(|d| d.paid).max().unwrap_or(Fen::ZERO);
    let step = axis_step(max);
    let top = step.saturating_mul(TICKS);
    let plot_height = i64::from(PLOT_BOTTOM - PLOT_TOP);
    let slot = (PLOT_RIGHT - PLOT_LEFT) / (days.len().max(1) as u32);
    let gap = (slot / 5).max(1);
    let bars = days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            // Integer scaling in i128: fen × pixels cannot overflow.
            let h = (i128::from(d.paid.get()) * i128::from(plot_height) / i128::from(top.max(1))) as u32;
            // A paid day never disappears into the axis.
            let h = if d.paid.is_positive() { h.max(1) } else { 0 };
            let x = PLOT_LEFT + slot * i as u32 + gap / 2;
            let is_label = i % 5 == 0 || i + 1 == days.len();
            Bar {
                x,
                y: PLOT_BOTTOM - h,
                width: slot - gap,
                height: h,
                tooltip: format!("{} 收款 {} · {} 笔", d.day.format("%Y-%m-%d"), yuan(d.paid), d.paid_count),
                label: is_label.then(|| d.day.format("%m-%d").to_string()),
                label_x: x + (slot - gap) / 2,
            }
        })
        .collect();
    let ticks = (0..=TICKS)
        .map(|i| Tick {
            y: PLOT_BOTTOM - (i64::from(PLOT_BOTTOM - PLOT_TOP) * i / TICKS) as u32,
            label: whole_yuan(step.saturating_mul(i)),
        })
        .collect();
    let total = days.iter().fold(Fen::ZERO, |sum, d| sum.checked_add(d.paid).unwrap_or(sum));
    let summary = format!("近 {} 天每日收款柱状图，合计 {}", days.len(), yuan(total));
    Chart {
        width: CHART_WIDTH,
        height: CHART_HEIGHT,
        left: PLOT_LEFT,
        right: PLOT_RIGHT,
        baseline: PLOT_BOTTOM,
        bars,
        ticks,
        summary,
    }
}

pub struct DayView {
    pub day: String,
    pub paid_count: i64,
    pub paid: String,
}

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    periods: Vec<PeriodView>,
    paying: i64,
    open_exceptions: i64,
    chart: Chart,
    /// Newest first, as people read a ledger.
    days: Vec<DayView>,
    total_count: i64,
    total: String,
    today: String,
}

#[get("/admin")]
async fn get_dashboard(
    staff: Staff,
    flash: Option<FlashMessage<'_>>,
    payments: &State<Payments>,
) -> Result<RawHtml<String>, AppError> {
    let today = beijing_date(Utc::now());
    let overview = payments.dashboard(today, CHART_DAYS).await?;
    let yesterday = today.pred_opt().unwrap_or(today);
    let week_start = today - chrono::Days::new(6);
    let periods = vec![
        period("今天", &overview.days, today, today, overview.today),
        period("昨天", &overview.days, yesterday, yesterday, overview.yesterday),
        period("近 7 天", &overview.days, week_start, today, overview.week),
    ];
    let (total_count, total) = overview
        .days
        .iter()
        .fold((0, Fen::ZERO), |(n, sum), d| (n + d.paid_count, sum.checked_add(d.paid).unwrap_or(sum)));
    let days = overview
        .days
        .iter()
        .rev()
        .map(|d| DayView { day: d.day.format("%Y-%m-%d").to_string(), paid_count: d.paid_count, paid: yuan(d.paid) })
        .collect();
    render(&DashboardPage {
        chrome: Chrome::new(&staff, "dashboard", flash),
        periods,
        paying: overview.paying,
        open_exceptions: overview.open_exceptions,
        chart: chart(&overview.days),
        days,
        total_count,
        total: yuan(total),
        today: today.format("%Y-%m-%d").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_rate_is_integer_math_and_dash_when_empty() {
        assert_eq!(success_rate(Conversion { created: 0, paid: 0 }), "—");
        assert_eq!(success_rate(Conversion { created: 8, paid: 7 }), "87.5%");
        assert_eq!(success_rate(Conversion { created: 3, paid: 2 }), "66.7%");
        assert_eq!(success_rate(Conversion { created: 3, paid: 3 }), "100.0%");
    }

    #[test]
    fn axis_steps_are_round_and_cover_the_maximum() {
        assert_eq!(axis_step(Fen::ZERO), 100);
        assert_eq!(axis_step(Fen::new(399)), 100);
        assert_eq!(axis_step(Fen::new(401)), 200);
        assert_eq!(axis_step(Fen::new(1_234_567)), 500_000);
        assert!(axis_step(Fen::new(i64::MAX)) > 0);
    }

    #[test]
    fn bars_scale_to_the_axis() {
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let days: Vec<DayRevenue> = (0..30)
            .map(|i| DayRevenue { day: day + chrono::Days::new(i), paid_count: 1, paid: Fen::new(i as i64 * 1000) })
            .collect();
        let c = chart(&days);
        assert_eq!(c.bars.len(), 30);
        assert_eq!(c.bars[0].height, 0);
        // ¥290 max → ¥100 steps, ¥400 top: ¥290 is 72.5% of the plot height.
        assert_eq!(c.bars[29].height, (PLOT_BOTTOM - PLOT_TOP) * 29 / 40);
        assert_eq!(c.ticks.last().unwrap().label, "¥400");
        assert_eq!(c.bars.iter().filter(|b| b.label.is_some()).count(), 7);
    }
}
