//! `wechat-checkout simulator`: command-line flags and the standalone server with its banner.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

use super::SimulatorError;
use super::config::{Faults, SimMerchant, SimV3Merchant, SimulatorConfig, TlsOptions};
use super::server::{Mode, launch_with};
use crate::wxpay::demo::{
    DEMO_API_KEY, DEMO_APP_SECRET, DEMO_APPID, DEMO_MCH_ID, DEMO_MINIPROGRAM_APPID, DEMO_MINIPROGRAM_SECRET,
};
use crate::wxpay::sign::ApiKey;
use crate::wxpay::v3::ApiV3Key;

/// Runs a fake WeChat Pay (API v2 and v3, OAuth, JS bridge) for development and tests.
///
/// Derives `Parser` (which includes `Args`), so it serves both as a subcommand's arguments and on
/// its own (`SimulatorArgs::parse_from`).
#[derive(Parser, Clone, Debug)]
#[command(name = "simulator")]
pub struct SimulatorArgs {
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 9000, env = "WXSIM_PORT")]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "WXSIM_ADDRESS")]
    pub address: IpAddr,
    /// Multiplies notify retry delays and the refund settle delay (0.001 = 1000x faster).
    #[arg(long, default_value_t = 1.0)]
    pub time_factor: f64,
    /// The Official Account appid.
    #[arg(long, default_value = DEMO_APPID)]
    pub appid: String,
    /// The merchant id.
    #[arg(long, default_value = DEMO_MCH_ID)]
    pub mch_id: String,
    /// The merchant's 32-character APIv2 key.
    #[arg(long, default_value = DEMO_API_KEY, env = "WXSIM_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// The Official Account's AppSecret (for the OAuth code exchange).
    #[arg(long, default_value = DEMO_APP_SECRET, env = "WXSIM_APP_SECRET", hide_env_values = true)]
    pub app_secret: String,
    /// Keep the simulator's state in this JSON file across restarts.
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// Require OAuth redirect_uri hosts to equal this domain (WeChat's "网页授权域名").
    #[arg(long)]
    pub oauth_domain: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) of merchant client certificates; refunds then require one whose CN is the mch_id.
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Seed of the fault dice, for reproducible runs.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Probability of a SYSTEMERROR reply (nothing changes).
    #[arg(long, default_value_t = 0.0)]
    pub fault_systemerror_rate: f64,
    /// Probability of a reply delayed by --fault-slow-ms (processed normally).
    #[arg(long, default_value_t = 0.0)]
    pub fault_slow_rate: f64,
    #[arg(long, default_value_t = 3000)]
    pub fault_slow_ms: u64,
    /// Probability of a truncated XML reply (processed normally).
    #[arg(long, default_value_t = 0.0)]
    pub fault_garbled_rate: f64,
    /// Probability that a notify is never delivered.
    #[arg(long, default_value_t = 0.0)]
    pub fault_drop_notify_rate: f64,
    /// Extra identical copies sent after a notify was accepted.
    #[arg(long, default_value_t = 0)]
    pub fault_duplicate_notifies: u32,
    /// Copies sent at once for the first delivery attempt.
    #[arg(long, default_value_t = 0)]
    pub fault_concurrent_notifies: u32,
    /// Probability that a notify's first delivery is held back (up to --fault-late-notify-ms),
    /// so that later notifies overtake it.
    #[arg(long, default_value_t = 0.0)]
    pub fault_late_notify_rate: f64,
    #[arg(long, default_value_t = 2000)]
    pub fault_late_notify_ms: u64,
    /// Added to total_fee and cash_fee in payment notifies (still correctly signed).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub fault_notify_amount_delta: i64,
    /// Every downloadbill answers "Bill Creating".
    #[arg(long)]
    pub fault_bill_creating: bool,
    /// Probability that a v3 answer or notify carries a WECHATPAY/SIGNTEST/ probe signature.
    #[arg(long, default_value_t = 0.0)]
    pub fault_v3_signtest_rate: f64,
    /// The merchant API public key (PEM file) of --mch-id: with it (and --v3-serial and
    /// --apiv3-key) the simulator speaks API v3 for that merchant too.
    #[arg(long)]
    pub v3_public_key: Option<PathBuf>,
    /// The serial of the merchant API certificate (the `serial_no` of `Authorization`).
    #[arg(long)]
    pub v3_serial: Option<String>,
    /// The merchant's 32-character APIv3 key (encrypts notify resources and certificates).
    #[arg(long, env = "WXSIM_APIV3_KEY", hide_env_values = true)]
    pub apiv3_key: Option<String>,
    /// Sign the v3 notifies with the WeChat Pay public key instead of the platform certificate.
    #[arg(long)]
    pub v3_public_key_mode: bool,
}

impl SimulatorArgs {
    pub fn faults(&self) -> Faults {
        Faults {
            system_error_rate: self.fault_systemerror_rate,
            slow_rate: self.fault_slow_rate,
            slow_ms: self.fault_slow_ms,
            garbled_rate: self.fault_garbled_rate,
            drop_notify_rate: self.fault_drop_notify_rate,
            duplicate_notifies: self.fault_duplicate_notifies,
            concurrent_notifies: self.fault_concurrent_notifies,
            late_notify_rate: self.fault_late_notify_rate,
            late_notify_ms: self.fault_late_notify_ms,
            notify_amount_delta: self.fault_notify_amount_delta,
            bill_creating: self.fault_bill_creating,
            v3_signtest_rate: self.fault_v3_signtest_rate,
            ..Faults::default()
        }
    }

    pub fn config(&self) -> Result<SimulatorConfig, SimulatorError> {
        let api_key = ApiKey::new(&self.api_key).map_err(|e| SimulatorError::Config(e.to_string()))?;
        let merchant = SimMerchant {
            appid: self.appid.clone(),
            mch_id: self.mch_id.clone(),
            api_key,
            app_secret: self.app_secret.clone(),
        };
        // The demo Mini Program, bound to this merchant.
        let mini_program = SimMerchant {
            appid: DEMO_MINIPROGRAM_APPID.into(),
            app_secret: DEMO_MINIPROGRAM_SECRET.into(),
            ..merchant.clone()
        };
        let config = SimulatorConfig {
            v3_merchants: self.v3_merchants()?,
            merchants: vec![merchant],
            mini_programs: vec![mini_program],
            time_factor: self.time_factor,
            oauth_domain: self.oauth_domain.clone(),
            state_file: self.state_file.clone(),
            faults: self.faults(),
            seed: self.seed,
            ..SimulatorConfig::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// The v3 identity of --mch-id, when --v3-public-key is given.
    fn v3_merchants(&self) -> Result<Vec<SimV3Merchant>, SimulatorError> {
        let bad = |m: String| SimulatorError::Config(m);
        let Some(path) = &self.v3_public_key else { return Ok(Vec::new()) };
        let public_key_pem =
            std::fs::read_to_string(path).map_err(|e| bad(format!("--v3-public-key {}: {e}", path.display())))?;
        let serial_no = self.v3_serial.clone().ok_or_else(|| bad("--v3-public-key needs --v3-serial".into()))?;
        let apiv3_key = self.apiv3_key.as_deref().ok_or_else(|| bad("--v3-public-key needs --apiv3-key".into()))?;
        let apiv3_key = ApiV3Key::new(apiv3_key).map_err(|e| bad(format!("--apiv3-key {e}")))?;
        let public_key_mode = self.v3_public_key_mode;
        Ok(vec![SimV3Merchant { mch_id: self.mch_id.clone(), apiv3_key, serial_no, public_key_pem, public_key_mode }])
    }

    pub fn tls(&self) -> Option<TlsOptions> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsOptions {
                cert_pem_path: cert.clone(),
                key_pem_path: key.clone(),
                client_ca_pem_path: self.client_ca.clone(),
            }),
            _ => None,
        }
    }
}

fn banner(args: &SimulatorArgs, api: &str, own: &str) -> String {
    let shown_key = if args.api_key == DEMO_API_KEY { args.api_key.clone() } else { "(as configured)".into() };
    let shown_secret =
        if args.app_secret == DEMO_APP_SECRET { args.app_secret.clone() } else { "(as configured)".into() };
    let cert_note = if args.client_ca.is_some() {
        "refunds require a client certificate whose CN is the mch_id"
    } else {
        "refund client certificates are not checked (serve TLS with --client-ca to check them)"
    };
    let v3 = match args.v3_public_key {
        Some(_) => format!("{api}/v3/…   platform keys: {own}/control/v3/platform"),
        None => "off (give --v3-public-key, --v3-serial and --apiv3-key)".to_owned(),
    };
    format!(
        "WeChat Pay simulator (API v2 and v3) listening on {api}\n\
         \n  API base      {api}   (/pay/unifiedorder, /secapi/pay/refund, …)\
         \n  API v3        {v3}\
         \n  OAuth         {api}/connect/oauth2/authorize   {api}/sns/oauth2/access_token\
         \n  Mini Program  {api}/sns/jscode2session   wx.login: POST {own}/control/mini-program/login\
         \n  JS bridge     <script src=\"{own}/bridge.js\"></script>\
         \n  Control       {own}/control/faults  /seed  /time-factor  /clock  /orders/<out_trade_no>  /notifies  /reset\
         \n\n  appid         {}\n  Mini Program  {DEMO_MINIPROGRAM_APPID} (AppSecret {DEMO_MINIPROGRAM_SECRET})\n  mch_id        {}\n  API key       {shown_key}\n  AppSecret     {shown_secret}\
         \n  time factor   {}\n  certificates  {cert_note}\n\nPress Ctrl-C to stop.\n",
        args.appid, args.mch_id, args.time_factor
    )
}

/// Serves the simulator until Ctrl-C (or SIGTERM).
pub async fn run_standalone(args: SimulatorArgs) -> Result<(), SimulatorError> {
    let config = args.config()?;
    let handle = launch_with(config, args.address, args.port, args.tls(), Mode::Standalone).await?;
    println!("{}", banner(&args, &handle.api_base(), &handle.own_base()));
    handle.wait().await
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn flags_map_to_config_and_faults() {
        let args = SimulatorArgs::parse_from([
            "x",
            "--port",
            "0",
            "--time-factor",
            "0.01",
            "--fault-systemerror-rate",
            "0.5",
            "--fault-notify-amount-delta",
            "-1",
            "--fault-bill-creating",
        ]);
        let config = args.config().unwrap();
        assert_eq!(config.time_factor, 0.01);
        assert_eq!(config.faults.system_error_rate, 0.5);
        assert_eq!(config.faults.notify_amount_delta, -1);
        assert!(config.faults.bill_creating);
        assert_eq!(config.merchants[0].mch_id, DEMO_MCH_ID);
        assert!(args.tls().is_none());
        let bad = SimulatorArgs::parse_from(["x", "--api-key", "short"]);
        assert!(bad.config().is_err());
        assert!(banner(&args, "http://127.0.0.1:9000", "http://127.0.0.1:9000/simulator").contains("bridge.js"));
        assert!(config.v3_merchants.is_empty());
    }

    #[test]
    fn v3_flags_make_a_v3_merchant() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apiclient_pub.pem");
        std::fs::write(&path, crate::wxpay::v3::MerchantKey::generate().unwrap().public_key_pem()).unwrap();
        let path = path.to_str().unwrap();
        let key = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";
        let args =
            ["x", "--v3-public-key", path, "--v3-serial", "5157F09E", "--apiv3-key", key, "--v3-public-key-mode"];
        let args = SimulatorArgs::parse_from(args);
        let config = args.config().unwrap();
        let v3 = &config.v3_merchants[0];
        assert_eq!((v3.mch_id.as_str(), v3.serial_no.as_str(), v3.public_key_mode), (DEMO_MCH_ID, "5157F09E", true));
        assert!(banner(&args, "http://a", "http://a/simulator").contains("/control/v3/platform"));
        let missing = SimulatorArgs::parse_from(["x", "--v3-public-key", path, "--v3-serial", "5157F09E"]);
        assert!(missing.apiv3_key.is_some() || missing.config().is_err());
    }
}
