//! Audits and replays of the event log: `eventuall replay …`.
//!
//! Everything here reads the log; only [`rebuild`] writes, and only
//! projection tables and checkpoints, never events. Each command's logic is
//! a library function the tests call directly; [`cli`] parses arguments and
//! prints.
//!
//! Layout:
//! - [`registry`]: stream category → event type, with upcasters; used by
//!   every read path that decodes events (also the projections).
//! - [`raw`]: events exactly as stored, in global order, in batches read
//!   ahead of the consumer.
//! - [`scan`]: the whole log at full speed (a direct SQLite cursor,
//!   PostgreSQL binary `copy`), for `verify` and `rebuild`.
//! - [`verify`]: versions, hash chains, metadata and payloads of every stream.
//! - [`rebuild`]: projections from position 0 into shadow tables, swapped in
//!   atomically.
//! - [`state`]: an aggregate's state as of a position or a time.
//! - [`history`]: a stream's readable timeline, and JSON Lines exports.
//! - [`cli`]: the clap subcommands.

pub mod cli;
pub mod history;
pub mod rebuild;
/// The registry moved to the store (every read path decodes through it);
/// `replay::registry` stays as a path for audit code and tests.
pub use crate::store::registry;
pub mod state;
pub mod verify;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::store::StoreError;
use crate::store::registry::DecodeError;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{stream} version {version} cannot be decoded: {error}")]
    Decode { stream: String, version: u64, error: DecodeError },
    #[error("no aggregate state is known for streams of category {0:?}")]
    UnknownCategory(String),
    #[error("unknown projection {0:?} (known: room_presence, analytics, interviews)")]
    UnknownProjection(String),
    #[error("stream {0} has no events")]
    EmptyStream(String),
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    #[error("--at {0:?} is neither a position, `<n>ms`, nor an RFC 3339 time")]
    InvalidAt(String),
}

/// A progress bar on stderr, or nothing (JSON output, not a terminal, tests).
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn hidden() -> Self {
        Self { bar: None }
    }

    /// Visible only when stderr is a terminal and output is for humans.
    pub fn for_terminal(output: Output) -> Self {
        use std::io::IsTerminal;
        if output == Output::Json || !std::io::stderr().is_terminal() {
            return Self::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} positions ({per_sec}, eta {eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Self { bar: Some(bar) }
    }

    pub fn start(&self, total: u64, message: &'static str) {
        if let Some(bar) = &self.bar {
            bar.reset();
            bar.set_length(total);
            bar.set_message(message);
        }
    }

    pub fn set(&self, position: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Who reads the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Human,
    Json,
}
