//! The log's rows exactly as stored, read in global order in batches.
//!
//! Audits need the stored bytes, not the store's friendly decoding: the hash
//! covers the metadata *text* (which [`crate::store::RecordedEvent`] parses
//! and forgets) and a malformed stream id must be reported, not refused.
//! [`Batches`] reads the next batch while the caller works on the current
//! one, so reading and checking overlap.

use sqlx::AssertSqlSafe;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::store::{Backend, EventStore, StoreError};

/// Events per read: large enough to amortise the query, small enough to
/// keep memory flat.
pub const BATCH: usize = 10_000;

/// One row of `events`, field for field.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct RawEvent {
    pub global_position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: String,
    pub recorded_at: i64,
    pub hash: Vec<u8>,
}

impl RawEvent {
    /// The text before the stream id's first `-`.
    pub fn category(&self) -> &str {
        self.stream_id.split_once('-').map_or(&self.stream_id, |(c, _)| c)
    }
}

/// Which events to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    All,
    Stream(String),
    Category(String),
}

/// PostgreSQL stores payload and metadata as `json` (byte for byte): read
/// them as text.
const COLUMNS: &str = "global_position, stream_id, stream_version, event_id, event_type, event_version, \
     payload::text as payload, metadata::text as metadata, recorded_at, hash";

/// Up to `limit` events after position `after` and at most `until`.
pub async fn read_batch(
    store: &EventStore,
    filter: &Filter,
    after: i64,
    until: i64,
    limit: usize,
) -> Result<Vec<RawEvent>, StoreError> {
    let (condition, value) = match filter {
        Filter::All => ("", None),
        Filter::Stream(stream) => (" and stream_id = $4", Some(stream.clone())),
        // `-` is followed by `.` in ASCII: a range scan of one category.
        Filter::Category(category) => (" and stream_id >= $4 and stream_id < $5", Some(category.clone())),
    };
    // SQLite has no `::` casts; its columns are text already.
    let columns = match store.backend() {
        Backend::Sqlite(_) => COLUMNS.replace("::text", ""),
        Backend::Postgres(_) => COLUMNS.to_owned(),
    };
    let sql = format!(
        "select {columns} from events where global_position > $1 and global_position <= $2{condition} \
         order by global_position limit $3"
    );
    macro_rules! run {
        ($pool:expr) => {{
            let mut query =
                sqlx::query_as::<_, RawEvent>(AssertSqlSafe(sql)).bind(after).bind(until).bind(limit as i64);
            match (filter, value) {
                (Filter::Category(_), Some(c)) => query = query.bind(format!("{c}-")).bind(format!("{c}.")),
                (_, Some(v)) => query = query.bind(v),
                _ => {}
            }
            query.fetch_all($pool).await?
        }};
    }
    Ok(match store.backend() {
        Backend::Sqlite(b) => run!(b.pool()),
        Backend::Postgres(b) => run!(b.pool()),
    })
}

/// Range reads of the whole log in flight at once, when no fast scan
/// ([`super::scan`]) applies (SQLite in memory). sqlx reads each SQLite row
/// through a channel from a worker thread, so one reader leaves the CPU idle
/// half the time; a few ranges read in parallel keep it busy.
const PARALLEL_READS: usize = 3;

/// Batches of events in global order up to a fixed head, read ahead on a
/// separate task (the whole log: [`super::scan`]'s fast scans).
pub struct Batches {
    receiver: mpsc::Receiver<Result<Vec<RawEvent>, StoreError>>,
}

impl Batches {
    /// Starts reading events matching `filter` after `after` up to `until`.
    pub fn start(store: &EventStore, filter: Filter, after: i64, until: i64, batch: usize) -> Self {
        let (sender, receiver) = mpsc::channel(PARALLEL_READS);
        let store = store.clone();
        if filter == Filter::All {
            if !super::scan::start(&store, after, until, batch, sender.clone()) {
                tokio::spawn(read_ranges(store, after, until, batch, sender));
            }
        } else {
            tokio::spawn(read_pages(store, filter, after, until, batch, sender));
        }
        Self { receiver }
    }

    /// The next non-empty batch, or `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Vec<RawEvent>, StoreError>> {
        loop {
            match self.receiver.recv().await? {
                Ok(events) if events.is_empty() => continue,
                other => return Some(other),
            }
        }
    }
}

type Sender = mpsc::Sender<Result<Vec<RawEvent>, StoreError>>;

/// The whole log as position ranges of `batch`, several read at once.
async fn read_ranges(store: EventStore, after: i64, until: i64, batch: usize, sender: Sender) {
    use futures::StreamExt;
    let mut next = after;
    let mut in_flight = futures::stream::FuturesOrdered::new();
    loop {
        while in_flight.len() < PARALLEL_READS && next < until {
            let end = next.saturating_add(batch as i64).min(until);
            let store = store.clone();
            in_flight.push_back(async move { read_batch(&store, &Filter::All, next, end, usize::MAX >> 1).await });
            next = end;
        }
        let Some(result) = in_flight.next().await else { return };
        let failed = result.is_err();
        if sender.send(result).await.is_err() || failed {
            return;
        }
    }
}

/// Pages of one stream or category (sparse in the log: read by limit).
async fn read_pages(store: EventStore, filter: Filter, after: i64, until: i64, batch: usize, sender: Sender) {
    let mut position = after;
    loop {
        let result = read_batch(&store, &filter, position, until, batch).await;
        let done = match &result {
            Ok(events) => {
                position = events.last().map_or(position, |e| e.global_position);
                events.len() < batch
            }
            Err(_) => true,
        };
        if sender.send(result).await.is_err() || done {
            return;
        }
    }
}
