//! `eventuall-bench archive`: the archive tier (ADR 0017) on a log of
//! `streams` room streams of `per_stream` events each.
//!
//! For each database (SQLite, PostgreSQL), in one run: fill; the hot
//! tables' size; archive every stream (events/s, `parallel` streams at a
//! time); the hot size after (and after the database reclaims the space:
//! SQLite's used pages, PostgreSQL's `vacuum full`); the first read of an
//! archived stream from a fresh process (no segment cached: object read,
//! hash check, decode, merge with the hot tail; p50/p99 over `samples`
//! streams) beside the same read of a hot stream; an aggregate load of an
//! archived room (what an actor does on the next connect); `replay verify`
//! over the archived log; then restore every stream (events/s).

use std::time::{Duration, Instant};

use eventuall::replay::registry::Registry;
use eventuall::replay::{Progress, verify};
use eventuall::store::{EventStore, StoreOptions, StreamId, aggregate};
use eventuall_domain::room::EventRoom;

#[derive(clap::Args)]
pub struct ArchiveArgs {
    #[arg(long, default_value_t = 1_000)]
    streams: u64,
    #[arg(long, default_value_t = 1_000)]
    per_stream: u64,
    /// Streams archived (and restored) at a time.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Archived streams read cold for the first-read latency.
    #[arg(long, default_value_t = 50)]
    samples: usize,
    /// `sqlite`, a `postgres://` server URL, or both (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres://postgres@127.0.0.1:5432/postgres")]
    databases: Vec<String>,
}

fn stream(s: u64) -> StreamId {
    StreamId::of("room", &format!("bench-{s}"))
}

/// Bytes the `events` and `snapshots` tables occupy now.
async fn hot_bytes(store: &EventStore) -> anyhow::Result<i64> {
    let rows: Vec<(i64,)> = if store.is_postgres() {
        store.query_as("select pg_total_relation_size('events') + pg_total_relation_size('snapshots')", &[]).await?
    } else {
        // Pages in use (freed pages stay in the file until a vacuum).
        store
            .query_as(
                "select (select page_count from pragma_page_count()) * (select page_size from pragma_page_size()) \
                 - (select freelist_count from pragma_freelist_count()) * (select page_size from pragma_page_size())",
                &[],
            )
            .await?
    };
    Ok(rows[0].0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1_000.0
}

/// Runs `work` over every stream, `parallel` at a time; returns the time.
async fn over_streams<F, Fut>(streams: u64, parallel: usize, work: F) -> anyhow::Result<Duration>
where
    F: Fn(StreamId) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use futures::StreamExt;
    let started = Instant::now();
    let mut results = futures::stream::iter((0..streams).map(|s| work(stream(s)))).buffer_unordered(parallel.max(1));
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(started.elapsed())
}

pub async fn run(args: ArchiveArgs) -> anyhow::Result<()> {
    println!(
        "| database | events | archive | events/s | hot before | hot after | reclaimed | first read archived p50 / p99 | hot read p50 / p99 | load archived room p50 | verify events/s | restore | events/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for database in &args.databases {
        let dir = tempfile::tempdir()?;
        let archive_url = format!("file://{}", dir.path().join("archive").display());
        let (url, server) = if database == "sqlite" {
            (format!("sqlite://{}", dir.path().join("archive-bench.db").display()), None)
        } else {
            (super::fresh_postgres(database).await?, Some(database.clone()))
        };
        let options = || StoreOptions { archive_url: Some(archive_url.clone()), ..StoreOptions::default() };
        let store = EventStore::open(&url, options()).await?;
        super::replay::fill(&store, args.streams * args.per_stream, args.streams).await?;
        let events = store.head_position().await?;
        let before = hot_bytes(&store).await?;

        let archive_time = over_streams(args.streams, args.parallel, |s| {
            let store = store.clone();
            async move {
                store.archive_stream(&s).await?;
                Ok(())
            }
        })
        .await?;
        // Summed here: `sum` of a bigint is a numeric on PostgreSQL.
        let counts: Vec<(i64,)> = store.query_as("select event_count from archive_segments", &[]).await?;
        let archived: i64 = counts.iter().map(|(n,)| n).sum();
        anyhow::ensure!(archived == events - args.streams as i64, "every event but each stream's newest archived");
        let after = hot_bytes(&store).await?;
        let reclaimed = if store.is_postgres() {
            store.execute("vacuum full events", &[]).await?;
            store.execute("vacuum full snapshots", &[]).await?;
            hot_bytes(&store).await?
        } else {
            after
        };
        store.shutdown().await;

        // First reads from a fresh store: nothing cached.
        let samples = (args.samples as u64).min(args.streams);
        let cold = EventStore::open(&url, options()).await?;
        let mut first_reads = Vec::new();
        for s in 0..samples {
            let started = Instant::now();
            let read = cold.read_stream(&stream(s), 1, 100_000).await?;
            first_reads.push(started.elapsed());
            anyhow::ensure!(read.len() as u64 == args.per_stream);
        }
        let mut loads = Vec::new();
        for s in samples..(2 * samples).min(args.streams) {
            let started = Instant::now();
            let loaded = aggregate::load::<EventRoom>(&cold, &stream(s), "bench-none").await?;
            loads.push(started.elapsed());
            anyhow::ensure!(loaded.version == args.per_stream);
        }
        let report = verify::verify(&cold, Registry::standard(), &Progress::hidden()).await?;
        anyhow::ensure!(report.is_sound(), "the archived log verifies: {:?}", report.problems.first());

        let restore_time = over_streams(args.streams, args.parallel, |s| {
            let store = cold.clone();
            async move {
                store.restore_stream(&s).await?;
                Ok(())
            }
        })
        .await?;
        // The same reads, hot, from a fresh store.
        cold.shutdown().await;
        let hot = EventStore::open(&url, options()).await?;
        let mut hot_reads = Vec::new();
        for s in 0..samples {
            let started = Instant::now();
            let read = hot.read_stream(&stream(s), 1, 100_000).await?;
            hot_reads.push(started.elapsed());
            anyhow::ensure!(read.len() as u64 == args.per_stream);
        }
        hot.shutdown().await;
        first_reads.sort();
        hot_reads.sort();
        loads.sort();
        let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
        println!(
            "| {} | {events} | {:.1} s | {:.0} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.1} ms | {:.0} | {:.1} s | {:.0} |",
            if server.is_some() { "PostgreSQL" } else { "SQLite" },
            archive_time.as_secs_f64(),
            archived as f64 / archive_time.as_secs_f64(),
            mib(before),
            mib(after),
            mib(reclaimed),
            percentile(&first_reads, 0.5),
            percentile(&first_reads, 0.99),
            percentile(&hot_reads, 0.5),
            percentile(&hot_reads, 0.99),
            percentile(&loads, 0.5),
            report.events_per_second(),
            restore_time.as_secs_f64(),
            archived as f64 / restore_time.as_secs_f64(),
        );
        if let Some(server) = server {
            super::drop_postgres(&server, &url).await;
        }
    }
    Ok(())
}
