//! `eventuall archive …`: the operators' archive command.
//!
//! - `eventuall archive STREAM…` archives those streams;
//! - `eventuall archive --category C[,C…] --older-than D` archives every
//!   stream of those categories whose last event is older than `D`;
//! - `eventuall archive restore STREAM…` brings streams back to the hot
//!   tables; `eventuall archive list [STREAM]` prints the segments.
//!
//! A progress bar goes to stderr on a terminal; `--json` prints one JSON
//! document. Exits 1 when a stream could not be archived or restored.

use std::io::IsTerminal;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::{SweepReport, archive_streams, cold_streams};
use crate::store::archive::RestoreOutcome;
use crate::store::{EventStore, StreamId, now_millis};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub log: crate::config::ExistingLogArgs,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<ArchiveCommand>,
    /// Streams to archive, e.g. `interview-0193…`, `room-launch`.
    pub streams: Vec<String>,
    /// Archive every cold stream of these categories (`room,queue,…`).
    #[arg(long, value_delimiter = ',', requires = "older_than", conflicts_with = "streams")]
    pub category: Vec<String>,
    /// With `--category`: streams whose last event is older than this (`30d`).
    #[arg(long, requires = "category")]
    pub older_than: Option<humantime::Duration>,
}

#[derive(Subcommand, Debug)]
pub enum ArchiveCommand {
    /// Put archived streams back in the hot tables and delete their segments.
    Restore {
        #[arg(required = true)]
        streams: Vec<String>,
    },
    /// The archive's segments (of one stream, or all).
    List { stream: Option<String> },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RestoreReport {
    streams: u64,
    segments: u64,
    events: u64,
    failed: Vec<(String, String)>,
}

impl ArchiveArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let store = self.log.open().await?;
        let result = self.execute(&store).await;
        store.shutdown().await;
        if !result? {
            std::process::exit(1);
        }
        Ok(())
    }

    /// Runs the command; `Ok(false)` when some stream failed.
    async fn execute(&self, store: &EventStore) -> anyhow::Result<bool> {
        match &self.command {
            Some(ArchiveCommand::List { stream }) => {
                let segments = match stream {
                    Some(stream) => store.segments_of(&StreamId::parse(stream.clone())?).await?,
                    None => store.all_segments().await?,
                };
                if self.json {
                    println!("{}", serde_json::to_string_pretty(&segments)?);
                } else {
                    for s in &segments {
                        println!(
                            "{} v{}..{} positions {}..{} {} events {} bytes {}",
                            s.stream_id,
                            s.first_version,
                            s.last_version,
                            s.first_position,
                            s.last_position,
                            s.event_count,
                            s.bytes,
                            s.location
                        );
                    }
                    println!("{} segments in {}", segments.len(), store.archive().url());
                }
                Ok(true)
            }
            Some(ArchiveCommand::Restore { streams }) => {
                let streams = parse_streams(streams)?;
                let bar = self.bar(streams.len() as u64, "restoring");
                let mut report = RestoreReport { streams: 0, segments: 0, events: 0, failed: Vec::new() };
                for stream in &streams {
                    match store.restore_stream(stream).await {
                        Ok(RestoreOutcome { segments, events }) => {
                            report.streams += u64::from(segments > 0);
                            report.segments += segments;
                            report.events += events;
                        }
                        Err(error) => report.failed.push((stream.to_string(), error.to_string())),
                    }
                    bar.inc(1);
                }
                bar.finish_and_clear();
                if self.json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    println!(
                        "restored {} streams: {} segments, {} events",
                        report.streams, report.segments, report.events
                    );
                    for (stream, error) in &report.failed {
                        eprintln!("{stream}: {error}");
                    }
                }
                Ok(report.failed.is_empty())
            }
            None => {
                let streams = if self.category.is_empty() {
                    if self.streams.is_empty() {
                        anyhow::bail!("name streams to archive, or --category C --older-than D");
                    }
                    parse_streams(&self.streams)?
                } else {
                    let older_than: std::time::Duration = self.older_than.context("--older-than")?.into();
                    let before = now_millis() - older_than.as_millis() as i64;
                    let categories: Vec<&str> = self.category.iter().map(String::as_str).collect();
                    cold_streams(store, &categories, before).await?
                };
                let bar = self.bar(streams.len() as u64, "archiving");
                let report = archive_streams(store, &streams, |stream, _| {
                    bar.set_message(stream.to_string());
                    bar.inc(1);
                })
                .await;
                bar.finish_and_clear();
                self.print_archived(&report, store)?;
                Ok(report.failed.is_empty())
            }
        }
    }

    fn print_archived(&self, report: &SweepReport, store: &EventStore) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(report)?);
        } else {
            println!(
                "archived {} streams: {} segments, {} events, {} bytes to {}",
                report.streams,
                report.segments,
                report.events,
                report.bytes,
                store.archive().url()
            );
            for (stream, error) in &report.failed {
                eprintln!("{stream}: {error}");
            }
        }
        Ok(())
    }

    /// A progress bar over `total` streams, drawn only on a terminal.
    fn bar(&self, total: u64, verb: &'static str) -> ProgressBar {
        if self.json || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} streams ({per_sec}, eta {eta}) {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(verb);
        bar
    }
}

fn parse_streams(raw: &[String]) -> anyhow::Result<Vec<StreamId>> {
    raw.iter().map(|s| StreamId::parse(s.clone()).map_err(anyhow::Error::from)).collect()
}
