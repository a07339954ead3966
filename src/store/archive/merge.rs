//! Whole-log reads across the archive: segments and hot rows merged by
//! global position.
//!
//! A stream's segment holds its own events only, so segments of streams
//! that were live at the same time overlap in position. [`ArchivedCursor`]
//! walks the segments matching a filter in the order of their first
//! position, loads one only when the merge reaches it, and drops it when
//! spent: memory is bounded by the segments that overlap at one position,
//! not by the archive. [`merge_batches`] interleaves that with the hot
//! scan's batches for the raw readers of replay.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::SegmentRow;
use super::segment::Segment;
use crate::store::raw::{Filter, RawBatch, RawEvent};
use crate::store::{EventStore, StoreError};

/// Archived events matching a filter, in position order, after `after` and
/// at most `until`.
pub struct ArchivedCursor {
    store: EventStore,
    /// Segments not loaded yet, by first position.
    pending: VecDeque<SegmentRow>,
    /// Loaded segments and the index of their next event.
    open: Vec<Option<(Arc<Segment>, usize)>>,
    /// (next position, slot in `open`), smallest first.
    heads: BinaryHeap<Reverse<(i64, usize)>>,
    after: i64,
    until: i64,
}

impl ArchivedCursor {
    pub async fn open(store: &EventStore, filter: &Filter, after: i64, until: i64) -> Result<Self, StoreError> {
        let (condition, args) = match filter {
            Filter::All => (String::new(), vec![after.into(), until.into()]),
            Filter::Stream(stream) => {
                (" and stream_id = $3".to_owned(), vec![after.into(), until.into(), stream.as_str().into()])
            }
            Filter::Category(category) => (
                " and stream_id >= $3 and stream_id < $4".to_owned(),
                vec![after.into(), until.into(), format!("{category}-").into(), format!("{category}.").into()],
            ),
        };
        let sql = format!(
            "select {} from archive_segments where last_position > $1 and first_position <= $2{condition} \
             order by first_position",
            super::SEGMENT_COLUMNS
        );
        let mut pending: Vec<SegmentRow> = store.query_as(&sql, &args).await?;
        pending.retain(|row| !store.archive().is_quarantined(&row.location));
        Ok(Self {
            store: store.clone(),
            pending: pending.into(),
            open: Vec::new(),
            heads: BinaryHeap::new(),
            after,
            until,
        })
    }

    /// True when no archived event is left.
    pub fn is_done(&self) -> bool {
        self.pending.is_empty() && self.heads.is_empty()
    }

    /// The next archived events with position ≤ `bound`, at most `max`.
    pub async fn next_upto(&mut self, bound: i64, max: usize) -> Result<Vec<RawEvent>, StoreError> {
        let bound = bound.min(self.until);
        let mut out = Vec::new();
        while out.len() < max {
            // Open every segment that could hold the next event.
            let frontier = self.heads.peek().map_or(bound, |Reverse((p, _))| (*p).min(bound));
            while self.pending.front().is_some_and(|s| s.first_position <= frontier) {
                let row = self.pending.pop_front().expect("peeked");
                self.load(&row).await?;
            }
            let Some(Reverse((position, slot))) = self.heads.pop() else { break };
            if position > bound {
                self.heads.push(Reverse((position, slot)));
                break;
            }
            let (segment, index) = self.open[slot].as_mut().expect("a head's segment is open");
            out.push(segment.events[*index].clone());
            *index += 1;
            match segment.events.get(*index) {
                Some(next) if next.global_position <= self.until => {
                    self.heads.push(Reverse((next.global_position, slot)))
                }
                _ => self.open[slot] = None,
            }
        }
        Ok(out)
    }

    async fn load(&mut self, row: &SegmentRow) -> Result<(), StoreError> {
        let segment = self.store.load_segment(row).await?;
        let start = segment.events.partition_point(|e| e.global_position <= self.after);
        if let Some(first) = segment.events.get(start).filter(|e| e.global_position <= self.until) {
            let slot = self.open.iter().position(Option::is_none).unwrap_or_else(|| {
                self.open.push(None);
                self.open.len() - 1
            });
            self.heads.push(Reverse((first.global_position, slot)));
            self.open[slot] = Some((segment, start));
        }
        Ok(())
    }
}

type Sender = mpsc::Sender<Result<RawBatch, StoreError>>;

/// Forwards the hot scan's batches (`hot`, in position order) to `sender`
/// with the archived events of `cursor` merged in, in batches of at most
/// `batch`.
pub async fn merge_batches(
    mut hot: mpsc::Receiver<Result<RawBatch, StoreError>>,
    mut cursor: ArchivedCursor,
    until: i64,
    batch: usize,
    sender: Sender,
) {
    let batch = batch.max(1);
    loop {
        let (hot_events, hot_done) = match hot.recv().await {
            Some(Ok(events)) => (events.to_events(), false),
            Some(Err(error)) => {
                let _ = sender.send(Err(error)).await;
                return;
            }
            None => (Vec::new(), true),
        };
        // Every archived event before this hot batch's end goes first.
        let bound = if hot_done { until } else { hot_events.last().map_or(i64::MIN, |e| e.global_position) };
        let mut hot_events = hot_events.into_iter().peekable();
        loop {
            let archived = match cursor.next_upto(bound, batch).await {
                Ok(archived) => archived,
                Err(error) => {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            };
            let Some(last_archived) = archived.last().map(|e| e.global_position) else { break };
            let mut merged = Vec::with_capacity(archived.len() * 2);
            let mut archived = archived.into_iter().peekable();
            while let Some(a) = archived.peek() {
                match hot_events.peek() {
                    Some(h) if h.global_position < a.global_position => merged.extend(hot_events.next()),
                    _ => merged.extend(archived.next()),
                }
            }
            // Hot events before the last archived one were taken above;
            // those after wait for the next archived chunk or the end.
            debug_assert!(hot_events.peek().is_none_or(|h| h.global_position > last_archived));
            if sender.send(Ok(RawBatch::from(&merged[..]))).await.is_err() {
                return;
            }
        }
        let rest: Vec<RawEvent> = hot_events.collect();
        if !rest.is_empty() && sender.send(Ok(RawBatch::from(&rest[..]))).await.is_err() {
            return;
        }
        if hot_done {
            return;
        }
    }
}
