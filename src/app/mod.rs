//! Assembling the application: configuration, migrations, the database, WeChat clients, the
//! notify writer, routes, and (in simulator mode) the simulator mounted at `/simulator`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rocket::figment::Figment;
use rocket::{Build, Rocket};
use thiserror::Error;

use crate::config::{AppConfig, ConfigError, PlatformVerification, V3Settings};
use crate::db::{self, Db, DbError};
use crate::payments::Payments;
use crate::payments::certificate_cache::DbCertificateCache;
use crate::simulator::{self, SimMerchant, SimV3Merchant, Simulator, SimulatorConfig};
use crate::web;
use crate::web::oauth_state::StateSigner;
use crate::wxpay::mini_program::MiniProgramClient;
use crate::wxpay::oauth::OAuthClient;
use crate::wxpay::tls::ClientIdentity;
use crate::wxpay::v3::RequestSigner;
use crate::wxpay::v3::client::{V3Merchant, V3PayGateway};
use crate::wxpay::v3::platform_keys::PlatformKeySource;
use crate::wxpay::{GatewayConfig, HttpPayGateway, Merchant};

pub mod backup;
pub mod check_config;
mod first_start;
pub mod telemetry;

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// The database named by `DATABASE_URL` cannot be used; the message says why.
    #[error("{0}")]
    Database(String),
    #[error("merchant certificate: {0}")]
    Certificate(String),
    #[error("{0}")]
    Other(String),
}

/// Builds the Rocket from `Rocket.toml` and the environment (`rocket::Config::figment()` plus
/// our variables).
pub fn build_rocket(figment: Figment) -> Result<Rocket<Build>, StartError> {
    let config = AppConfig::load(&figment)?;
    build(figment, config)
}

/// Builds the Rocket from the figment alone, ignoring our environment variables (tests).
pub fn build_rocket_from(figment: Figment) -> Result<Rocket<Build>, StartError> {
    let config = AppConfig::from_figment(figment.clone())?;
    build(figment, config)
}

/// The use-case layer with its database and WeChat client, for one-off commands (no server).
pub fn build_payments(figment: &Figment) -> Result<Payments, StartError> {
    Ok(assemble(Arc::new(AppConfig::load(figment)?))?.0)
}

/// The WeChat sign-in clients: the Official Account's OAuth, and the Mini Program's
/// `jscode2session` when one is configured.
struct SignIn {
    oauth: OAuthClient,
    mini_program: Option<MiniProgramClient>,
}

/// Connects and migrates the database and builds the clients every entry point needs.
fn assemble(config: Arc<AppConfig>) -> Result<(Payments, SignIn), StartError> {
    // Connecting first creates a new SQLite file (and its directory) in WAL mode.
    let db = open_database(&config, config.db_pool_size)?;
    let applied = db::migrate::run_pending(config.database_url.expose())?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "database migrated");
    }
    let merchant = Merchant {
        appid: config.wechat.appid.clone(),
        mch_id: config.wechat.mch_id.clone(),
        key: config.wechat.api_key.clone(),
        sign_type: config.wechat.sign_type,
    };
    let gateway = HttpPayGateway::new(merchant.clone(), gateway_config(&config)?)
        .map_err(|e| StartError::Other(format!("WeChat Pay client: {e}")))?;
    let v3 = v3_gateway(&config, &db)?;
    let oauth = OAuthClient::new(
        &config.wechat.sns_base,
        &config.wechat.appid,
        config.wechat.app_secret.expose(),
        Duration::from_secs(10),
    )
    .map_err(|e| StartError::Other(format!("WeChat OAuth client: {e}")))?;
    let mini_program = match &config.wechat.mini_program {
        Some(mp) => Some(
            MiniProgramClient::new(&config.wechat.sns_base, &mp.appid, mp.secret.expose(), Duration::from_secs(10))
                .map_err(|e| StartError::Other(format!("WeChat Mini Program client: {e}")))?,
        ),
        None => None,
    };
    let payments = Payments::new(db, Arc::new(gateway), merchant, config);
    let payments = match v3 {
        Some(v3) => payments.with_v3(v3),
        None => payments,
    };
    Ok((payments, SignIn { oauth, mini_program }))
}

/// The API v3 client of a configuration on v3 (none on v2), sharing its platform certificates
/// through `db`.
pub fn v3_gateway(config: &AppConfig, db: &Db) -> Result<Option<Arc<V3PayGateway>>, StartError> {
    let Some(v3) = &config.wechat.v3 else { return Ok(None) };
    let cache = DbCertificateCache {
        db: db.clone(),
        mch_id: config.wechat.mch_id.clone(),
        owner: config.jobs.instance_id.clone(),
    };
    let client = V3PayGateway::new(v3_merchant(config, v3), gateway_config(config)?)
        .map_err(|e| StartError::Other(format!("WeChat Pay API v3 client: {e}")))?;
    Ok(Some(Arc::new(client.with_certificate_cache(Arc::new(cache)))))
}

/// The v3 merchant of the configuration: its signer, APIv3 key, appids and how WeChat is verified.
pub(crate) fn v3_merchant(config: &AppConfig, v3: &V3Settings) -> V3Merchant {
    V3Merchant {
        signer: RequestSigner {
            mchid: config.wechat.mch_id.clone(),
            serial_no: v3.merchant_serial_no.clone(),
            key: v3.merchant_key.clone(),
        },
        apiv3_key: v3.apiv3_key.clone(),
        appid: config.wechat.appid.clone(),
        bound_appids: config.wechat.mini_program.iter().map(|mp| mp.appid.clone()).collect(),
        platform: match &v3.platform {
            PlatformVerification::PublicKey { id, key } => PlatformKeySource::public_key(id, key.clone()),
            PlatformVerification::Certificates => PlatformKeySource::certificates(),
        },
    }
}

/// The database pool, or one message naming `DATABASE_URL` and what is wrong with it (the URL
/// shown without its password).
pub fn open_database(config: &AppConfig, pool_size: u32) -> Result<Db, StartError> {
    Db::connect(config.database_url.expose(), pool_size).map_err(|e| database_error(config, e))
}

/// Connects once (creating a SQLite file as serving would) and reports what is wrong, without a
/// pool: for `migrate`, which connects on its own.
pub fn probe_database(config: &AppConfig) -> Result<(), StartError> {
    db::diagnose::probe(config.database_url.expose()).map_err(|e| database_error(config, e.into()))
}

/// `DATABASE_URL: cannot connect to PostgreSQL at postgres://app:***@db/shop: connection refused (…)`.
pub(crate) fn database_error(config: &AppConfig, e: DbError) -> StartError {
    match e {
        DbError::Connect(failure) => StartError::Database(format!(
            "DATABASE_URL: cannot connect to {} at {}: {}",
            db::diagnose::backend_label(failure.backend),
            config.database_url.redacted(),
            failure.problem
        )),
        other => StartError::Database(format!("DATABASE_URL ({}): {other}", config.database_url.redacted())),
    }
}

fn build(figment: Figment, config: AppConfig) -> Result<Rocket<Build>, StartError> {
    // Rocket would believe `X-Real-IP` from any client; `web::client` reads it only from a
    // `TRUSTED_PROXY`.
    let figment = ensure_secret_key(figment)?.merge(("ip_header", false));
    let config = Arc::new(config);
    let (payments, SignIn { oauth, mini_program }) = assemble(config.clone())?;
    let merchant = payments.merchant.clone();
    first_start::bootstrap_credentials(&payments.db, &config)?;

    if config.simulator {
        print_simulator_banner(&config);
    }
    let jobs_enabled = config.jobs.enabled;
    let accounts = crate::staff::Accounts::new(payments.db.clone(), config.clone());
    let rocket = rocket::custom(figment)
        .manage(accounts)
        .manage(payments)
        .manage(crate::jobs::RunningJobs::default())
        .attach(rocket::fairing::AdHoc::on_liftoff("background jobs", move |rocket| {
            Box::pin(async move {
                if !jobs_enabled {
                    return;
                }
                let (Some(payments), Some(running)) =
                    (rocket.state::<Payments>(), rocket.state::<crate::jobs::RunningJobs>())
                else {
                    return;
                };
                let handle = crate::jobs::start(crate::jobs::JobContext::new(payments.clone()));
                *running.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
                tracing::info!("background jobs started");
            })
        }))
        .attach(rocket::fairing::AdHoc::on_shutdown("stop background jobs", |rocket| {
            Box::pin(async move {
                let handle = rocket
                    .state::<crate::jobs::RunningJobs>()
                    .and_then(|r| r.0.lock().unwrap_or_else(|p| p.into_inner()).take());
                if let Some(handle) = handle {
                    handle.stop(Duration::from_secs(10)).await;
                    tracing::info!("background jobs stopped");
                }
            })
        }))
        .manage(config.clone())
        .manage(StateSigner::new(&merchant.key))
        .manage(oauth)
        .manage(mini_program);
    let rocket = web::mount(rocket, config.simulator);
    if config.simulator {
        let sim = Simulator::new(simulator_config(&config)).map_err(|e| StartError::Other(e.to_string()))?;
        return Ok(simulator::mount(rocket, sim, "/simulator", "/simulator"));
    }
    Ok(rocket)
}

/// The mounted simulator plays our own merchant (appid, mch_id, key, AppSecret) and, bound to
/// the same mch_id, our Mini Program.
fn simulator_config(config: &AppConfig) -> SimulatorConfig {
    let bound = |appid: &str, app_secret: &str| SimMerchant {
        appid: appid.to_owned(),
        mch_id: config.wechat.mch_id.clone(),
        api_key: config.wechat.api_key.clone(),
        app_secret: app_secret.to_owned(),
    };
    SimulatorConfig {
        merchants: vec![bound(&config.wechat.appid, config.wechat.app_secret.expose())],
        mini_programs: config.wechat.mini_program.iter().map(|mp| bound(&mp.appid, mp.secret.expose())).collect(),
        v3_merchants: config.wechat.v3.iter().map(|v3| sim_v3_merchant(config, v3)).collect(),
        callback_origin: Some(config.public_base_url.clone()),
        ..SimulatorConfig::default()
    }
}

/// Our v3 merchant as the mounted simulator knows it: its public key checks our signatures.
fn sim_v3_merchant(config: &AppConfig, v3: &V3Settings) -> SimV3Merchant {
    SimV3Merchant {
        mch_id: config.wechat.mch_id.clone(),
        apiv3_key: v3.apiv3_key.clone(),
        serial_no: v3.merchant_serial_no.clone(),
        public_key_pem: v3.merchant_key.public_key_pem(),
        public_key_mode: matches!(v3.platform, PlatformVerification::PublicKey { .. }),
    }
}

fn gateway_config(config: &AppConfig) -> Result<GatewayConfig, StartError> {
    let identity = match (&config.wechat.cert_p12, &config.wechat.cert_pem, &config.wechat.key_pem) {
        (Some(p12), _, _) => {
            let der = std::fs::read(p12).map_err(|e| StartError::Certificate(format!("{}: {e}", p12.display())))?;
            Some(
                ClientIdentity::from_pkcs12(&der, &config.wechat.mch_id)
                    .map_err(|e| StartError::Certificate(e.to_string()))?,
            )
        }
        (None, Some(cert), Some(key)) => {
            let read =
                |p: &Path| std::fs::read(p).map_err(|e| StartError::Certificate(format!("{}: {e}", p.display())));
            Some(
                ClientIdentity::from_pem_pair(&read(cert)?, &read(key)?)
                    .map_err(|e| StartError::Certificate(e.to_string()))?,
            )
        }
        _ => None,
    };
    Ok(GatewayConfig {
        backup_url: config.wechat.api_backup_base.clone(),
        identity,
        bound_appids: config.wechat.mini_program.iter().map(|mp| mp.appid.clone()).collect(),
        ..GatewayConfig::with_base(&config.wechat.api_base)
    })
}

/// Private cookies need a key. Rocket refuses to start in release mode without one; for a
/// zero-configuration demo we create one and keep it in `data/secret_key` so sessions survive
/// restarts. Several instances behind a load balancer must share `ROCKET_SECRET_KEY`.
fn ensure_secret_key(figment: Figment) -> Result<Figment, StartError> {
    // Rocket's own defaults carry an all-zero key, which means "none".
    if figment.extract_inner::<rocket::config::SecretKey>("secret_key").is_ok_and(|k| !k.is_zero()) {
        return Ok(figment);
    }
    let path = Path::new("data/secret_key");
    let key = match std::fs::read_to_string(path) {
        Ok(k) if k.trim().len() >= 44 => k.trim().to_owned(),
        _ => {
            use base64::Engine;
            let bytes: [u8; 64] = rand::random();
            let key = base64::engine::general_purpose::STANDARD.encode(bytes);
            std::fs::create_dir_all("data").map_err(|e| StartError::Other(format!("cannot create data/: {e}")))?;
            crate::config::write_private(path, &key)
                .map_err(|e| StartError::Other(format!("cannot write {}: {e}", path.display())))?;
            tracing::warn!("ROCKET_SECRET_KEY is not set; generated one in data/secret_key");
            key
        }
    };
    Ok(figment.merge(rocket::figment::providers::Serialized::global("secret_key", key)))
}

fn print_simulator_banner(config: &AppConfig) {
    eprintln!(
        "\n################################################################\n\
         #  SIMULATOR MODE: WeChat Pay is simulated at /simulator.       #\n\
         #  No real money moves. Set WECHAT_APPID, WECHAT_MCH_ID,        #\n\
         #  WECHAT_API_KEY and WECHAT_APP_SECRET to take real payments.  #\n\
         ################################################################\n\
         Demo shop: {}/\n",
        config.public_base_url
    );
}
