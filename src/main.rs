//! The `wechat-checkout` binary: command-line parsing, logging, and the chosen command.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use wechat_checkout::simulator::{self, SimulatorArgs};

#[derive(Parser)]
#[command(name = "wechat-checkout", version, about = "WeChat Pay (API v2, JSAPI) checkout and payment operations")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the WeChat Pay simulator on its own (API paths at the root).
    Simulator(SimulatorArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Simulator(args)) => simulator::run_standalone(args).await,
        // Until the checkout itself lands, the default command is the standalone simulator.
        None => simulator::run_standalone(SimulatorArgs::parse_from(["simulator"])).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wechat-checkout: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
