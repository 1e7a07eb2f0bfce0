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
    /// Run the WeChat Pay simulator on its own (API paths at the root).
    Simulator(Box<SimulatorArgs>),
}

#[rocket::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        // Rocket's own per-request lines are replaced by our one-line request log.
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new("info,rocket::server=warn,rocket::server::_=warn,rocket::launch::_=warn")
        }))
        .init();
    let result = match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Migrate => migrate(),
        Command::Simulator(args) => simulator::run_standalone(*args).await.map_err(|e| e.to_string()),
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
    let applied = db::migrate::run_pending(&config.database_url).map_err(|e| e.to_string())?;
    if applied.is_empty() {
        println!("database is up to date");
    } else {
        for name in applied {
            println!("applied {name}");
        }
    }
    Ok(())
}
