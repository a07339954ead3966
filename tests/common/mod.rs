//! Shared test helpers: fresh databases for the store contract suite and
//! the end-to-end tests.
#![allow(dead_code)]

use eventuall::store::{EventStore, StoreOptions};

/// `contract!(behaviour, …)`: each behaviour is an `async fn(&TestDb)` in the
/// calling file; this turns it into a `sqlite::…` and a `postgres::…` test,
/// each on a fresh database that is dropped afterwards.
#[allow(unused_macros)]
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = super::TestDb::sqlite().await;
                super::$name(&db).await;
                db.drop_db().await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = super::TestDb::postgres().await;
                super::$name(&db).await;
                db.drop_db().await;
            })*
        }
    };
}

/// Server used for PostgreSQL tests; each test gets its own database on it.
pub fn postgres_admin_url() -> String {
    std::env::var("EVENTUALL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    /// Keeps the SQLite directory alive; `None` for PostgreSQL.
    _dir: Option<tempfile::TempDir>,
    postgres_name: Option<String>,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("events.db").display());
        Self { url, _dir: Some(dir), postgres_name: None }
    }

    pub async fn postgres() -> Self {
        use sqlx::Connection;
        let admin = postgres_admin_url();
        let name = format!("eventuall_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL must be running for the PostgreSQL suite (see .ci/run)");
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).expect("url has a database");
        Self { url: format!("{base}/{name}"), _dir: None, postgres_name: Some(name) }
    }

    pub async fn open(&self) -> EventStore {
        EventStore::open(&self.url, StoreOptions::default()).await.expect("store opens")
    }

    /// Drops a PostgreSQL test database (call at the end of a test).
    pub async fn drop_db(self) {
        use sqlx::Connection;
        if let Some(name) = &self.postgres_name
            && let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("drop database if exists {name} with (force)")))
                .execute(&mut conn)
                .await;
        }
    }
}
