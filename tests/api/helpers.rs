//! `spawn_app()`: the real service on port 0 with a fresh database, plus
//! typed helpers for tokens, HTTP calls and WebSocket clients.

use std::time::Duration;

use clap::Parser;
use eventuall::auth::{Authenticator, Claims, Role};
use eventuall::config::ServeConfig;
use eventuall::server::Application;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[path = "../common/mod.rs"]
mod common;
pub use common::TestDb;

pub const SECRET: &str = "test-secret";

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: ServeConfig,
}

/// The service's own defaults (the seed's numbers): only the listener, the
/// database, the secret and `extra` are given.
pub fn config_with_defaults(database_url: &str, extra: &[&str]) -> ServeConfig {
    let mut args = vec!["test", "--listen", "127.0.0.1:0", "--database-url", database_url, "--jwt-secret", SECRET];
    args.extend_from_slice(extra);
    Args::try_parse_from(args).expect("test config parses").config
}

/// Fast presence timings so away / sweep behaviour shows in milliseconds.
pub fn config_with(database_url: &str, extra: &[&str]) -> ServeConfig {
    let mut args = vec![
        "test",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        database_url,
        "--jwt-secret",
        SECRET,
        "--away-after",
        "400ms",
        "--sweep-every",
        "100ms",
        "--forget-after",
        "24h",
        "--evict-after",
        "300ms",
        "--max-frame-bytes",
        "1024",
        "--max-body-bytes",
        "4096",
        "--cors-origins",
        "https://app.example.com",
    ];
    args.extend_from_slice(extra);
    Args::try_parse_from(args).expect("test config parses").config
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub http: reqwest::Client,
    pub db: TestDb,
    pub state: eventuall::http::AppState,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_on(TestDb::sqlite().await, &[]).await
}

/// `EVENTUALL_TEST_LOG=<filter>` shows the service's log in a test's
/// output (nextest prints it for a failing test): the way to see why a
/// request answered 500.
pub fn init_test_log() {
    if let Ok(filter) = std::env::var("EVENTUALL_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

pub async fn spawn_app_on(db: TestDb, extra: &[&str]) -> TestApp {
    init_test_log();
    let app = Application::build(config_with(&db.url, extra)).await.expect("app builds");
    let addr = app.local_addr();
    let state = app.state().clone();
    let shutdown = app.shutdown_handle();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp { addr, http: reqwest::Client::new(), db, state, shutdown, server }
}

/// Serves an already built `Application` (a manual clock, simulators).
pub fn serve_built(db: TestDb, app: Application) -> TestApp {
    init_test_log();
    let addr = app.local_addr();
    let state = app.state().clone();
    let shutdown = app.shutdown_handle();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp { addr, http: reqwest::Client::new(), db, state, shutdown, server }
}

pub fn token(user: &str, role: Role, events: Option<&[&str]>) -> String {
    let claims = Claims {
        sub: user.into(),
        exp: eventuall::store::now_millis() / 1000 + 3600,
        name: Some(format!("{user} name")),
        role,
        events: events.map(|e| e.iter().map(|s| s.to_string()).collect()),
    };
    Authenticator::new(SECRET).issue(&claims)
}

pub fn moderator() -> String {
    token("mod", Role::Moderator, None)
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Asks the server to stop, without waiting (it drains meanwhile).
    pub fn begin_stop(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Whether the server has returned from `run_until_stopped`.
    pub fn has_stopped(&self) -> bool {
        self.server.is_finished()
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(self) -> TestDb {
        let _ = self.shutdown.send(true);
        self.server.await.expect("server task").expect("server ran");
        self.db
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self.http.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    /// Opens an event room socket as `user` and returns it with its first
    /// frame, which must be a snapshot.
    pub async fn join(&self, event: &str, token: &str) -> (Socket, Value) {
        let (mut socket, _) =
            tokio_tungstenite::connect_async(self.ws_url(&format!("/parties/event/{event}?token={token}&_pk=test")))
                .await
                .expect("socket connects");
        let first = next_json(&mut socket).await;
        assert_eq!(first["type"], "snapshot", "the first frame is a snapshot: {first}");
        (socket, first)
    }
}

/// The next text frame as JSON (fails after 5 s).
pub async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .expect("frame ok");
        match frame {
            Message::Text(text) => return serde_json::from_str(&text).expect("frames are JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads snapshots until one satisfies `accept` (fails after 5 s).
pub async fn snapshot_where(socket: &mut Socket, accept: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no matching snapshot within 5 s");
        let frame = next_json(socket).await;
        if frame["type"] == "snapshot" && accept(&frame) {
            return frame;
        }
    }
}

pub async fn send_text(socket: &mut Socket, text: &str) {
    socket.send(Message::text(text)).await.expect("send");
}

/// The presence entry of `user` in a snapshot.
pub fn presence_of<'a>(snapshot: &'a Value, user: &str) -> Option<&'a Value> {
    snapshot["presence"].as_array()?.iter().find(|p| p["userId"] == user)
}
