//! When cold streams move to the archive tier: the service's policies and
//! the operators' `eventuall archive` command ([`cli`]).
//!
//! The mechanism (segments, reads that join archive and tail, restore) is
//! the store's ([`crate::store::archive`]); this module only decides what
//! is cold and when to look:
//! - an **interview** is archived `EVENTUALL_ARCHIVE_AFTER` after it was
//!   last used, by a durable timer its actor arms when it leaves memory
//!   ([`crate::interviews::InterviewTimer::Archive`]);
//! - an **event's** room, queue, recording and coordinator streams are
//!   archived `EVENTUALL_ARCHIVE_EVENTS_AFTER` after their last event, by a
//!   sweep every `EVENTUALL_ARCHIVE_SWEEP_EVERY` ([`run_sweeps`]).
//!
//! Both are idempotent: archiving a stream again moves only what was
//! appended since, so a sweep repeated after a crash does no harm.

pub mod cli;

use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::store::archive::ArchiveOutcome;
use crate::store::{EventStore, StoreError, StreamId};

/// The categories of an event's streams.
pub const EVENT_CATEGORIES: &[&str] = &["room", "queue", "recording", "coordinator"];

/// The service's archive policy, in the units it uses.
#[derive(Clone, Copy, Debug)]
pub struct ArchivePolicy {
    pub interviews_after: Duration,
    pub events_after: Duration,
    /// `None`: the service never sweeps (operators archive by hand).
    pub sweep_every: Option<Duration>,
}

impl From<&crate::config::ArchivePolicyArgs> for ArchivePolicy {
    fn from(args: &crate::config::ArchivePolicyArgs) -> Self {
        let sweep_every: Duration = args.archive_sweep_every.into();
        Self {
            interviews_after: args.archive_after.into(),
            events_after: args.archive_events_after.into(),
            sweep_every: (!sweep_every.is_zero()).then_some(sweep_every),
        }
    }
}

/// What one sweep (or one `eventuall archive` run) did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Streams that had something to archive.
    pub streams: u64,
    pub segments: u64,
    pub events: u64,
    pub bytes: u64,
    /// Streams that could not be archived, with why.
    pub failed: Vec<(String, String)>,
}

impl SweepReport {
    pub fn add(&mut self, outcome: ArchiveOutcome) {
        if outcome.events > 0 {
            self.streams += 1;
        }
        self.segments += outcome.segments;
        self.events += outcome.events;
        self.bytes += outcome.bytes;
    }
}

/// Streams of `categories` whose newest event is older than `before`
/// (milliseconds since the epoch).
pub async fn cold_streams(store: &EventStore, categories: &[&str], before: i64) -> Result<Vec<StreamId>, StoreError> {
    let mut streams = Vec::new();
    for category in categories {
        streams.extend(store.cold_streams(category, before).await?);
    }
    Ok(streams)
}

/// Archives `streams` one by one; `progress` is told after each. A stream
/// that fails is reported and the rest go on.
pub async fn archive_streams(
    store: &EventStore,
    streams: &[StreamId],
    mut progress: impl FnMut(&StreamId, &Result<ArchiveOutcome, StoreError>),
) -> SweepReport {
    let mut report = SweepReport::default();
    for stream in streams {
        let result = store.archive_stream(stream).await;
        progress(stream, &result);
        match result {
            Ok(outcome) => report.add(outcome),
            Err(error) => report.failed.push((stream.to_string(), error.to_string())),
        }
    }
    report
}

/// One sweep of the event streams: those whose last event is older than
/// `policy.events_after` at the clock's now.
pub async fn sweep_events(
    store: &EventStore,
    clock: &SharedClock,
    policy: &ArchivePolicy,
) -> Result<SweepReport, StoreError> {
    let before = clock.now_millis() - policy.events_after.as_millis() as i64;
    let streams = cold_streams(store, EVENT_CATEGORIES, before).await?;
    Ok(archive_streams(store, &streams, |_, _| {}).await)
}

/// The service's sweep loop: one sweep after start-up, then one every
/// `sweep_every`, until `shutdown`.
pub async fn run_sweeps(
    store: EventStore,
    clock: SharedClock,
    policy: ArchivePolicy,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(every) = policy.sweep_every else { return };
    loop {
        match sweep_events(&store, &clock, &policy).await {
            Ok(report) if report.events > 0 || !report.failed.is_empty() => {
                tracing::info!(
                    streams = report.streams,
                    events = report.events,
                    failed = report.failed.len(),
                    "archive sweep"
                );
                for (stream, error) in &report.failed {
                    tracing::warn!(%stream, %error, "stream not archived");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "archive sweep failed; next one in {every:?}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
