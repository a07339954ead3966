//! The `eventuall` command: `serve`, `migrate`, and developer tools.

use anyhow::Context;
use clap::{Parser, Subcommand};
use eventuall::config::{DatabaseArgs, ServeConfig};
use eventuall::server::{Application, redact};
use eventuall::store::EventStore;

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
    /// The recording command queue: list dead letters, retry one.
    #[command(subcommand)]
    Commands(CommandsCli),
    /// Audit and replay the event log: verify, rebuild, state, history,
    /// export, status.
    Replay(eventuall::replay::cli::ReplayArgs),
    /// Move cold streams to object storage (`archive STREAM…`, `archive
    /// --category C --older-than D`), `archive restore STREAM…`, `archive list`.
    Archive(eventuall::archiving::cli::ArchiveArgs),
    /// Developer tools (load generators for tests and benchmarks).
    #[command(subcommand, hide = true)]
    Tools(eventuall::tools::Tool),
}

#[derive(Subcommand)]
enum CommandsCli {
    /// Lists recording commands that exhausted their retries.
    DeadLetters(DatabaseArgs),
    /// Puts a dead-lettered command back in the queue.
    Retry {
        command_id: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
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
            let store = EventStore::open(&db.database_url, db.store_options())
                .await
                .with_context(|| format!("migrating {}", redact(&db.database_url)))?;
            store.shutdown().await;
            println!("migrated {}", redact(&db.database_url));
            Ok(())
        }
        Command::Commands(cli) => run_commands(cli).await,
        Command::Replay(replay) => {
            let code = replay.run().await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Archive(archive) => archive.run().await,
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

async fn run_commands(cli: CommandsCli) -> anyhow::Result<()> {
    use eventuall::recording::db;
    let db = match &cli {
        CommandsCli::DeadLetters(db) | CommandsCli::Retry { db, .. } => db.clone(),
    };
    let url = &db.database_url;
    let store = EventStore::open(url, db.store_options()).await.with_context(|| format!("opening {}", redact(url)))?;
    let result = match cli {
        CommandsCli::DeadLetters(_) => {
            for row in db::commands_with_status(&store, db::CommandStatus::Dead).await? {
                println!("{}", serde_json::to_string(&row)?);
            }
            Ok(())
        }
        CommandsCli::Retry { command_id, .. } => {
            if db::retry_dead(&store, &command_id, eventuall::store::now_millis()).await? {
                println!("{command_id} queued again");
                Ok(())
            } else {
                Err(anyhow::anyhow!("no dead letter {command_id}"))
            }
        }
    };
    store.shutdown().await;
    result
}
