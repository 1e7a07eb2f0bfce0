//! The bench's own look at the database: a fresh one per backend, the orders the API created,
//! what the notifies did to them, and a fingerprint that moves on any write.

use std::collections::HashMap;

use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::Sqlite;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection, sql_query};

/// A database made for one run, dropped afterwards (PostgreSQL) or left in the run's directory.
pub enum BenchDb {
    Sqlite(String),
    Postgres { admin_url: String, name: String, url: String },
}

impl BenchDb {
    pub fn postgres(admin_url: &str) -> Result<BenchDb, String> {
        let mut admin = PgConnection::establish(admin_url).map_err(|e| e.to_string())?;
        let name = format!("wc_bench_{}", std::process::id());
        sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .map_err(|e| e.to_string())?;
        sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin).map_err(|e| e.to_string())?;
        let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
        Ok(BenchDb::Postgres { admin_url: admin_url.to_owned(), url: format!("{base}/{name}"), name })
    }

    pub fn url(&self) -> &str {
        match self {
            BenchDb::Sqlite(path) => path,
            BenchDb::Postgres { url, .. } => url,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            BenchDb::Sqlite(_) => "SQLite",
            BenchDb::Postgres { .. } => "PostgreSQL",
        }
    }

    fn load<T>(&self, sql: &str) -> Vec<T>
    where
        T: QueryableByName<Pg> + QueryableByName<Sqlite> + 'static,
    {
        match self {
            BenchDb::Sqlite(path) => sql_query(sql).load(&mut SqliteConnection::establish(path).unwrap()).unwrap(),
            BenchDb::Postgres { url, .. } => sql_query(sql).load(&mut PgConnection::establish(url).unwrap()).unwrap(),
        }
    }

    /// Every order, oldest first: (out_trade_no, amount_fen).
    pub fn orders(&self) -> Vec<(String, i64)> {
        let rows: Vec<OrderRow> =
            self.load("SELECT out_trade_no, amount_fen FROM orders ORDER BY created_at, out_trade_no");
        rows.into_iter().map(|r| (r.out_trade_no, r.amount_fen)).collect()
    }

    /// Orders by state.
    pub fn states(&self) -> HashMap<String, String> {
        let rows: Vec<StateRow> = self.load("SELECT out_trade_no, state FROM orders");
        rows.into_iter().map(|r| (r.out_trade_no, r.state)).collect()
    }

    /// How many transitions to PAID each order's timeline holds.
    pub fn paid_transitions(&self) -> HashMap<String, i64> {
        let rows: Vec<CountRow> = self
            .load("SELECT out_trade_no, COUNT(*) AS n FROM order_events WHERE to_state = 'PAID' GROUP BY out_trade_no");
        rows.into_iter().map(|r| (r.out_trade_no, r.n)).collect()
    }

    /// Moves whenever anything is written: every table's row count and, on PostgreSQL, the newest
    /// row version (`xmin`); on SQLite, the size and modification time of the file and of its
    /// write-ahead log.
    pub fn fingerprint(&self) -> String {
        let tables: Vec<NameRow> = match self {
            BenchDb::Sqlite(_) => self.load("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"),
            BenchDb::Postgres { .. } => {
                self.load("SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
            }
        };
        let mut print = String::new();
        for t in tables {
            let sql = match self {
                BenchDb::Sqlite(_) => format!("SELECT '{0}' AS name, COUNT(*) AS n FROM \"{0}\"", t.name),
                BenchDb::Postgres { .. } => format!(
                    "SELECT '{0}' || ':' || COALESCE(MAX(xmin::text::bigint), 0) AS name, COUNT(*) AS n FROM \"{0}\"",
                    t.name
                ),
            };
            for row in self.load::<CountNameRow>(&sql) {
                print.push_str(&format!("{}={} ", row.name, row.n));
            }
        }
        if let BenchDb::Sqlite(path) = self {
            for file in [path.clone(), format!("{path}-wal")] {
                let meta = std::fs::metadata(&file).ok();
                let (len, modified) = (meta.as_ref().map(|m| m.len()), meta.and_then(|m| m.modified().ok()));
                print.push_str(&format!("{file}={len:?}@{modified:?} "));
            }
        }
        print
    }

    pub fn drop_database(&self) {
        if let BenchDb::Postgres { admin_url, name, .. } = self
            && let Ok(mut admin) = PgConnection::establish(admin_url)
        {
            let _ = sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin);
        }
    }
}

#[derive(QueryableByName)]
struct OrderRow {
    #[diesel(sql_type = Text)]
    out_trade_no: String,
    #[diesel(sql_type = BigInt)]
    amount_fen: i64,
}

#[derive(QueryableByName)]
struct StateRow {
    #[diesel(sql_type = Text)]
    out_trade_no: String,
    #[diesel(sql_type = Text)]
    state: String,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = Text)]
    out_trade_no: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct CountNameRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}
