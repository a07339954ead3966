//! The `eventuall` command: `serve`, `migrate`, and developer tools.

use anyhow::Context;
use clap::{Parser, Subcommand};
use eventuall::config::{DatabaseArgs, ServeConfig};
use eventuall::server::{Application, redact};
use eventuall::store::{EventStore, StoreOptions};

#[derive(Parser)]
#[command(name = "eventuall", version, about = "Event-sourced backend for live events")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP and WebSocket service.
    Serve(Box<ServeConfig>),
    /// Create or upgrade the database schema, then exit.
    Migrate(DatabaseArgs),
    /// Audit and replay the event log: verify, rebuild, state, history,
    /// export, status.
    Replay(eventuall::replay::cli::ReplayArgs),
    /// Developer tools (load generators for tests and benchmarks).
    #[command(subcommand, hide = true)]
    Tools(eventuall::tools::Tool),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Serve(config) => {
            let app = Application::build(*config).await?;
            tracing::info!(addr = %app.local_addr(), "eventuall listening");
            app.run_until_stopped().await
        }
        Command::Migrate(db) => {
            let store = EventStore::open(&db.database_url, StoreOptions::default())
                .await
                .with_context(|| format!("migrating {}", redact(&db.database_url)))?;
            store.shutdown().await;
            println!("migrated {}", redact(&db.database_url));
            Ok(())
        }
        Command::Replay(replay) => {
            let code = replay.run().await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Tools(tool) => tool.run().await,
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("EVENTUALL_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let json = std::env::var("EVENTUALL_LOG_FORMAT").is_ok_and(|f| f == "json");
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
