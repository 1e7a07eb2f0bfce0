//! Serving the simulator: `mount` into any Rocket (API routes at one base, the simulator's own
//! routes at another), and `launch` of a background server for tests and the standalone binary.

use std::net::IpAddr;

use rocket::config::LogLevel;
use rocket::fairing::AdHoc;
use rocket::figment::Figment;
use rocket::{Build, Rocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::config::{SimulatorConfig, TlsOptions};
use super::{Simulator, SimulatorError, api, bridge, control, ids, mini_program, notify, oauth, shopper, v3, web};

/// The simulator as Rocket managed state.
pub(crate) struct Mounted(pub Simulator);

/// Where a launched simulator serves its own routes (shopper, bridge, control).
pub const OWN_BASE: &str = "/simulator";

/// Mounts the WeChat API routes (`/pay/...`, `/secapi/...`, `/v3/...`, `/connect/...`, `/sns/...`) at
/// `api_base` and the simulator's own routes (`shopper/`, `bridge/`, `bridge.js`, `control/`) at
/// `own_base`; the two sets never collide, so both bases may be the same. Pending notifies and
/// refund settlements loaded from a state file resume at liftoff. A Rocket can hold one simulator.
pub fn mount(rocket: Rocket<Build>, sim: Simulator, api_base: &str, own_base: &str) -> Rocket<Build> {
    let resume = sim.clone();
    rocket
        .manage(Mounted(sim))
        .mount(api_base, api::routes())
        .mount(api_base, oauth::routes())
        .mount(api_base, mini_program::api_routes())
        .mount(api_base, v3::routes())
        .mount(own_base, shopper::routes())
        .mount(own_base, bridge::routes())
        .mount(own_base, control::routes())
        .mount(own_base, mini_program::control_routes())
        .mount(own_base, v3::control_routes())
        .mount(own_base, web::routes())
        .attach(AdHoc::on_liftoff("WeChat Pay simulator", move |_| {
            Box::pin(async move {
                notify::resume_all(&resume);
                api::resume_settlements(&resume);
            })
        }))
}

/// A simulator running in the background.
pub struct SimulatorHandle {
    /// `http://127.0.0.1:PORT` (or `https://…` with TLS): the API base.
    pub base_url: String,
    pub sim: Simulator,
    shutdown: rocket::Shutdown,
    task: Option<JoinHandle<Result<(), SimulatorError>>>,
}

impl SimulatorHandle {
    /// Where the WeChat API paths are served (give this to `GatewayConfig::with_base`).
    pub fn api_base(&self) -> String {
        self.base_url.clone()
    }

    /// Where the shopper, bridge and control routes are served.
    pub fn own_base(&self) -> String {
        format!("{}{OWN_BASE}", self.base_url)
    }

    /// Waits until the server stops by itself (Ctrl-C or SIGTERM in standalone mode).
    pub async fn wait(mut self) -> Result<(), SimulatorError> {
        let result = match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| Err(SimulatorError::Launch(e.to_string()))),
            None => Ok(()),
        };
        self.sim.stop_background();
        result
    }

    /// Stops the server and every background delivery.
    pub async fn shutdown(mut self) {
        self.sim.stop_background();
        self.shutdown.clone().notify();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimulatorHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.sim.stop_background();
            self.shutdown.clone().notify();
        }
    }
}

/// How the Rocket instance behaves: embedded (tests) or standalone (the CLI).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Embedded,
    Standalone,
}

/// The Rocket configuration of a simulator server. It deliberately ignores `Rocket.toml` and
/// `ROCKET_*` variables, which belong to the product.
pub(crate) fn figment(address: IpAddr, port: u16, tls: Option<&TlsOptions>, mode: Mode) -> Figment {
    let standalone = mode == Mode::Standalone;
    let mut f = Figment::from(rocket::Config::default())
        .merge(("address", address))
        .merge(("port", port))
        .merge(("ident", "nginx"))
        .merge(("cli_colors", false))
        .merge(("log_level", if standalone { LogLevel::Critical } else { LogLevel::Off }))
        // Only the standalone server owns the process's signals.
        .merge(("shutdown.ctrlc", standalone))
        .merge(("shutdown.signals", if standalone { vec!["term"] } else { Vec::new() }))
        .merge(("shutdown.grace", if standalone { 2 } else { 0 }))
        .merge(("shutdown.mercy", if standalone { 3 } else { 0 }))
        // The simulator uses no private cookies; a random key keeps release builds launching.
        .merge(("secret_key", ids::random_hex(64)));
    if let Some(tls) = tls {
        f = f.merge(("tls.certs", &tls.cert_pem_path)).merge(("tls.key", &tls.key_pem_path));
        if let Some(ca) = &tls.client_ca_pem_path {
            f = f.merge(("tls.mutual.ca_certs", ca)).merge(("tls.mutual.mandatory", false));
        }
    }
    f
}

fn rocket_error(e: rocket::Error) -> SimulatorError {
    // `kind()` marks the error as handled, so dropping it does not panic.
    SimulatorError::Launch(e.kind().to_string())
}

/// The URL clients use for an address: loopback for the unspecified one, brackets for IPv6.
pub(crate) fn base_url(address: IpAddr, port: u16, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let host = match address {
        IpAddr::V4(a) if a.is_unspecified() => "127.0.0.1".to_owned(),
        IpAddr::V6(a) if a.is_unspecified() => "[::1]".to_owned(),
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    format!("{scheme}://{host}:{port}")
}

/// Starts a simulator server in the background (port 0 = any free port), waits until it
/// listens, and returns its handle. API paths are served at the root, the simulator's own routes
/// under `/simulator`.
pub async fn launch(
    config: SimulatorConfig,
    address: IpAddr,
    port: u16,
    tls: Option<TlsOptions>,
) -> Result<SimulatorHandle, SimulatorError> {
    launch_with(config, address, port, tls, Mode::Embedded).await
}

pub(crate) async fn launch_with(
    config: SimulatorConfig,
    address: IpAddr,
    port: u16,
    tls: Option<TlsOptions>,
    mode: Mode,
) -> Result<SimulatorHandle, SimulatorError> {
    let sim = Simulator::new(config)?;
    let (tx, rx) = oneshot::channel::<u16>();
    let rocket = rocket::custom(figment(address, port, tls.as_ref(), mode));
    let rocket = mount(rocket, sim.clone(), "/", OWN_BASE).attach(AdHoc::on_liftoff("bound port", move |r| {
        let port = r.config().port;
        Box::pin(async move {
            let _ = tx.send(port);
        })
    }));
    let ignited = rocket.ignite().await.map_err(rocket_error)?;
    let shutdown = ignited.shutdown();
    let task = tokio::spawn(async move { ignited.launch().await.map(|_| ()).map_err(rocket_error) });
    match rx.await {
        Ok(bound) => {
            Ok(SimulatorHandle { base_url: base_url(address, bound, tls.is_some()), sim, shutdown, task: Some(task) })
        }
        Err(_) => match task.await {
            Ok(Err(e)) => Err(e),
            _ => Err(SimulatorError::Launch(format!("the simulator could not listen on {address}:{port}"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(base_url("0.0.0.0".parse().unwrap(), 80, false), "http://127.0.0.1:80");
        assert_eq!(base_url("::1".parse().unwrap(), 443, true), "https://[::1]:443");
        assert_eq!(base_url("10.0.0.2".parse().unwrap(), 9000, false), "http://10.0.0.2:9000");
    }
}
