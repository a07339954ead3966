//! `eventuall replay …`: argument parsing and printing for [`super`].
//!
//! Human output goes to stdout, progress bars to stderr (only on a
//! terminal); `--json` prints machine-readable JSON (one document, or JSON
//! Lines for `history` and `export`) and never draws a bar. `verify` exits
//! with 1 when it finds a problem.

use std::io::Write;

use clap::{Args, Subcommand};

use super::state::At;
use super::{Output, Progress, ReplayError, history, rebuild, state, verify};
use crate::projections::{self, Projection};
use crate::store::raw::Filter;
use crate::store::registry::Registry;
use crate::store::{EventStore, StreamId};

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub log: crate::config::ExistingLogArgs,
    /// Machine-readable output (JSON; JSON Lines for history and export).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: ReplayCommand,
}

#[derive(Subcommand, Debug)]
pub enum ReplayCommand {
    /// Check every stream: contiguous versions, intact hash chain, metadata,
    /// payloads that decode. Exits 1 if anything is wrong.
    Verify,
    /// Rebuild projections from position 0 into shadow tables and swap them
    /// in (all projections when none is named).
    Rebuild {
        /// `room_presence`, `analytics`.
        projections: Vec<String>,
    },
    /// An aggregate's state as it was at a position or a time.
    State {
        /// e.g. `room-launch`, `queue-launch`.
        stream: String,
        /// A global position (`1234`), a time in milliseconds
        /// (`1764000000000ms`) or an RFC 3339 time (`2026-11-23T18:30:00Z`).
        /// Default: now.
        #[arg(long)]
        at: Option<String>,
    },
    /// A stream's timeline: time, version, type, actor, command, correlation
    /// id and a payload summary.
    History { stream: String },
    /// Events as JSON Lines with every stored field (hash in hex).
    Export {
        #[arg(long, conflicts_with_all = ["category", "all"])]
        stream: Option<String>,
        #[arg(long, conflicts_with = "all")]
        category: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Each projection's checkpoint, the log head and the lag.
    Status,
}

impl ReplayArgs {
    /// Runs the command; returns the process exit code.
    pub async fn run(self) -> anyhow::Result<i32> {
        // An audit of a log that is not there must fail, not verify a new
        // empty file.
        let store = self.log.open().await?;
        let output = if self.json { Output::Json } else { Output::Human };
        let code = run(&store, self.command, output).await;
        store.shutdown().await;
        code
    }
}

async fn run(store: &EventStore, command: ReplayCommand, output: Output) -> anyhow::Result<i32> {
    let registry = Registry::standard();
    let progress = Progress::for_terminal(output);
    let mut stdout = std::io::stdout().lock();
    match command {
        ReplayCommand::Verify => {
            let report = verify::verify(store, registry, &progress).await?;
            if output == Output::Json {
                writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
            } else {
                for problem in &report.problems {
                    writeln!(stdout, "{problem}")?;
                }
                if report.problem_count > report.problems.len() as u64 {
                    writeln!(stdout, "… and {} more", report.problem_count - report.problems.len() as u64)?;
                }
                writeln!(
                    stdout,
                    "{}: {} events in {} streams up to position {} in {:.2} s ({:.0} events/s), {} problem(s)",
                    if report.is_sound() { "sound" } else { "NOT SOUND" },
                    report.events,
                    report.streams,
                    report.head,
                    report.elapsed.as_secs_f64(),
                    report.events_per_second(),
                    report.problem_count
                )?;
            }
            Ok(if report.is_sound() { 0 } else { 1 })
        }
        ReplayCommand::Rebuild { projections } => {
            let chosen = if projections.is_empty() {
                Projection::ALL.to_vec()
            } else {
                projections
                    .iter()
                    .map(|name| Projection::parse(name).ok_or_else(|| ReplayError::UnknownProjection(name.clone())))
                    .collect::<Result<Vec<_>, _>>()?
            };
            for projection in chosen {
                let report = rebuild::rebuild(store, projection, &progress).await?;
                if output == Output::Json {
                    writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
                } else {
                    writeln!(
                        stdout,
                        "rebuilt {} from {} events in {:.2} s ({:.0} events/s); checkpoint {}",
                        report.projection,
                        report.events,
                        report.elapsed.as_secs_f64(),
                        report.events_per_second(),
                        report.position
                    )?;
                }
            }
            Ok(0)
        }
        ReplayCommand::State { stream, at } => {
            let stream = StreamId::parse(stream)?;
            let at = match at {
                Some(raw) => raw.parse::<At>()?,
                None => At::Position(i64::MAX),
            };
            let state = state::state_at(store, registry, &stream, at).await?;
            if output == Output::Json {
                writeln!(stdout, "{}", serde_json::to_string(&state)?)?;
            } else {
                writeln!(
                    stdout,
                    "{} at version {} (position {}, stored {})",
                    state.stream_id,
                    state.version,
                    state.global_position.map_or("-".to_owned(), |p| p.to_string()),
                    state.recorded_at.map_or("-".to_owned(), history::rfc3339_millis)
                )?;
                writeln!(stdout, "{}", serde_json::to_string_pretty(&state.state)?)?;
            }
            Ok(0)
        }
        ReplayCommand::History { stream } => {
            let stream = StreamId::parse(stream)?;
            let printed = history::for_each_history(store, &stream, |entry| match output {
                Output::Json => writeln!(stdout, "{}", serde_json::to_string(&entry).expect("entries serialise")),
                Output::Human => writeln!(stdout, "{}", entry.line()),
            })
            .await?;
            // As `state` does: a stream with no events is an error, not an
            // empty history (a mistyped id must not look like a quiet one).
            if printed == 0 {
                return Err(ReplayError::EmptyStream(stream.to_string()).into());
            }
            Ok(0)
        }
        ReplayCommand::Export { stream, category, all } => {
            let filter = match (stream, category, all) {
                (Some(s), _, _) => Filter::Stream(StreamId::parse(s)?.to_string()),
                (_, Some(c), _) => Filter::Category(c),
                (_, _, true) => Filter::All,
                _ => anyhow::bail!("choose what to export: --stream S, --category C or --all"),
            };
            let mut out = std::io::BufWriter::new(stdout);
            history::for_each_export(store, filter, |_, line| writeln!(out, "{line}")).await?;
            out.flush()?;
            Ok(0)
        }
        ReplayCommand::Status => {
            let statuses = projections::status(store).await?;
            if output == Output::Json {
                writeln!(stdout, "{}", serde_json::to_string(&statuses)?)?;
            } else {
                writeln!(stdout, "{:<16} {:>12} {:>12} {:>10}", "projection", "position", "head", "lag")?;
                for s in statuses {
                    writeln!(stdout, "{:<16} {:>12} {:>12} {:>10}", s.name, s.position, s.head, s.lag)?;
                }
            }
            Ok(0)
        }
    }
}
