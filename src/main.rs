//! The `wechat-checkout` binary: command-line parsing, logging, and the chosen command.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use wechat_checkout::config::AppConfig;
use wechat_checkout::simulator::{self, SimulatorArgs};
use wechat_checkout::{app, db};

#[derive(Parser)]
#[command(name = "wechat-checkout", version, about = "WeChat Pay (API v2, JSAPI) checkout and payment operations")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the checkout, the notify endpoint and the merchant API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create an admin account (the password is read from standard input, or generated).
    CreateAdmin {
        #[arg(long)]
        username: String,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Run one pass of a background job: poll, expire, refund-sync, reconcile, webhooks, alerts, retention.
    Jobs { name: String },
    /// Reconcile one day against WeChat's bill (Beijing date), now.
    Reconcile {
        #[arg(long)]
        date: chrono::NaiveDate,
    },
    /// Run the WeChat Pay simulator on its own (API paths at the root).
    Simulator(Box<SimulatorArgs>),
    /// Check the configuration and try what it names, one line per check.
    ///
    /// Loads the configuration exactly as `serve` does (Rocket.toml, the environment, *_FILE
    /// secrets), then tries: the database (reachable; pending migrations, which `serve`
    /// applies), the WeChat Pay API (a signed orderquery of an unused order number proves
    /// WECHAT_API_KEY, WECHAT_MCH_ID and WECHAT_APPID without changing anything), the merchant
    /// certificate (loads, its key matches, not expired; a warning 30 days ahead), and
    /// WEBHOOK_URL (allowed by the address rule and answering HTTP). Each failure names the
    /// variable to fix. Changes nothing (a SQLite file that does not exist is not created).
    /// Exits 1 if any check failed, 0 otherwise (warnings pass).
    CheckConfig,
    /// Back up the database to a new file, while the server keeps running.
    ///
    /// SQLite: an online, consistent copy (VACUUM INTO) taken while the server keeps serving and
    /// writing, then opened and checked with PRAGMA integrity_check; an existing file is never
    /// overwritten. PostgreSQL: prints the pg_dump (and pg_restore) command to run, without the
    /// password, and does nothing else. Restoring: see docs/operations-backup.md.
    Backup {
        /// The file to write; must not exist.
        #[arg(long, value_name = "FILE")]
        to: std::path::PathBuf,
    },
}

#[rocket::main]
async fn main() -> std::process::ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // Rocket's own per-request lines are replaced by our one-line request log.
        EnvFilter::new("info,rocket::server=warn,rocket::server::_=warn,rocket::launch::_=warn")
    });
    // Whatever RUST_LOG says: at debug level Rocket logs every request with its headers, the
    // API token (Authorization) and the staff session (Cookie) included.
    let filter = filter.add_directive("rocket::server=warn".parse().expect("a valid directive"));
    if let Err(e) = app::telemetry::init(filter) {
        eprintln!("wechat-checkout: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let result = match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Migrate => migrate(),
        Command::CreateAdmin { username, password_stdin } => create_admin(&username, password_stdin),
        Command::Jobs { name } => run_job(&name).await,
        Command::Reconcile { date } => reconcile(date).await,
        Command::Simulator(args) => simulator::run_standalone(*args).await.map_err(|e| e.to_string()),
        Command::CheckConfig => check_config().await,
        Command::Backup { to } => backup(&to),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wechat-checkout: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<(), String> {
    let rocket = app::build_rocket(rocket::Config::figment()).map_err(|e| e.to_string())?;
    rocket.launch().await.map(|_| ()).map_err(|e| e.to_string())
}

fn migrate() -> Result<(), String> {
    let config = AppConfig::load(&rocket::Config::figment()).map_err(|e| e.to_string())?;
    app::probe_database(&config).map_err(|e| e.to_string())?;
    let applied = db::migrate::run_pending(config.database_url.expose()).map_err(|e| e.to_string())?;
    if applied.is_empty() {
        println!("database is up to date");
    } else {
        for name in applied {
            println!("applied {name}");
        }
    }
    Ok(())
}

fn create_admin(username: &str, password_stdin: bool) -> Result<(), String> {
    let config = AppConfig::load(&rocket::Config::figment()).map_err(|e| e.to_string())?;
    let database = app::open_database(&config, 2).map_err(|e| e.to_string())?;
    db::migrate::run_pending(config.database_url.expose()).map_err(|e| e.to_string())?;
    let (password, generated) = if password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| e.to_string())?;
        (line.trim_end_matches(['\r', '\n']).to_owned(), false)
    } else {
        (wechat_checkout::wxpay::nonce::random_alphanumeric(16), true)
    };
    wechat_checkout::staff::accounts::create_blocking(
        &database,
        username,
        &password,
        wechat_checkout::staff::Role::Admin,
        generated,
    )
    .map_err(|e| e.public_message())?;
    if generated {
        println!("admin {username} created; one-time password (change it at first sign-in): {password}");
    } else {
        println!("admin {username} created");
    }
    Ok(())
}

async fn check_config() -> Result<(), String> {
    let report = app::check_config::run(&rocket::Config::figment()).await;
    print!("{report}");
    if report.passed() { Ok(()) } else { Err("some checks failed (see FAIL above)".into()) }
}

fn backup(to: &std::path::Path) -> Result<(), String> {
    let outcome = app::backup::run(&rocket::Config::figment(), to).map_err(|e| e.to_string())?;
    println!("{outcome}");
    Ok(())
}

/// The application without its HTTP server, for one-off commands.
fn job_context() -> Result<wechat_checkout::jobs::JobContext, String> {
    let payments = app::build_payments(&rocket::Config::figment()).map_err(|e| e.to_string())?;
    Ok(wechat_checkout::jobs::JobContext::new(payments))
}

async fn run_job(name: &str) -> Result<(), String> {
    let ctx = job_context()?;
    let report = wechat_checkout::jobs::run_once(&ctx, name).await.map_err(|e| e.to_string())?;
    println!("{name}: {report}");
    Ok(())
}

async fn reconcile(date: chrono::NaiveDate) -> Result<(), String> {
    use std::io::IsTerminal;
    use wechat_checkout::payments::reconcile::{RunOptions, RunOutcome, progress};

    let ctx = job_context()?;
    // A bar only for a person watching; logs and pipes get the summary alone.
    let progress: std::sync::Arc<dyn progress::Progress> =
        if std::io::stderr().is_terminal() { std::sync::Arc::new(Bar::default()) } else { progress::silent() };
    let opts = RunOptions { progress, ..RunOptions::now() };
    let outcome = ctx.payments.reconcile_date(date, opts).await.map_err(|e| e.to_string())?;
    println!("{outcome}");
    match outcome {
        RunOutcome::Finished(_) | RunOutcome::Waiting { .. } => Ok(()),
        other => Err(other.headline()),
    }
}

/// The command line's progress bar: one `indicatif` bar (or spinner, when the length is unknown)
/// per phase of the run, left on screen with its final count.
#[derive(Default)]
struct Bar {
    current: std::sync::Mutex<Option<(indicatif::ProgressBar, &'static str)>>,
}

impl wechat_checkout::payments::reconcile::progress::Progress for Bar {
    fn begin(&self, phase: wechat_checkout::payments::reconcile::progress::Phase, total: Option<u64>) {
        use wechat_checkout::payments::reconcile::progress::Phase;
        let unit = match phase {
            Phase::Bill => "rows",
            Phase::LocalOrders | Phase::Queries => "orders",
            Phase::Download | Phase::Leftovers => "",
        };
        let bar = match total {
            Some(len) => indicatif::ProgressBar::new(len).with_style(
                indicatif::ProgressStyle::with_template("{prefix:>26} [{bar:40}] {percent:>3}% {msg} ({elapsed})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
            ),
            None => indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template("{prefix:>26} {spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            ),
        };
        bar.set_prefix(phase.label());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        if let Some((old, _)) = self.current.lock().unwrap_or_else(|p| p.into_inner()).replace((bar, unit)) {
            old.finish();
        }
    }

    fn advance(&self, position: u64, items: u64) {
        if let Some((bar, unit)) = &*self.current.lock().unwrap_or_else(|p| p.into_inner()) {
            bar.set_position(position);
            if !unit.is_empty() {
                bar.set_message(format!("{items} {unit}"));
            }
        }
    }

    fn end(&self) {
        if let Some((bar, _)) = self.current.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish();
        }
    }
}
