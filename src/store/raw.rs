//! The log's rows exactly as stored, read in global order in batches.
//!
//! Audits need the stored bytes, not the store's friendly decoding: the hash
//! covers the metadata *text* (which [`crate::store::RecordedEvent`] parses
//! and forgets) and a malformed stream id must be reported, not refused.
//! [`Batches`] reads the next batch while the caller works on the current
//! one, so reading and checking overlap; batches are [`RawBatch`]es, one
//! buffer per batch rather than six allocations per event.

pub mod scan;

use sqlx::AssertSqlSafe;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::store::archive::merge::{ArchivedCursor, merge_batches};
use crate::store::{Backend, EventStore, StoreError};
pub use scan::Order;

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

/// Events of one read, stored back to back: every text field in one
/// `String`, every hash in one `Vec<u8>`, and a fixed-size row of numbers
/// and offsets per event. A whole-log scan fills one per batch, where a
/// `Vec<RawEvent>` costs six allocations per event (most of a scan's CPU
/// after SQLite's own).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawBatch {
    text: String,
    bytes: Vec<u8>,
    rows: Vec<Row>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Row {
    global_position: i64,
    stream_version: i64,
    recorded_at: i64,
    event_id: Uuid,
    /// `text[start..ends[0]]` is the stream id, then event type, event
    /// version, payload and metadata, each ending where the next begins.
    start: usize,
    ends: [usize; 5],
    /// The stored hash is `bytes[hash.0..hash.1]`.
    hash: (usize, usize),
}

/// One event of a [`RawBatch`], borrowed: the fields of [`RawEvent`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RawRef<'a> {
    pub global_position: i64,
    pub stream_id: &'a str,
    pub stream_version: i64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a str,
    pub metadata: &'a str,
    pub recorded_at: i64,
    pub hash: &'a [u8],
}

impl<'a> RawRef<'a> {
    /// The text before the stream id's first `-`.
    pub fn category(&self) -> &'a str {
        self.stream_id.split_once('-').map_or(self.stream_id, |(c, _)| c)
    }

    pub fn to_owned(&self) -> RawEvent {
        RawEvent {
            global_position: self.global_position,
            stream_id: self.stream_id.to_owned(),
            stream_version: self.stream_version,
            event_id: self.event_id,
            event_type: self.event_type.to_owned(),
            event_version: self.event_version.to_owned(),
            payload: self.payload.to_owned(),
            metadata: self.metadata.to_owned(),
            recorded_at: self.recorded_at,
            hash: self.hash.to_vec(),
        }
    }
}

impl RawEvent {
    pub fn as_ref(&self) -> RawRef<'_> {
        RawRef {
            global_position: self.global_position,
            stream_id: &self.stream_id,
            stream_version: self.stream_version,
            event_id: self.event_id,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
            recorded_at: self.recorded_at,
            hash: &self.hash,
        }
    }
}

impl RawBatch {
    /// Room for `events` events of about `text_bytes` bytes of text each.
    pub fn with_capacity(events: usize, text_bytes: usize) -> Self {
        Self {
            text: String::with_capacity(events * text_bytes),
            bytes: Vec::with_capacity(events * 32),
            rows: Vec::with_capacity(events),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Bytes of text held, to size the next batch like this one.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    pub fn push(&mut self, event: RawRef<'_>) {
        let start = self.text.len();
        let mut ends = [0; 5];
        for (end, field) in
            ends.iter_mut().zip([event.stream_id, event.event_type, event.event_version, event.payload, event.metadata])
        {
            self.text.push_str(field);
            *end = self.text.len();
        }
        let hash_start = self.bytes.len();
        self.bytes.extend_from_slice(event.hash);
        self.rows.push(Row {
            global_position: event.global_position,
            stream_version: event.stream_version,
            recorded_at: event.recorded_at,
            event_id: event.event_id,
            start,
            ends,
            hash: (hash_start, self.bytes.len()),
        });
    }

    fn view(&self, row: &Row) -> RawRef<'_> {
        let [stream_id, event_type, event_version, payload, metadata] = row.ends;
        RawRef {
            global_position: row.global_position,
            stream_id: &self.text[row.start..stream_id],
            stream_version: row.stream_version,
            event_id: row.event_id,
            event_type: &self.text[stream_id..event_type],
            event_version: &self.text[event_type..event_version],
            payload: &self.text[event_version..payload],
            metadata: &self.text[payload..metadata],
            recorded_at: row.recorded_at,
            hash: &self.bytes[row.hash.0..row.hash.1],
        }
    }

    /// The `index`th event, if there is one.
    pub fn get(&self, index: usize) -> Option<RawRef<'_>> {
        self.rows.get(index).map(|row| self.view(row))
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = RawRef<'_>> + '_ {
        self.rows.iter().map(|row| self.view(row))
    }

    pub fn last_position(&self) -> Option<i64> {
        self.rows.last().map(|row| row.global_position)
    }

    pub fn to_events(&self) -> Vec<RawEvent> {
        self.iter().map(|event| event.to_owned()).collect()
    }
}

impl From<&[RawEvent]> for RawBatch {
    fn from(events: &[RawEvent]) -> Self {
        let text = events.iter().map(|e| e.stream_id.len() + e.payload.len() + e.metadata.len() + 32).sum::<usize>();
        let mut batch = RawBatch::with_capacity(events.len(), 0);
        batch.text.reserve(text);
        for event in events {
            batch.push(event.as_ref());
        }
        batch
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

/// The [`RawEvent`] columns in this backend's dialect (SQLite has no `::`
/// casts; its columns are text already).
pub(crate) fn columns(backend: &Backend) -> String {
    match backend {
        Backend::Sqlite(_) => COLUMNS.replace("::text", ""),
        Backend::Postgres(_) => COLUMNS.to_owned(),
    }
}

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
    let columns = columns(store.backend());
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
    receiver: mpsc::Receiver<Result<RawBatch, StoreError>>,
}

impl Batches {
    /// Starts reading events matching `filter` after `after` up to `until`.
    pub fn start(store: &EventStore, filter: Filter, after: i64, until: i64, batch: usize) -> Self {
        Self::start_scan(store, filter, after, until, batch, Order::Log)
    }

    /// [`Batches::start`] of the whole log, read in storage order where that
    /// is cheaper: ends with [`StoreError::ScanOutOfOrder`] if the storage
    /// order is not the log order, and the caller must start over with
    /// [`Batches::start`].
    pub fn start_in_storage_order(store: &EventStore, after: i64, until: i64, batch: usize) -> Self {
        Self::start_scan(store, Filter::All, after, until, batch, Order::Storage)
    }

    fn start_scan(store: &EventStore, filter: Filter, after: i64, until: i64, batch: usize, order: Order) -> Self {
        let (sender, receiver) = mpsc::channel(PARALLEL_READS);
        let store = store.clone();
        tokio::spawn(async move {
            // Another process (`eventuall archive`) may have archived since
            // this store opened; a scan is rare and long, so it asks.
            if let Err(error) = store.refresh_archive().await {
                let _ = sender.send(Err(error)).await;
                return;
            }
            if after >= store.archive().max_position() {
                Self::spawn_hot_scan(&store, filter, after, until, batch, order, sender);
                return;
            }
            // Archived events in range: the hot scan feeds a merge with the
            // segments (`archive::merge`), which feeds the caller.
            let (hot_sender, hot) = mpsc::channel(PARALLEL_READS);
            Self::spawn_hot_scan(&store, filter.clone(), after, until, batch, order, hot_sender);
            match ArchivedCursor::open(&store, &filter, after, until).await {
                Ok(cursor) => merge_batches(hot, cursor, until, batch, sender).await,
                Err(error) => {
                    let _ = sender.send(Err(error)).await;
                }
            }
        });
        Self { receiver }
    }

    fn spawn_hot_scan(
        store: &EventStore,
        filter: Filter,
        after: i64,
        until: i64,
        batch: usize,
        order: Order,
        sender: Sender,
    ) {
        let store = store.clone();
        if filter == Filter::All {
            if !scan::start(&store, after, until, batch, order, sender.clone()) {
                tokio::spawn(read_ranges(store, after, until, batch, sender));
            }
        } else {
            tokio::spawn(read_pages(store, filter, after, until, batch, sender));
        }
    }

    /// The next non-empty batch, or `None` at the end.
    pub async fn next(&mut self) -> Option<Result<RawBatch, StoreError>> {
        loop {
            match self.receiver.recv().await? {
                Ok(events) if events.is_empty() => continue,
                other => return Some(other),
            }
        }
    }

    /// [`Batches::next`] for a blocking thread (never on the runtime).
    pub fn blocking_next(&mut self) -> Option<Result<RawBatch, StoreError>> {
        loop {
            match self.receiver.blocking_recv()? {
                Ok(events) if events.is_empty() => continue,
                other => return Some(other),
            }
        }
    }
}

type Sender = mpsc::Sender<Result<RawBatch, StoreError>>;

/// The whole log as position ranges of `batch`, several read at once.
async fn read_ranges(store: EventStore, after: i64, until: i64, batch: usize, sender: Sender) {
    use futures::StreamExt;
    let mut next = after;
    let mut in_flight = futures::stream::FuturesOrdered::new();
    loop {
        while in_flight.len() < PARALLEL_READS && next < until {
            let end = next.saturating_add(batch as i64).min(until);
            let store = store.clone();
            in_flight.push_back(async move {
                read_batch(&store, &Filter::All, next, end, usize::MAX >> 1).await.map(|e| RawBatch::from(&e[..]))
            });
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
        let result = read_batch(&store, &filter, position, until, batch).await.map(|e| RawBatch::from(&e[..]));
        let done = match &result {
            Ok(events) => {
                position = events.last_position().unwrap_or(position);
                events.len() < batch
            }
            Err(_) => true,
        };
        if sender.send(result).await.is_err() || done {
            return;
        }
    }
}
