//! Whole-log scans for `verify` and `rebuild`: every event up to a head, in
//! global order, as fast as each database can hand them over.
//!
//! The generic path ([`super::raw::read_batch`]) goes through sqlx, which on
//! SQLite copies every column value and hops a channel per row between its
//! worker thread and the runtime: most of a verify's CPU went there. A full
//! scan does not need a pool's fairness, so it takes the shortest road:
//! - SQLite: a read-only `rusqlite` connection of its own on the same file,
//!   stepped on a blocking thread that hands over whole batches (WAL lets it
//!   read while the service writes; each range is one read snapshot, and
//!   positions at or below the head never change once committed).
//! - PostgreSQL: `copy (select …) to stdout (format binary)`, one stream for
//!   the whole scan, parsed here ([`CopyParser`]); no per-row protocol
//!   messages, no text conversions. In [`Order::Storage`] (for `verify`) the
//!   query has no `order by`: a sequential scan costs the server about half
//!   of the primary-key index scan, and an append-only heap is in log order.
//!   It is not always (a rolled-back batch's space reused after a vacuum, an
//!   updated row), so the scan checks every position and fails with
//!   [`StoreError::ScanOutOfOrder`] at the first that is not past the one
//!   before; the caller then scans again in log order.
//!
//! Both fill [`RawBatch`]es (no allocation per event) with the same events
//! as the generic path; the replay tests run on both databases against it.

use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{RawBatch, RawRef};
use crate::store::{Backend, EventStore, StoreError};

/// Sends batches of the scan, in order; an error ends it.
pub type Sender = mpsc::Sender<Result<RawBatch, StoreError>>;

/// Bytes of text per event to reserve in a scan's first batch (later
/// batches are sized like the one before): a room event's stream id,
/// type, version, payload and metadata.
const TEXT_PER_EVENT: usize = 192;

/// A batch sized like `full`, which held `events` events.
fn next_batch(full: &RawBatch, events: usize) -> RawBatch {
    RawBatch::with_capacity(events, full.text_len() / events.max(1) + 16)
}

/// Positions per SQLite statement: each statement is its own read snapshot,
/// so a long scan does not pin one WAL snapshot (and stop checkpoints) for
/// its whole duration.
const SQLITE_RANGE: i64 = 200_000;

/// The order a scan reads rows in; batches always come out in log order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// By global position, whatever that costs.
    Log,
    /// As stored, where that is cheaper (PostgreSQL's heap), failing with
    /// [`StoreError::ScanOutOfOrder`] at the first row out of log order.
    Storage,
}

/// Starts a fast scan of positions `(after, until]` if this store has one;
/// `false` when the caller must use the generic path (SQLite in memory).
/// SQLite's table is stored in log order, so `order` matters on PostgreSQL
/// only.
pub fn start(store: &EventStore, after: i64, until: i64, batch: usize, order: Order, sender: Sender) -> bool {
    match store.backend() {
        Backend::Sqlite(b) => {
            let Some(path) = sqlite_file(b.pool()) else { return false };
            tokio::task::spawn_blocking(move || {
                if let Err(error) = scan_sqlite(&path, after, until, batch, &sender) {
                    let _ = sender.blocking_send(Err(error));
                }
            });
            true
        }
        Backend::Postgres(b) => {
            let pool = b.pool().clone();
            tokio::spawn(async move {
                if let Err(error) = scan_postgres(&pool, after, until, batch, order, &sender).await {
                    let _ = sender.send(Err(error)).await;
                }
            });
            true
        }
    }
}

/// The database file behind a SQLite pool, if it is a file.
fn sqlite_file(pool: &sqlx::SqlitePool) -> Option<PathBuf> {
    let options = pool.connect_options();
    let path: &Path = options.get_filename();
    path.is_file().then(|| path.to_owned())
}

/// A text column's bytes (SQLite may hand text back as a blob) as UTF-8.
fn sqlite_text(value: rusqlite::types::ValueRef<'_>) -> Result<&str, StoreError> {
    let bytes = value.as_bytes().map_err(rusqlite::Error::from)?;
    std::str::from_utf8(bytes).map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))
}

fn scan_sqlite(path: &Path, after: i64, until: i64, batch: usize, sender: &Sender) -> Result<(), StoreError> {
    use rusqlite::OpenFlags;

    let connection = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    let mut statement = connection.prepare(
        "select global_position, stream_id, stream_version, event_id, event_type, event_version, payload, \
         metadata, recorded_at, hash from events where global_position > ?1 and global_position <= ?2 \
         order by global_position",
    )?;
    let mut out = RawBatch::with_capacity(batch, TEXT_PER_EVENT);
    let mut from = after;
    while from < until {
        let to = from.saturating_add(SQLITE_RANGE).min(until);
        let mut rows = statement.query([from, to])?;
        while let Some(row) = rows.next()? {
            let event_id = row.get_ref(3)?.as_blob().map_err(rusqlite::Error::from)?;
            out.push(RawRef {
                global_position: row.get(0)?,
                stream_id: sqlite_text(row.get_ref(1)?)?,
                stream_version: row.get(2)?,
                event_id: Uuid::from_slice(event_id)
                    .map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))?,
                event_type: sqlite_text(row.get_ref(4)?)?,
                event_version: sqlite_text(row.get_ref(5)?)?,
                payload: sqlite_text(row.get_ref(6)?)?,
                metadata: sqlite_text(row.get_ref(7)?)?,
                recorded_at: row.get(8)?,
                hash: row.get_ref(9)?.as_blob().map_err(rusqlite::Error::from)?,
            });
            if out.len() == batch {
                let next = next_batch(&out, batch);
                let full = std::mem::replace(&mut out, next);
                if sender.blocking_send(Ok(full)).is_err() {
                    return Ok(());
                }
            }
        }
        from = to;
    }
    if !out.is_empty() {
        let _ = sender.blocking_send(Ok(out));
    }
    Ok(())
}

async fn scan_postgres(
    pool: &sqlx::PgPool,
    after: i64,
    until: i64,
    batch: usize,
    order: Order,
    sender: &Sender,
) -> Result<(), StoreError> {
    let mut connection = pool.acquire().await?;
    let order_by = match order {
        Order::Log => "order by global_position",
        Order::Storage => {
            // Else a scan may join another one in mid-table and wrap around.
            // The connection is closed afterwards rather than handed back
            // with the setting changed.
            sqlx::query("set synchronize_seqscans = off").execute(&mut *connection).await?;
            connection.close_on_drop();
            ""
        }
    };
    // Positions are integers formatted here: `copy` takes no parameters.
    let sql = format!(
        "copy (select global_position, stream_id, stream_version, event_id, event_type, event_version, \
         payload, metadata, recorded_at, hash from events where global_position > {after} \
         and global_position <= {until} {order_by}) to stdout (format binary)"
    );
    let mut stream = connection.copy_out_raw(&sql).await?;
    let mut parser = CopyParser::default();
    let mut out = RawBatch::with_capacity(batch, TEXT_PER_EVENT);
    let mut last = after;
    while let Some(chunk) = stream.next().await {
        parser.push(chunk?);
        while parser.next_event(&mut out)? {
            let position = out.last_position().expect("an event was just added");
            if position <= last {
                return Err(StoreError::ScanOutOfOrder(position));
            }
            last = position;
            if out.len() == batch {
                let next = next_batch(&out, batch);
                let full = std::mem::replace(&mut out, next);
                if sender.send(Ok(full)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    parser.finish()?;
    if !out.is_empty() {
        let _ = sender.send(Ok(out)).await;
    }
    Ok(())
}

/// The binary `copy` format of PostgreSQL: a signature, flags and header
/// extension, then per tuple a 16-bit field count and per field a 32-bit
/// length (-1: null) and the value in its binary send format; a field count
/// of -1 ends the data.
#[derive(Default)]
pub struct CopyParser {
    buffer: BytesMut,
    header_read: bool,
    ended: bool,
}

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Columns of the scan's `select`.
const FIELDS: i16 = 10;

fn malformed(why: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(format!("copy data: {why}")))
}

impl CopyParser {
    pub fn push(&mut self, chunk: Bytes) {
        self.buffer.extend_from_slice(&chunk);
    }

    /// Moves the next complete event in the buffer into `out`; `false` if
    /// there is none yet (or the data ended).
    pub fn next_event(&mut self, out: &mut RawBatch) -> Result<bool, StoreError> {
        if !self.header_read {
            if self.buffer.len() < SIGNATURE.len() + 8 {
                return Ok(false);
            }
            if &self.buffer[..SIGNATURE.len()] != SIGNATURE {
                return Err(malformed("bad signature"));
            }
            let extension = u32::from_be_bytes([self.buffer[15], self.buffer[16], self.buffer[17], self.buffer[18]]);
            let header = 19 + extension as usize;
            if self.buffer.len() < header {
                return Ok(false);
            }
            self.buffer.advance(header);
            self.header_read = true;
        }
        if self.ended || self.buffer.len() < 2 {
            return Ok(false);
        }
        let count = i16::from_be_bytes([self.buffer[0], self.buffer[1]]);
        if count == -1 {
            self.ended = true;
            self.buffer.advance(2);
            return Ok(false);
        }
        if count != FIELDS {
            return Err(malformed("unexpected field count"));
        }
        // Is the whole tuple here? Walk the lengths before reading it; each
        // field is then a slice of the buffer, copied once, into `out`.
        let mut fields = [(0usize, 0i32); FIELDS as usize];
        let mut end = 2;
        for field in &mut fields {
            let Some(length) = self.buffer.get(end..end + 4) else { return Ok(false) };
            let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
            *field = (end + 4, length);
            end += 4 + length.max(0) as usize;
        }
        if self.buffer.len() < end {
            return Ok(false);
        }
        let buffer = &self.buffer[..end];
        let field = |i: usize| -> Result<&[u8], StoreError> {
            let (start, length) = fields[i];
            if length < 0 {
                return Err(malformed("null in a not-null column"));
            }
            Ok(&buffer[start..start + length as usize])
        };
        let int8 = |i: usize| -> Result<i64, StoreError> {
            Ok(i64::from_be_bytes(field(i)?.try_into().map_err(|_| malformed("int8 of wrong size"))?))
        };
        let text = |i: usize| -> Result<&str, StoreError> {
            std::str::from_utf8(field(i)?).map_err(|_| malformed("text is not UTF-8"))
        };
        // `json` sends its text as is (unlike `jsonb`, no version byte).
        out.push(RawRef {
            global_position: int8(0)?,
            stream_id: text(1)?,
            stream_version: int8(2)?,
            event_id: Uuid::from_slice(field(3)?).map_err(|_| malformed("uuid of wrong size"))?,
            event_type: text(4)?,
            event_version: text(5)?,
            payload: text(6)?,
            metadata: text(7)?,
            recorded_at: int8(8)?,
            hash: field(9)?,
        });
        self.buffer.advance(end);
        Ok(true)
    }

    /// Fails if the data stopped before its trailer.
    pub fn finish(&self) -> Result<(), StoreError> {
        if self.ended { Ok(()) } else { Err(malformed("ended without a trailer")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::raw::RawEvent;

    fn field(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        out.extend_from_slice(bytes);
    }

    /// A `copy … (format binary)` stream of `events`, as PostgreSQL sends it.
    fn encode(events: &[RawEvent]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&4u32.to_be_bytes());
        out.extend_from_slice(b"ext!");
        for e in events {
            out.extend_from_slice(&FIELDS.to_be_bytes());
            field(&mut out, &e.global_position.to_be_bytes());
            field(&mut out, e.stream_id.as_bytes());
            field(&mut out, &e.stream_version.to_be_bytes());
            field(&mut out, e.event_id.as_bytes());
            field(&mut out, e.event_type.as_bytes());
            field(&mut out, e.event_version.as_bytes());
            field(&mut out, e.payload.as_bytes());
            field(&mut out, e.metadata.as_bytes());
            field(&mut out, &e.recorded_at.to_be_bytes());
            field(&mut out, &e.hash);
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn event(n: i64) -> RawEvent {
        RawEvent {
            global_position: n,
            stream_id: format!("room-{n}"),
            stream_version: n + 1,
            event_id: Uuid::from_u128(n as u128 + 7),
            event_type: "HeartbeatReceived".into(),
            event_version: "1".into(),
            payload: format!("{{\"n\":{n}}}"),
            metadata: "{}".into(),
            recorded_at: -n,
            hash: vec![n as u8; 32],
        }
    }

    #[test]
    fn events_split_across_chunks_at_every_byte_parse_whole() {
        let events: Vec<RawEvent> = (1..=3).map(event).collect();
        let bytes = encode(&events);
        for chunk in 1..bytes.len() {
            let mut parser = CopyParser::default();
            let mut parsed = RawBatch::default();
            for piece in bytes.chunks(chunk) {
                parser.push(Bytes::copy_from_slice(piece));
                while parser.next_event(&mut parsed).unwrap() {}
            }
            parser.finish().unwrap();
            assert_eq!(parsed.to_events(), events, "chunks of {chunk} bytes");
        }
    }

    #[test]
    fn a_stream_without_its_trailer_is_an_error() {
        let bytes = encode(&[event(1)]);
        let mut parser = CopyParser::default();
        let mut parsed = RawBatch::default();
        parser.push(Bytes::copy_from_slice(&bytes[..bytes.len() - 2]));
        assert!(parser.next_event(&mut parsed).unwrap());
        assert!(!parser.next_event(&mut parsed).unwrap());
        assert!(parser.finish().is_err());
    }
}
