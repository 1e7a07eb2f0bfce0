//! A real nginx (the Debian package's binary) run by a test as an ordinary process in a temporary
//! directory, serving `deploy/nginx.conf` itself with only its ports, certificate paths and one
//! test-only header swapped in, behind a certificate authority of the test's own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// The documented site configuration, as operators install it in /etc/nginx/conf.d/.
pub const DEPLOY_CONF: &str = include_str!("../../deploy/nginx.conf");
/// The response header the test adds to learn which instance answered (`$upstream_addr`: one
/// address, or several comma-separated when nginx moved on to the next instance).
pub const UPSTREAM_HEADER: &str = "x-upstream";

/// The nginx binary: `NGINX` if set, else the Debian package's, else the first on `PATH`.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NGINX") {
        return Some(PathBuf::from(path));
    }
    let debian = PathBuf::from("/usr/sbin/nginx");
    if debian.exists() {
        return Some(debian);
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join("nginx")).find(|p| p.exists())
}

/// Where the test's nginx listens and which app instances it balances.
pub struct Ports {
    pub http: u16,
    pub https: u16,
    /// The two upstream instances, in the order of `server 127.0.0.1:8001` and `:8002`.
    pub apps: [u16; 2],
}

/// `deploy/nginx.conf` with the ports and certificate paths of this run, and a header naming the
/// instance that answered. Every replaced text must occur exactly once, so a change to the
/// documented file that this test no longer understands fails here instead of testing
/// something else.
pub fn site_conf(ports: &Ports, cert: &Path, key: &Path) -> String {
    let swaps = [
        ("listen 80;".to_owned(), format!("listen 127.0.0.1:{};", ports.http)),
        ("listen 443 ssl;".to_owned(), format!("listen 127.0.0.1:{} ssl;", ports.https)),
        ("server 127.0.0.1:8001 ".to_owned(), format!("server 127.0.0.1:{} ", ports.apps[0])),
        ("server 127.0.0.1:8002 ".to_owned(), format!("server 127.0.0.1:{} ", ports.apps[1])),
        (
            "ssl_certificate /etc/letsencrypt/live/pay.example.com/fullchain.pem;".to_owned(),
            format!("ssl_certificate {};", cert.display()),
        ),
        (
            "ssl_certificate_key /etc/letsencrypt/live/pay.example.com/privkey.pem;".to_owned(),
            format!("ssl_certificate_key {};", key.display()),
        ),
        // Test only: server-level add_header reaches every location (none has its own).
        (
            "proxy_set_header X-Request-Id $wechat_checkout_request_id;".to_owned(),
            "proxy_set_header X-Request-Id $wechat_checkout_request_id;\n    add_header X-Upstream $upstream_addr always;"
                .to_owned(),
        ),
    ];
    let mut conf = DEPLOY_CONF.to_owned();
    for (from, to) in swaps {
        let found = conf.matches(&from).count();
        assert_eq!(found, 1, "deploy/nginx.conf should contain {from:?} exactly once, not {found} times");
        conf = conf.replace(&from, &to);
    }
    conf
}

/// What Debian's /etc/nginx/nginx.conf provides around conf.d, reduced to what a test needs:
/// one worker, and every file nginx writes inside `dir`. (`pid` and `daemon` come from `-g`.)
fn main_conf(dir: &Path, site: &Path) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20   log_format upstream '$remote_addr \"$request\" $status upstream=$upstream_addr';\n\
         \x20   access_log {d}/access.log upstream;\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   include {};\n\
         }}\n",
        site.display()
    )
}

/// A certificate authority and a server certificate for 127.0.0.1 signed by it: (CA PEM,
/// certificate PEM, key PEM). Clients trust the CA, as phones trust a public one.
pub fn certificates() -> (String, String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "nginx test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (ca_pem, cert.pem(), key.serialize_pem())
}

/// A running nginx; stopped (fast shutdown, workers included) when dropped.
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    /// `https://127.0.0.1:<port>`: what PUBLIC_BASE_URL names.
    pub origin: String,
    pub http_origin: String,
}

impl Nginx {
    /// Writes the configuration and certificate into `dir` (which must outlive the process),
    /// checks it with `nginx -t`, and starts nginx in the foreground.
    pub fn start(binary: &Path, dir: &Path, ports: &Ports, cert_pem: &str, key_pem: &str) -> Nginx {
        // Workers drop to an unprivileged user when nginx starts as root; they must still reach
        // their temporary files in here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cert = dir.join("fullchain.pem");
        let key = dir.join("privkey.pem");
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let site = dir.join("wechat-checkout.conf");
        std::fs::write(&site, site_conf(ports, &cert, &key)).unwrap();
        let main = dir.join("nginx.conf");
        std::fs::write(&main, main_conf(dir, &site)).unwrap();
        let globals = format!("daemon off; master_process on; pid {}/nginx.pid;", dir.display());
        let command = |test: bool| {
            let mut c = Command::new(binary);
            c.arg("-p").arg(dir).arg("-c").arg(&main).arg("-e").arg(dir.join("error.log")).arg("-g").arg(&globals);
            if test {
                c.arg("-t");
            }
            c
        };
        let checked = command(true).output().expect("nginx runs");
        assert!(
            checked.status.success(),
            "nginx -t refused the configuration:\n{}\n--- site ---\n{}",
            String::from_utf8_lossy(&checked.stderr),
            std::fs::read_to_string(&site).unwrap()
        );
        let log = std::fs::File::create(dir.join("nginx.out")).unwrap();
        let child = command(false)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nginx starts");
        Nginx {
            child,
            dir: dir.to_owned(),
            origin: format!("https://127.0.0.1:{}", ports.https),
            http_origin: format!("http://127.0.0.1:{}", ports.http),
        }
    }

    /// Waits until nginx answers `path` through to an instance with 200; panics with its error
    /// log if it exits first or never does.
    pub async fn wait_until_serving(&mut self, http: &reqwest::Client, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("nginx exited with {status}:\n{}", self.logs());
            }
            if http.get(format!("{}{path}", self.origin)).send().await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nginx never served {path}:\n{}", self.logs());
    }

    /// nginx's error log, its console output and the access log.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- nginx error.log ---\n{}\n--- nginx output ---\n{}\n--- nginx access.log ---\n{}",
            read("error.log"),
            read("nginx.out"),
            read("access.log")
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master then stops its workers, which would otherwise be
        // orphaned and keep the ports.
        let _ = Command::new("sh").args(["-c", &format!("kill -TERM {}", self.child.id())]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
