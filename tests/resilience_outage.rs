//! Database outage (issue 11): PostgreSQL stopped (`pg_ctl stop -m immediate`) and started again
//! under notify load, on a server instance the test owns; SQLite on a filesystem that fills up
//! under load (a small tmpfs, filled by a filler file, then freed). Notifies during the outage
//! are answered FAIL (WeChat retries), none is answered SUCCESS without its payment stored,
//! `/healthz` is 503 meanwhile (`"database": "unreachable"`, or `"writes_failing"` on the full
//! disk, where `SELECT 1` still works), and the same process recovers by itself once the
//! database returns: `/healthz` says 200 again, new notifies and WeChat's retries of the failed
//! ones are answered SUCCESS.
//!
//! The SQLite test needs root (to mount the tmpfs); the PostgreSQL one needs the server
//! binaries (as root it runs them as the `postgres` user, which initdb requires). Without them a
//! test prints why and passes, unless `REQUIRE_RESILIENCE=1` (CI) makes that a failure.
//! `SOAK=1` repeats the outage five times on the same process.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::app::{TestApp, TestDb, free_port};
use common::notify_load::{
    ANSWER_TIMEOUT, LoadOrder, NotifyLoad, Outcomes, check_recorded, create_orders, sqlite_integrity_check,
};
use tempfile::TempDir;
use wechat_checkout::db::Db;

/// Orders notified per outage by the load, plus the fresh ones notified after it.
const LOAD_ORDERS: usize = 600;
const AFTER_ORDERS: usize = 20;
/// Notifies in flight at once: enough to be load, few enough that the orders last into the
/// outage on a 2-CPU machine.
const IN_FLIGHT: usize = 8;
/// How long the test waits for something the outage or the recovery must bring about.
const PATIENCE: Duration = Duration::from_secs(45);

/// Both tests load the 2 CPUs of a CI machine; run them one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- What the environment allows ------------------------------------------------------------

/// The test cannot run here: skip it, or fail when CI requires it to run.
fn cannot_run(why: &str) {
    if std::env::var("REQUIRE_RESILIENCE").is_ok_and(|v| v == "1") {
        panic!("REQUIRE_RESILIENCE=1, but the outage test cannot run: {why}");
    }
    eprintln!("outage test skipped: {why} (set REQUIRE_RESILIENCE=1 to make this a failure)");
}

fn output(command: &mut Command) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{command:?} exited with {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_ok_and(|uid| uid == "0")
}

fn soak_cycles() -> usize {
    if std::env::var("SOAK").is_ok_and(|v| v == "1") { 5 } else { 1 }
}

// ---- A PostgreSQL server of our own ---------------------------------------------------------

/// A PostgreSQL cluster in a temporary directory, on a free port, with trust authentication;
/// stopped (immediately) when dropped, even when the test panics.
struct PgServer {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    /// initdb refuses root: as root, every server command runs as the `postgres` user.
    as_postgres: bool,
}

/// The directory of initdb and pg_ctl: `pg_config --bindir`, else Debian's versioned paths.
fn pg_bindir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> =
        output(Command::new("pg_config").arg("--bindir")).ok().map(PathBuf::from).into_iter().collect();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    debian.sort();
    candidates.extend(debian.into_iter().rev());
    candidates.into_iter().find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

impl PgServer {
    fn create() -> Result<PgServer, String> {
        let bin = pg_bindir().ok_or("no PostgreSQL server binaries (initdb, pg_ctl) were found")?;
        let as_postgres = is_root();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        if as_postgres {
            let uid =
                output(Command::new("id").args(["-u", "postgres"])).map_err(|e| format!("no postgres user: {e}"))?;
            let gid =
                output(Command::new("id").args(["-g", "postgres"])).map_err(|e| format!("no postgres user: {e}"))?;
            let (uid, gid) = (uid.parse().ok(), gid.parse().ok());
            std::os::unix::fs::chown(dir.path(), uid, gid).map_err(|e| format!("chown to postgres: {e}"))?;
        }
        let server = PgServer { bin, dir, port: free_port(), as_postgres };
        let data = server.data();
        output(
            server
                .command("initdb")
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync", "-D"])
                .arg(&data),
        )?;
        server.start()?;
        let mut admin = connect_pg(&server.admin_url())?;
        diesel::RunQueryDsl::execute(diesel::sql_query("CREATE DATABASE wc_outage"), &mut admin)
            .map_err(|e| e.to_string())?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.dir.path().display()
        );
        output(
            self.command("pg_ctl")
                .args(["-w", "-t", "60", "-o", &options, "-l"])
                .arg(self.dir.path().join("server.log"))
                .arg("-D")
                .arg(self.data())
                .arg("start"),
        )
        .map(|_| ())
    }

    /// Stops the server as a crash would: every backend killed, nothing flushed that was not
    /// committed already.
    fn stop(&self) -> Result<(), String> {
        output(self.command("pg_ctl").args(["-w", "-m", "immediate", "-D"]).arg(self.data()).arg("stop")).map(|_| ())
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn connect_pg(url: &str) -> Result<diesel::PgConnection, String> {
    <diesel::PgConnection as diesel::Connection>::establish(url).map_err(|e| e.to_string())
}

// ---- A small filesystem of our own ----------------------------------------------------------

/// A tmpfs of a few MiB mounted on a temporary directory; unmounted when dropped.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Result<Tmpfs, String> {
        if !is_root() {
            return Err("not root: cannot mount a tmpfs".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        output(Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"]).arg(dir.path()))?;
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the filesystem has no byte left; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        for chunk in [1 << 20, 1 << 12, 1 << 9, 1] {
            let zeros = vec![0u8; chunk];
            while file.write_all(&zeros).and_then(|()| file.flush()).is_ok() {}
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the app may still hold the database open while the test unwinds.
        let _ = output(Command::new("umount").arg("-l").arg(self.dir.path()));
    }
}

// ---- Outages --------------------------------------------------------------------------------

/// How a backend loses its database and gets it back.
trait Outage {
    fn begin(&mut self);
    fn end(&mut self);
    /// What `/healthz` says of the database meanwhile.
    fn reason(&self) -> &'static str;
}

struct PgStopped<'a>(&'a PgServer);

impl Outage for PgStopped<'_> {
    fn begin(&mut self) {
        self.0.stop().unwrap();
    }

    fn end(&mut self) {
        self.0.start().unwrap();
    }

    fn reason(&self) -> &'static str {
        "unreachable"
    }
}

struct DiskFull<'a> {
    fs: &'a Tmpfs,
    db: Db,
    filler: Option<PathBuf>,
}

impl Outage for DiskFull<'_> {
    fn begin(&mut self) {
        // Move the WAL's content into the database file and truncate it, so that the very next
        // commits need new blocks. A checkpoint that a busy reader or writer of the load cut short
        // leaves the WAL at its size, and a WAL that keeps its blocks takes writes (wrapping
        // around after each checkpoint) however full the disk is: so until it reports done.
        let mut conn = self.db.conn().unwrap();
        let started = Instant::now();
        loop {
            let done = wal_truncated(&mut conn);
            if done || started.elapsed() > PATIENCE {
                assert!(done, "the WAL could not be checkpointed and truncated within {PATIENCE:?}");
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(conn);
        self.filler = Some(self.fs.fill());
    }

    fn end(&mut self) {
        std::fs::remove_file(self.filler.take().unwrap()).unwrap();
    }

    fn reason(&self) -> &'static str {
        // `SELECT 1` still works on a full disk: only the failing writes tell.
        "writes_failing"
    }
}

/// One `PRAGMA wal_checkpoint(TRUNCATE)`: whether it completed (its `busy` column is 0).
fn wal_truncated(conn: &mut wechat_checkout::db::AnyConnection) -> bool {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Checkpoint {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        busy: i32,
    }
    let wechat_checkout::db::AnyConnection::Sqlite(conn) = conn else { panic!("a full filesystem is a SQLite outage") };
    diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)").get_result::<Checkpoint>(conn).is_ok_and(|c| c.busy == 0)
}

// ---- The scenario ---------------------------------------------------------------------------

/// `/healthz`'s status, or `None` when it gave none within 10 s (it is meant to answer in 2).
async fn health(app: &TestApp) -> Option<u16> {
    let res = app.http.get(app.url("/healthz")).timeout(Duration::from_secs(10)).send().await.ok()?;
    Some(res.status().as_u16())
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {PATIENCE:?} waiting for {what}");
}

/// Out_trade_no → SUCCESS answers, over several loads.
fn count_acks(acks: &mut HashMap<String, usize>, outcomes: &Outcomes) {
    for no in &outcomes.acked {
        *acks.entry(no.clone()).or_default() += 1;
    }
}

/// Notifies `orders` (WeChat's retries, or fresh ones) and asserts every one is answered SUCCESS.
async fn all_acked(app: &TestApp, orders: Vec<LoadOrder>, acks: &mut HashMap<String, usize>, what: &str) {
    let outcomes = NotifyLoad::start(&app.base_url, orders).stop_when_done().await;
    assert!(
        outcomes.failed.is_empty() && outcomes.unanswered.is_empty(),
        "{what}: {} FAIL, {} unanswered after the database returned",
        outcomes.failed.len(),
        outcomes.unanswered.len()
    );
    count_acks(acks, &outcomes);
}

/// One outage under notify load, and the recovery after it, with every assertion of the issue.
async fn outage_cycle(app: &TestApp, check_db: &Db, outage: &mut dyn Outage, cycle: usize) {
    let orders = create_orders(&app.base_url, &format!("OUTAGE{cycle}"), LOAD_ORDERS).await;
    assert_eq!(health(app).await, Some(200), "healthy before the outage");
    let load = NotifyLoad::start_with(&app.base_url, orders.clone(), IN_FLIGHT, ANSWER_TIMEOUT);
    assert!(load.until_acked(LOAD_ORDERS / 10).await, "the load runs before the outage");

    let began = Instant::now();
    outage.begin();
    wait_for("a notify answered FAIL during the outage", async || load.progress().failed > 0).await;
    wait_for("/healthz to say unhealthy during the outage", async || health(app).await.is_some_and(|s| s >= 300)).await;
    // Not only the notifies whose transactions the outage cut: one that comes while the
    // database is out (on PostgreSQL, after the pool's 15 s wait for a connection) is answered
    // FAIL too, not held forever nor acknowledged.
    let known_down = load.progress().failed;
    wait_for("another notify answered FAIL while the database is out", async || load.progress().failed > known_down)
        .await;
    let body: serde_json::Value = app.http.get(app.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!((body["status"].as_str(), body["database"].as_str()), (Some("unavailable"), Some(outage.reason())));
    let during = load.progress();
    outage.end();
    let ended = Instant::now();

    // No restart: the same process must find its database again, and say so without waiting
    // for traffic to prove it.
    wait_for("/healthz to say healthy after the outage", async || health(app).await == Some(200)).await;
    let healthy_after = ended.elapsed();
    let outcomes = load.stop().await;
    let mut acks = HashMap::new();
    count_acks(&mut acks, &outcomes);

    // Checked before any retry could store them: SUCCESS was only ever given for a stored payment,
    // and a FAIL left nothing half-written.
    let before_retries = check_recorded(check_db, &orders, &acks);
    assert!(!outcomes.failed.is_empty(), "some notifies were answered FAIL during the outage");
    eprintln!(
        "cycle {cycle}: outage {:?} (at its end {during:?}), healthy {healthy_after:?} after it; load: {} acked, {} FAIL, \
         {} unanswered, {} not sent; recorded before retries: {before_retries:?}",
        ended - began,
        outcomes.acked.len(),
        outcomes.failed.len(),
        outcomes.unanswered.len(),
        outcomes.not_sent.len(),
    );

    // WeChat retries whatever was not acknowledged, and fresh notifies arrive: all are taken.
    let not_acked: Vec<String> = outcomes.not_acked();
    let retries: Vec<LoadOrder> = orders.iter().filter(|o| not_acked.contains(&o.out_trade_no)).cloned().collect();
    all_acked(app, retries, &mut acks, "WeChat's retries").await;
    let fresh = create_orders(&app.base_url, &format!("AFTER{cycle}"), AFTER_ORDERS).await;
    all_acked(app, fresh.clone(), &mut acks, "fresh notifies").await;
    let all: Vec<LoadOrder> = orders.into_iter().chain(fresh).collect();
    let recorded = check_recorded(check_db, &all, &acks);
    assert_eq!(recorded.unpaid, 0, "every order is PAID once its notify was acknowledged");
    assert_eq!(health(app).await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_started_under_load() {
    let _one = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let server = match PgServer::create() {
        Ok(server) => server,
        Err(why) => return cannot_run(&why),
    };
    let db = TestDb::Postgres { admin_url: server.admin_url(), name: "wc_outage".into() };
    let check_db = Db::connect(&db.url(), 2).unwrap();
    let app = TestApp::start(db, None, |f| f).await;
    let mut outage = PgStopped(&server);
    for cycle in 0..soak_cycles() {
        outage_cycle(&app, &check_db, &mut outage, cycle).await;
    }
    app.stop().await;
    eprintln!("postgres: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_filesystem() {
    let _one = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let fs = match Tmpfs::mount(48) {
        Ok(fs) => fs,
        Err(why) => return cannot_run(&why),
    };
    let db = TestDb::Sqlite(fs.path().join("outage.sqlite"));
    let app = TestApp::start(db.clone(), None, |f| f).await;
    let check_db = Db::connect(&db.url(), 2).unwrap();
    let mut outage = DiskFull { fs: &fs, db: check_db.clone(), filler: None };
    for cycle in 0..soak_cycles() {
        outage_cycle(&app, &check_db, &mut outage, cycle).await;
    }
    app.stop().await;
    // Commits refused for want of space left the file sound.
    assert_eq!(sqlite_integrity_check(&db.url()), "ok");
    eprintln!("sqlite: {:?}", started.elapsed());
}
