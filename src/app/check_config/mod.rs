//! `wechat-checkout check-config`: loads the configuration exactly as `serve` does, then tries
//! what it names (the database, the WeChat Pay API, the merchant certificate, the webhook URL)
//! and reports each in one plain line, every failure naming the variable to fix.

mod certificate;
mod database;
mod webhook;
mod wechat_api;
mod wechat_api_v3;

use std::fmt;

use rocket::figment::Figment;

use crate::config::AppConfig;

/// How one check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but needs attention soon (a certificate about to expire) or limits something.
    Warn,
    /// Not applicable to this configuration (nothing to try).
    Skip,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Skip => "skip",
            Status::Fail => "FAIL",
        }
    }
}

/// One check's result: `ok    database: PostgreSQL at …, migrations current`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub status: Status,
    pub subject: &'static str,
    pub text: String,
}

impl Line {
    pub(crate) fn new(status: Status, subject: &'static str, text: impl Into<String>) -> Line {
        Line { status, subject, text: text.into() }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<6}{}: {}", self.status.label(), self.subject, self.text)
    }
}

/// Every check's line, in a fixed order.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub lines: Vec<Line>,
}

impl Report {
    /// No check failed (warnings and skipped checks pass).
    pub fn passed(&self) -> bool {
        self.lines.iter().all(|l| l.status != Status::Fail)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// Runs every check against the configuration `serve` would load from `figment` and the
/// environment. A configuration that does not load is the only line: nothing else can be tried.
pub async fn run(figment: &Figment) -> Report {
    let mut report = Report::default();
    let config = match AppConfig::load(figment) {
        Ok(config) => config,
        Err(e) => {
            report.lines.push(Line::new(Status::Fail, "configuration", e.to_string()));
            return report;
        }
    };
    report.lines.push(Line::new(Status::Ok, "configuration", describe(&config)));
    report.lines.push(database::check(&config).await);
    report.lines.push(match config.wechat.v3 {
        Some(_) => wechat_api_v3::check(&config).await,
        None => wechat_api::check(&config).await,
    });
    report.lines.push(certificate::check(&config));
    report.lines.push(webhook::check(&config).await);
    report
}

fn describe(config: &AppConfig) -> String {
    if config.simulator {
        format!("loaded; simulator mode (no real money moves), public base {}", config.public_base_url)
    } else {
        let mini_program = match &config.wechat.mini_program {
            Some(mp) => format!(" and Mini Program {}", mp.appid),
            None => String::new(),
        };
        format!(
            "loaded; merchant {} with appid {}{mini_program}, public base {}",
            config.wechat.mch_id, config.wechat.appid, config.public_base_url
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_a_column_of_verdicts() {
        let ok = Line::new(Status::Ok, "database", "SQLite at data/x.sqlite, migrations current");
        assert_eq!(ok.to_string(), "ok    database: SQLite at data/x.sqlite, migrations current");
        let fail = Line::new(Status::Fail, "WeChat Pay API", "WECHAT_API_KEY is wrong");
        assert_eq!(fail.to_string(), "FAIL  WeChat Pay API: WECHAT_API_KEY is wrong");
        let report = Report { lines: vec![ok.clone(), Line::new(Status::Warn, "certificate", "soon")] };
        assert!(report.passed());
        assert!(!Report { lines: vec![ok, fail] }.passed());
    }
}
