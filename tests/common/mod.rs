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

/// A database that exists for one test, with an archive folder of its own.
pub struct TestDb {
    pub url: String,
    /// `file://…` of the test's archive folder.
    pub archive_url: String,
    /// Holds the SQLite file and the archive folder.
    dir: tempfile::TempDir,
    postgres_name: Option<String>,
}

fn archive_url(dir: &tempfile::TempDir) -> String {
    format!("file://{}", dir.path().join("archive").display())
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("events.db").display());
        Self { url, archive_url: archive_url(&dir), dir, postgres_name: None }
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
        let dir = tempfile::tempdir().expect("temp dir");
        Self { url: format!("{base}/{name}"), archive_url: archive_url(&dir), dir, postgres_name: Some(name) }
    }

    pub async fn open(&self) -> EventStore {
        self.open_with_archive(&self.archive_url).await
    }

    /// The store with its archive at `archive_url` (an S3 bucket, say).
    pub async fn open_with_archive(&self, archive_url: &str) -> EventStore {
        let options = StoreOptions { archive_url: Some(archive_url.to_owned()), ..StoreOptions::default() };
        EventStore::open(&self.url, options).await.expect("store opens")
    }

    /// The test's scratch folder (it holds the SQLite file and the archive).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
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
