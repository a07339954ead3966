//! The queue's Yjs document: two root `Y.Array`s, `pending` and `live`, whose
//! items are plain objects `{"userId": string, "name": string}` (what
//! y-websocket clients write with `yarray.insert(i, [{userId, name}])`).
//!
//! [`QueueDoc`] owns the `yrs::Doc` and is the only code that touches yrs
//! types: it integrates client updates, makes the server's own edits (each
//! one transaction whose v1 update is returned so the caller can persist and
//! broadcast it), and repairs the queue's invariants deterministically.
//!
//! Invariants (public contract), enforced by [`QueueDoc::repair`] and assumed
//! by [`QueueDoc::view`]:
//! 1. every item is an object with a string `userId`;
//! 2. a user is in at most one list, and `live` wins over `pending`;
//! 3. a user appears once per list, and the first (lowest index) entry wins.
//!
//! Concurrent moves break 2 and 3 routinely: a Yjs move is a delete plus an
//! insert, so two moderators moving the same entry delete it once and insert
//! it twice. The rules depend only on document content, which is identical on
//! every replica once they have the same updates, so the repair the server
//! computes is the one any replica would compute, and its update (deletions
//! only) converges everywhere.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Any, Array, ArrayRef, Assoc, Doc, ID, IndexedSequence, Options, Out, ReadTxn, StateVector, Transact,
    TransactionMut, Update,
};

use super::QueueError;
#[cfg(test)]
use yrs::Snapshot;

mod mirror;

pub(crate) use mirror::Touched;
#[cfg(test)]
pub(crate) use mirror::placements;
use mirror::{Mirror, track};

/// The Yjs client id of every server-side edit (repairs and HTTP commands).
///
/// Fixed rather than random because the server's document is rebuilt from the
/// event log after every restart or eviction: a random id per process would
/// add a new entry to the state vector each time (it never shrinks), and
/// replaying the log would not reproduce the ids of the server's own items.
/// With a fixed id the rebuilt document continues the same clock sequence.
///
/// It is 2^32 because Yjs clients draw their ids from the u32 range, so no
/// browser can ever collide with it (ids up to 2^53 are valid on the wire).
///
/// Reusing one id is safe only with a single writer that never reuses a clock:
/// one actor per queue owns the document, and each server update is stored in
/// the log (as an event) before anyone sees it, so a rebuilt document is never
/// behind what clients received from the server.
pub const SERVER_CLIENT_ID: u64 = 1 << 32;

/// The names of the two root arrays (public contract).
const PENDING: &str = "pending";
const LIVE: &str = "live";
const USER_ID_KEY: &str = "userId";
const NAME_KEY: &str = "name";

/// One of the queue's two lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueList {
    /// Waiting to go live.
    Pending,
    /// On stage now.
    Live,
}

impl QueueList {
    /// The name of the list's root `Y.Array`.
    pub fn array_name(self) -> &'static str {
        match self {
            QueueList::Pending => PENDING,
            QueueList::Live => LIVE,
        }
    }
}

/// A participant in the queue as clients and the HTTP API see it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub user_id: String,
    pub name: String,
}

impl Entry {
    pub fn new(user_id: impl Into<String>, name: impl Into<String>) -> Self {
        Entry { user_id: user_id.into(), name: name.into() }
    }
}

/// The queue as the invariants define it: the body of `GET /event/{id}/queue`,
/// `{"pending":[{"userId","name"}…],"live":[…]}`.
///
/// It reads the document through the repair rules (items without a string
/// `userId` and losing duplicates are skipped), so it is the same before and
/// after [`QueueDoc::repair`] and never shows a user twice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueView {
    pub pending: Vec<Entry>,
    pub live: Vec<Entry>,
}

impl QueueView {
    pub fn list(&self, list: QueueList) -> &[Entry] {
        match list {
            QueueList::Pending => &self.pending,
            QueueList::Live => &self.live,
        }
    }

    /// Where `user_id` is: its list and index.
    pub fn position(&self, user_id: &str) -> Option<(QueueList, usize)> {
        [QueueList::Live, QueueList::Pending]
            .into_iter()
            .find_map(|list| self.list(list).iter().position(|e| e.user_id == user_id).map(|index| (list, index)))
    }
}

/// Why the repair removed an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    /// Not an object, or no string `userId`.
    MissingUserId,
    /// A pending entry of a user who is also live.
    AlreadyLive,
    /// A later entry of a user already earlier in the same list.
    Duplicate,
}

/// One item removed by a repair, located as it was before the repair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedEntry {
    pub list: QueueList,
    /// Index in the raw array (counting invalid items) before the repair.
    pub index: usize,
    /// `None` when the item had no string `userId`.
    pub user_id: Option<String>,
    pub reason: RemovalReason,
}

/// What a repair did: its Yjs update (deletions only) and what it removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repair {
    pub update: Vec<u8>,
    pub removed: Vec<RemovedEntry>,
}

/// An entry of the view together with the Yjs id of the item behind it.
/// Yjs cannot move an item: a move deletes it and inserts a new one, so an
/// unchanged id means "not moved" and a changed one means "re-inserted".
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TrackedEntry {
    pub list: QueueList,
    pub index: usize,
    pub entry: Entry,
    pub item: Option<ID>,
}

/// Whether anything in the document changed: the state vector, the deletions,
/// and whether updates wait for missing predecessors. O(document), so only
/// tests use it; the live path asks the transaction what it changed.
#[cfg(test)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    snapshot: Snapshot,
    has_pending: bool,
}

/// The queue's Yjs document. See the module docs for its invariants.
pub struct QueueDoc {
    doc: Doc,
    pending: ArrayRef,
    live: ArrayRef,
    /// The raw arrays as plain Rust values, kept in step with every
    /// transaction once built, so that a change is judged by what it touched
    /// instead of by re-reading the whole document (see [`mirror`]). `None`
    /// until first needed, and again after an inconsistency.
    mirror: Option<Mirror>,
    /// What the last server edit touched, for [`QueueDoc::take_touched`].
    last_touched: Touched,
}

/// What integrating one update did to the live document.
#[derive(Debug)]
pub(crate) struct Integrated {
    /// Content or deletions were integrated.
    pub changed: bool,
    /// Something now waits for missing predecessors that did not before.
    pub parked: bool,
    /// yrs refused the update and nothing of it integrated.
    pub error: bool,
    /// Set when yrs refused the update halfway: the part that did integrate.
    pub update: Option<Vec<u8>>,
    pub touched: Touched,
}

/// The consequences of one change, judged by the elements it touched: the
/// repair it needed, and the entries of the users it touched, before and
/// after (every other entry stayed put).
#[derive(Debug)]
pub(crate) struct Settled {
    pub repair: Option<Repair>,
    pub before: Vec<TrackedEntry>,
    pub after: Vec<TrackedEntry>,
}

/// One raw item of an array as the repair rules classify it.
struct Slot {
    raw_index: u32,
    value: Any,
    user_id: Option<String>,
    name: String,
    verdict: Option<RemovalReason>,
}

/// Both arrays, classified.
struct Scan {
    pending: Vec<Slot>,
    live: Vec<Slot>,
}

impl Scan {
    fn is_clean(&self) -> bool {
        self.pending.iter().chain(&self.live).all(|slot| slot.verdict.is_none())
    }

    fn slots(&self, list: QueueList) -> &[Slot] {
        match list {
            QueueList::Pending => &self.pending,
            QueueList::Live => &self.live,
        }
    }

    fn kept(&self, list: QueueList) -> impl Iterator<Item = &Slot> {
        self.slots(list).iter().filter(|slot| slot.verdict.is_none())
    }

    /// The list and view index of `user_id`'s kept entry.
    fn position(&self, user_id: &str) -> Option<(QueueList, usize, &Slot)> {
        [QueueList::Live, QueueList::Pending].into_iter().find_map(|list| {
            self.kept(list)
                .enumerate()
                .find(|(_, slot)| slot.user_id.as_deref() == Some(user_id))
                .map(|(index, slot)| (list, index, slot))
        })
    }
}

impl Default for QueueDoc {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for QueueDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueDoc").field("view", &self.view()).finish()
    }
}

impl QueueDoc {
    /// An empty queue.
    pub fn new() -> Self {
        let doc = Doc::with_options(Options::with_client_id(yrs::ClientID::new(SERVER_CLIENT_ID)));
        let pending = doc.get_or_insert_array(PENDING);
        let live = doc.get_or_insert_array(LIVE);
        QueueDoc { doc, pending, live, mirror: None, last_touched: Touched::default() }
    }

    /// A queue holding the state encoded by [`QueueDoc::encode_state`] (or any
    /// v1 update).
    pub fn from_state(update_v1: &[u8]) -> Result<Self, QueueError> {
        let mut doc = Self::new();
        doc.apply_update(update_v1)?;
        Ok(doc)
    }

    /// An independent copy with the same content and the same (server) client
    /// id: edits made on it produce exactly the update the original would.
    /// O(document): tests use it to compute what the live path must match.
    #[cfg(test)]
    pub(crate) fn fork(&self) -> Result<Self, QueueError> {
        Self::from_state(&self.encode_state())
    }

    /// The full state as one v1 update, pending (not yet integrable) updates
    /// included: what a snapshot stores.
    pub fn encode_state(&self) -> Vec<u8> {
        self.encode_diff_from(&StateVector::default())
    }

    /// The v1-encoded state vector: what SyncStep1 carries.
    pub fn state_vector(&self) -> Vec<u8> {
        self.doc.transact().state_vector().encode_v1()
    }

    /// What a peer with `remote_state_vector` lacks, as a v1 update: the
    /// SyncStep2 answer to its SyncStep1.
    pub fn encode_diff(&self, remote_state_vector: &[u8]) -> Result<Vec<u8>, QueueError> {
        let sv =
            guarded(|| StateVector::decode_v1(remote_state_vector).ok()).ok_or(QueueError::MalformedStateVector)?;
        Ok(self.encode_diff_from(&sv))
    }

    pub(crate) fn current_state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }

    pub(crate) fn encode_diff_from(&self, state_vector: &StateVector) -> Vec<u8> {
        // `encode_state_as_update` (unlike `encode_diff`) includes pending
        // updates, as y-protocols' `writeSyncStep2` does. yrs merges them in
        // by re-decoding its own encoding of them, and some malformed parked
        // content does not decode back (an `unwrap` inside yrs panics; found
        // by the `sync_frame` fuzz target). Parked content is invisible, so
        // then the integrated content alone is what we send and snapshot:
        // one bad update must not make every later greeting panic.
        let txn = self.doc.transact();
        catch_unwind(AssertUnwindSafe(|| txn.encode_state_as_update_v1(state_vector)))
            .unwrap_or_else(|_| txn.encode_diff_v1(state_vector))
    }

    /// Integrates a v1 update from any peer. Idempotent: known content is
    /// skipped; content whose predecessors are missing waits inside the doc.
    pub fn apply_update(&mut self, update_v1: &[u8]) -> Result<(), QueueError> {
        let update = guarded(|| Update::decode_v1(update_v1).ok()).ok_or(QueueError::MalformedUpdate)?;
        let integrated = self.integrate(update)?;
        if integrated.error { Err(QueueError::MalformedUpdate) } else { Ok(()) }
    }

    /// Integrates a decoded update into the live document and keeps the
    /// mirror in step. yrs may refuse a block halfway (`InvalidParent`) after
    /// integrating earlier ones; what did integrate is then reported as
    /// `update` (the transaction's own encoding), so that recording it keeps
    /// the log equal to the document. A panic inside yrs leaves the document
    /// in an unknown state: [`QueueError::Diverged`], and the owner reloads.
    pub(crate) fn integrate(&mut self, update: Update) -> Result<Integrated, QueueError> {
        let doc = &self.doc;
        let mirror = &mut self.mirror;
        let (pending, live) = (&self.pending, &self.live);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            let parked_before = parked(&txn);
            let error = txn.apply_update(update).is_err();
            txn.commit();
            let changed = txn.has_changes();
            let parked_now = parked(&txn) != parked_before;
            let own_update = changed.then(|| txn.encode_update_v1());
            let touched = match &own_update {
                Some(own) => track(mirror, &txn, own, pending, live),
                None => Touched::default(),
            };
            let update = own_update.filter(|_| error);
            Integrated { changed, parked: parked_now, error: error && !changed, update, touched }
        }));
        outcome.map_err(|_| {
            self.mirror = None;
            QueueError::Diverged
        })
    }

    /// The queue as clients see it (see [`QueueView`]).
    pub fn view(&self) -> QueueView {
        let txn = self.doc.transact();
        let scan = self.scan(&txn);
        let entries = |list| scan.kept(list).map(|slot| slot.entry()).collect();
        QueueView { pending: entries(QueueList::Pending), live: entries(QueueList::Live) }
    }

    /// The view with the Yjs id of each entry's item (for semantic diffs).
    pub(crate) fn tracked(&self) -> Vec<TrackedEntry> {
        let txn = self.doc.transact();
        let scan = self.scan(&txn);
        let mut tracked = Vec::new();
        for list in [QueueList::Pending, QueueList::Live] {
            let array = self.array(list);
            for (index, slot) in scan.kept(list).enumerate() {
                let item = array.sticky_index(&txn, slot.raw_index, Assoc::After).and_then(|s| s.id().copied());
                tracked.push(TrackedEntry { list, index, entry: slot.entry(), item });
            }
        }
        tracked
    }

    /// Both raw arrays as JSON, invalid items included (for convergence tests).
    #[cfg(test)]
    pub(crate) fn raw_json(&self) -> (Any, Any) {
        use yrs::types::ToJson;
        let txn = self.doc.transact();
        (self.pending.to_json(&txn), self.live.to_json(&txn))
    }

    #[cfg(test)]
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        let txn = self.doc.transact();
        Fingerprint { snapshot: txn.snapshot(), has_pending: txn.has_missing_updates() }
    }

    /// Appends `user_id` to `pending` unless they are already queued anywhere.
    /// Returns the update, or `None` when nothing changed.
    pub fn add(&mut self, user_id: &str, name: &str) -> Result<Option<Vec<u8>>, QueueError> {
        if user_id.is_empty() {
            return Err(QueueError::EmptyUserId);
        }
        let (present, end) = {
            let txn = self.doc.transact();
            (self.scan(&txn).position(user_id).is_some(), self.pending.len(&txn))
        };
        if present {
            return Ok(None);
        }
        let item = Any::from(HashMap::from([
            (USER_ID_KEY.to_owned(), Any::from(user_id)),
            (NAME_KEY.to_owned(), Any::from(name)),
        ]));
        Ok(Some(self.edit(|txn, doc| {
            doc.pending.insert(txn, end, item);
        })))
    }

    /// Moves `user_id` to `index` of `list`, where `index` counts the list's
    /// entries without the moved one (`0..=len`). The item keeps every field
    /// clients put in it. Returns `None` when it is already there.
    pub fn move_to(&mut self, user_id: &str, list: QueueList, index: usize) -> Result<Option<Vec<u8>>, QueueError> {
        let (from_list, from_raw, value, target_raw) = {
            let txn = self.doc.transact();
            let scan = self.scan(&txn);
            let (from_list, from_index, slot) =
                scan.position(user_id).ok_or_else(|| QueueError::UnknownParticipant(user_id.to_owned()))?;
            let others: Vec<u32> = scan
                .kept(list)
                .filter(|other| other.user_id.as_deref() != Some(user_id))
                .map(|other| other.raw_index)
                .collect();
            if index > others.len() {
                return Err(QueueError::InvalidIndex { index, len: others.len() });
            }
            if from_list == list && from_index == index {
                return Ok(None);
            }
            // Insert before the entry now at `index`, or at the very end.
            let mut target_raw = others.get(index).copied().unwrap_or_else(|| self.array(list).len(&txn));
            if from_list == list && target_raw > slot.raw_index {
                // The removal below shifts later items one to the left.
                target_raw -= 1;
            }
            (from_list, slot.raw_index, slot.value.clone(), target_raw)
        };
        Ok(Some(self.edit(|txn, doc| {
            doc.array(from_list).remove(txn, from_raw);
            doc.array(list).insert(txn, target_raw, value);
        })))
    }

    /// Moves `user_id` from `pending` to the end of `live`. `None` if already live.
    pub fn promote(&mut self, user_id: &str) -> Result<Option<Vec<u8>>, QueueError> {
        let live_len = {
            let txn = self.doc.transact();
            let scan = self.scan(&txn);
            match scan.position(user_id) {
                None => return Err(QueueError::UnknownParticipant(user_id.to_owned())),
                Some((QueueList::Live, _, _)) => return Ok(None),
                Some((QueueList::Pending, _, _)) => scan.kept(QueueList::Live).count(),
            }
        };
        self.move_to(user_id, QueueList::Live, live_len)
    }

    /// Removes every item of `user_id` from both lists (duplicates included,
    /// so that no hidden duplicate surfaces afterwards).
    pub fn remove(&mut self, user_id: &str) -> Result<Option<Vec<u8>>, QueueError> {
        let doomed = {
            let txn = self.doc.transact();
            let scan = self.scan(&txn);
            if scan.position(user_id).is_none() {
                return Err(QueueError::UnknownParticipant(user_id.to_owned()));
            }
            let raw = |list| -> Vec<u32> {
                scan.slots(list)
                    .iter()
                    .filter(|slot| slot.user_id.as_deref() == Some(user_id))
                    .map(|slot| slot.raw_index)
                    .collect()
            };
            [(QueueList::Pending, raw(QueueList::Pending)), (QueueList::Live, raw(QueueList::Live))]
        };
        Ok(Some(self.edit(|txn, doc| doc.delete_raw(txn, &doomed))))
    }

    /// Enforces the invariants in one server transaction. Returns `None` when
    /// the document already satisfied them. Deterministic: the same content
    /// always yields the same removals (see the module docs).
    pub fn repair(&mut self) -> Option<Repair> {
        let (removed, doomed) = {
            let txn = self.doc.transact();
            let scan = self.scan(&txn);
            let mut removed = Vec::new();
            let mut doomed = Vec::new();
            for list in [QueueList::Pending, QueueList::Live] {
                let mut raw = Vec::new();
                for slot in scan.slots(list) {
                    if let Some(reason) = slot.verdict {
                        raw.push(slot.raw_index);
                        removed.push(RemovedEntry {
                            list,
                            index: slot.raw_index as usize,
                            user_id: slot.user_id.clone(),
                            reason,
                        });
                    }
                }
                doomed.push((list, raw));
            }
            (removed, doomed)
        };
        if removed.is_empty() {
            return None;
        }
        let update = self.edit(|txn, doc| doc.delete_raw(txn, &doomed));
        self.mark_clean();
        Some(Repair { update, removed })
    }

    fn mark_clean(&mut self) {
        if let Some(mirror) = self.mirror.as_mut() {
            mirror.clean = true;
        }
    }

    /// Builds the mirror if it is missing (O(n²) once, see [`Mirror::build`]).
    /// True when the incremental path applies: the mirror is there and the
    /// document keeps the invariants, so a change can only break them where
    /// it touched.
    pub(crate) fn prepare(&mut self) -> bool {
        if self.mirror.is_none() {
            let txn = self.doc.transact();
            let mut mirror = Mirror::build(&txn, &self.pending, &self.live);
            if let Some(mirror) = mirror.as_mut() {
                mirror.clean = self.scan(&txn).is_clean();
            }
            drop(txn);
            self.mirror = mirror;
        }
        self.mirror.as_ref().is_some_and(|m| m.clean)
    }

    /// What the last server edit ([`QueueDoc::add`], …) touched.
    pub(crate) fn take_touched(&mut self) -> Touched {
        std::mem::take(&mut self.last_touched)
    }

    /// Repairs what a change (`first`, on a document that kept the
    /// invariants) broke, looking only at the users it touched, and reports
    /// their entries before and after. The same removals as
    /// [`QueueDoc::repair`] would make: untouched users had one valid entry
    /// each and still do.
    pub(crate) fn settle(&mut self, first: Touched) -> Settled {
        let Some(m) = self.mirror.as_ref() else {
            // The mirror fell out of step with the document: repair all of
            // it; the change is recorded and repaired but not annotated.
            return Settled { repair: self.repair(), before: vec![], after: vec![] };
        };
        let mut doomed: Vec<(QueueList, usize, Option<String>, RemovalReason)> = Vec::new();
        let mut users: Vec<String> = Vec::new();
        for (_, _, id) in &first.inserted {
            match m.entry(id) {
                None => {
                    if let Some((list, index)) = m.position(id) {
                        doomed.push((list, index, None, RemovalReason::MissingUserId));
                    }
                }
                Some(entry) if !users.contains(&entry.user_id) => users.push(entry.user_id.clone()),
                Some(_) => {}
            }
        }
        for user in &users {
            let (mut live, mut pending) = (Vec::new(), Vec::new());
            for id in m.elements_of(user) {
                match m.position(id) {
                    Some((QueueList::Live, index)) => live.push(index),
                    Some((QueueList::Pending, index)) => pending.push(index),
                    None => {}
                }
            }
            live.sort_unstable();
            pending.sort_unstable();
            let who = || Some(user.clone());
            for index in live.iter().skip(1) {
                doomed.push((QueueList::Live, *index, who(), RemovalReason::Duplicate));
            }
            if live.is_empty() {
                for index in pending.iter().skip(1) {
                    doomed.push((QueueList::Pending, *index, who(), RemovalReason::Duplicate));
                }
            } else {
                for index in &pending {
                    doomed.push((QueueList::Pending, *index, who(), RemovalReason::AlreadyLive));
                }
            }
        }
        doomed.sort_by_key(|(list, index, ..)| (*list, *index));
        let (repair, second) = if doomed.is_empty() {
            (None, Touched::default())
        } else {
            let raw = |list| doomed.iter().filter(|d| d.0 == list).map(|d| d.1 as u32).collect::<Vec<_>>();
            let lists = [(QueueList::Pending, raw(QueueList::Pending)), (QueueList::Live, raw(QueueList::Live))];
            let removed = doomed
                .into_iter()
                .map(|(list, index, user_id, reason)| RemovedEntry { list, index, user_id, reason })
                .collect();
            let (update, touched) = self.edit_tracked(|txn, doc| doc.delete_raw(txn, &lists));
            (Some(Repair { update, removed }), touched)
        };
        self.mark_clean();
        let Some(m) = self.mirror.as_ref() else { return Settled { repair, before: vec![], after: vec![] } };
        let inserted: HashSet<ID> = first.inserted.iter().map(|(_, _, id)| *id).collect();
        let mut before: Vec<TrackedEntry> = first
            .removed
            .iter()
            .filter_map(|(list, index, elem)| {
                let entry = elem.entry.clone()?;
                Some(TrackedEntry { list: *list, index: *index, entry, item: Some(elem.id) })
            })
            .collect();
        for (list, index, elem) in &second.removed {
            if inserted.contains(&elem.id) {
                continue;
            }
            let Some(entry) = elem.entry.clone() else { continue };
            let index = position_before(&first, *list, *index);
            before.push(TrackedEntry { list: *list, index, entry, item: Some(elem.id) });
        }
        let mut after: Vec<TrackedEntry> = first
            .inserted
            .iter()
            .filter_map(|(_, _, id)| {
                let (list, index) = m.position(id)?;
                let entry = m.entry(id)?.clone();
                Some(TrackedEntry { list, index, entry, item: Some(*id) })
            })
            .collect();
        before.sort_by_key(|e| (e.list, e.index));
        after.sort_by_key(|e| (e.list, e.index));
        Settled { repair, before, after }
    }

    fn array(&self, list: QueueList) -> &ArrayRef {
        match list {
            QueueList::Pending => &self.pending,
            QueueList::Live => &self.live,
        }
    }

    /// Runs `change` in one transaction and returns its v1 update.
    fn edit(&mut self, change: impl FnOnce(&mut TransactionMut, &QueueDoc)) -> Vec<u8> {
        let (update, touched) = self.edit_tracked(change);
        self.last_touched = touched;
        update
    }

    /// [`QueueDoc::edit`], also saying which elements it touched.
    fn edit_tracked(&mut self, change: impl FnOnce(&mut TransactionMut, &QueueDoc)) -> (Vec<u8>, Touched) {
        let mut mirror = self.mirror.take();
        let (update, touched) = {
            let mut txn = self.doc.transact_mut();
            change(&mut txn, self);
            // Encode after commit, as yrs's own update observers do: the delete
            // set is squashed and merged blocks are settled by then.
            txn.commit();
            let update = txn.encode_update_v1();
            let touched = track(&mut mirror, &txn, &update, &self.pending, &self.live);
            (update, touched)
        };
        self.mirror = mirror;
        (update, touched)
    }

    /// Deletes raw items by index; highest first so lower indices stay valid.
    fn delete_raw(&self, txn: &mut TransactionMut, doomed: &[(QueueList, Vec<u32>)]) {
        for (list, raw) in doomed {
            let mut raw = raw.clone();
            raw.sort_unstable_by(|a, b| b.cmp(a));
            for index in raw {
                self.array(*list).remove(txn, index);
            }
        }
    }

    /// Classifies every raw item by the repair rules: `live` first, because a
    /// user's live entry wins over a pending one.
    fn scan<T: ReadTxn>(&self, txn: &T) -> Scan {
        let mut live_users = HashSet::new();
        let live = classify(&self.live, txn, &mut live_users, |_| None);
        let mut pending_users = HashSet::new();
        let pending = classify(&self.pending, txn, &mut pending_users, |user_id| {
            live_users.contains(user_id).then_some(RemovalReason::AlreadyLive)
        });
        Scan { pending, live }
    }
}

/// Where an element that survived change `first` (at `index` of `list`
/// after it) was before it: among the survivors it is at `q` (the change's
/// insertions before it taken out), and the change's deletion `j` (by
/// position `d`, counting `j` deletions before it) came before it when
/// `d - j <= q`.
fn position_before(first: &Touched, list: QueueList, index: usize) -> usize {
    let inserted_before = first.inserted.iter().filter(|(l, i, _)| *l == list && *i < index).count();
    let q = index - inserted_before;
    let mut deleted: Vec<usize> = first.removed.iter().filter(|(l, ..)| *l == list).map(|(_, d, _)| *d).collect();
    deleted.sort_unstable();
    q + deleted.iter().enumerate().filter(|(j, d)| **d - *j <= q).count()
}

/// Tracks what a committed transaction changed in the parked (not yet
/// integrable) part of the document: missing predecessors, parked blocks,
/// parked deletions.
fn parked(txn: &TransactionMut) -> (Option<(StateVector, StateVector)>, Option<yrs::IdSet>) {
    let store = ReadTxn::store(txn);
    let update = store.pending_update().map(|p| (p.missing.clone(), p.update.state_vector()));
    (update, store.pending_ds().cloned())
}

/// Classifies one array's items in index order; `seen` collects the users kept
/// so far in this list and `other_list` may veto a user kept elsewhere.
fn classify<T: ReadTxn>(
    array: &ArrayRef,
    txn: &T,
    seen: &mut HashSet<String>,
    other_list: impl Fn(&str) -> Option<RemovalReason>,
) -> Vec<Slot> {
    array
        .iter(txn)
        .enumerate()
        .map(|(raw_index, out)| {
            let raw_index = raw_index as u32;
            let Some((user_id, name, value)) = parse_item(out) else {
                return Slot {
                    raw_index,
                    value: Any::Null,
                    user_id: None,
                    name: String::new(),
                    verdict: Some(RemovalReason::MissingUserId),
                };
            };
            let verdict =
                other_list(&user_id).or_else(|| (!seen.insert(user_id.clone())).then_some(RemovalReason::Duplicate));
            Slot { raw_index, value, user_id: Some(user_id), name, verdict }
        })
        .collect()
}

/// `(userId, name, item)` of a plain-object item with a string `userId`. A
/// missing or non-string `name` falls back to the user id, as names do
/// everywhere in the contract.
fn parse_item(out: Out) -> Option<(String, String, Any)> {
    let Out::Any(value @ Any::Map(_)) = out else { return None };
    let Any::Map(map) = &value else { return None };
    let Some(Any::String(user_id)) = map.get(USER_ID_KEY) else { return None };
    let name = match map.get(NAME_KEY) {
        Some(Any::String(name)) => name.to_string(),
        _ => user_id.to_string(),
    };
    Some((user_id.to_string(), name, value))
}

impl Slot {
    fn entry(&self) -> Entry {
        Entry { user_id: self.user_id.clone().unwrap_or_default(), name: self.name.clone() }
    }
}

/// Runs yrs on bytes from the network. yrs's decoders have debug assertions
/// that malformed input can trip (a client id above 2^53 in an update,
/// awareness message or state vector panics in debug builds); the room must
/// survive a hostile frame, so a panic counts as "malformed" like an error.
pub(crate) fn guarded<T>(f: impl FnOnce() -> Option<T>) -> Option<T> {
    catch_unwind(AssertUnwindSafe(f)).ok().flatten()
}

/// Snapshots of the aggregate store the document as the base64 of its full
/// v1 state: compact, and readable by any Yjs implementation.
impl Serialize for QueueDoc {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(self.encode_state()))
    }
}

impl<'de> Deserialize<'de> for QueueDoc {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let encoded = String::deserialize(deserializer)?;
        let bytes = BASE64.decode(encoded).map_err(D::Error::custom)?;
        QueueDoc::from_state(&bytes).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests;
