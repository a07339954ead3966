//! The mirror: both raw arrays of the document as plain Rust values (each
//! element's Yjs id and parsed entry), kept in step with every transaction.
//!
//! It exists so that a change costs what it touched, not what the document
//! holds. yrs tells a transaction's inserted and deleted ids (`insert_set`,
//! `delete_set`) but not which user an id belongs to or where it was; the
//! mirror answers both without re-reading the document. Positions of newly
//! inserted elements are asked of yrs (`StickyIndex::get_offset`, a walk of
//! the items to their left), the only part that still grows with the queue.
//!
//! The mirror is a cache, never the truth: after every transaction its list
//! lengths are checked against yrs's (O(1)); on a mismatch (content the queue
//! does not expect, such as non-sequence items a crafted update puts in an
//! array) it is dropped and rebuilt from the document when next needed.

use std::collections::{HashMap, HashSet};

use yrs::block::{
    BLOCK_GC_REF_NUMBER, BLOCK_SKIP_REF_NUMBER, HAS_ORIGIN, HAS_PARENT_SUB, HAS_RIGHT_ORIGIN, ItemContent,
};
use yrs::branch::BranchPtr;
use yrs::encoding::read::{Cursor, Read};
use yrs::updates::decoder::{Decoder, DecoderV1};
use yrs::{Any, Array, ArrayRef, Assoc, ID, IndexScope, IndexedSequence, Out, ReadTxn, StickyIndex, TransactionMut};

use super::{Entry, QueueList, parse_item};

/// Up to this many deletions in one list are located by linear search each;
/// more by one pass over the list.
const FEW: usize = 8;

/// One raw element of an array.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Elem {
    pub id: ID,
    /// `None` when the element is not a plain object with a string `userId`.
    pub entry: Option<Entry>,
}

#[derive(Debug, Default)]
pub(crate) struct Mirror {
    /// Element ids in document order. Only ids, 16 bytes each, so that the
    /// searches and shifts of a change stay a few microseconds at 5,000.
    pending: Vec<ID>,
    live: Vec<ID>,
    /// Each element's list and entry.
    by_id: HashMap<ID, (QueueList, Option<Entry>)>,
    /// Every element of a user, in both lists (duplicates included).
    by_user: HashMap<String, Vec<ID>>,
    /// No element breaks the invariants: what the incremental repair assumes
    /// of the document before a change. Set by a repair, cleared by inserts.
    pub clean: bool,
    /// Where each element deleted while this mirror kept watch lies: between
    /// the elements that were its neighbours then. Items never change order,
    /// so those stay bounds on it whatever happens later, and an insert next
    /// to a deleted element (most are: every move leaves one) can still be
    /// placed without asking yrs. At most [`MAX_TOMBSTONES`].
    tombstones: HashMap<ID, Bounds>,
}

/// Deleted elements whose bounds are kept (~100 bytes each); past it, inserts
/// next to newer ones are placed by yrs's walk.
const MAX_TOMBSTONES: usize = 100_000;

/// Steps taken from a deleted element to a bound that is still here before
/// an insert beside it is left to yrs's walk.
const MAX_CHASE: usize = 32;

/// The neighbours a deleted element had when it was deleted.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    list: QueueList,
    left: Option<ID>,
    right: Option<ID>,
}

/// Which way [`Mirror::nearest_here`] follows the bounds of deleted elements.
#[derive(Clone, Copy, Debug)]
enum Side {
    Left,
    Right,
}

/// What one transaction did to the arrays.
#[derive(Clone, Debug, Default)]
pub(crate) struct Touched {
    /// Elements it deleted: list, raw index before the transaction, element.
    pub removed: Vec<(QueueList, usize, Elem)>,
    /// Elements it inserted (and did not delete): list, raw index after it, id.
    pub inserted: Vec<(QueueList, usize, ID)>,
}

impl Mirror {
    /// Reads both arrays from the document. O(n²) in yrs (each element's id
    /// is a walk from the start), so it runs once per loaded document and
    /// after an inconsistency, never per update.
    pub fn build<T: ReadTxn>(txn: &T, pending: &ArrayRef, live: &ArrayRef) -> Option<Self> {
        let mut mirror = Mirror::default();
        for (list, array) in [(QueueList::Pending, pending), (QueueList::Live, live)] {
            for (index, out) in array.iter(txn).enumerate() {
                let id = *array.sticky_index(txn, index as u32, Assoc::After)?.id()?;
                let entry = parse_item(out).map(|(user_id, name, _)| Entry { user_id, name });
                mirror.insert(list, index, Elem { id, entry });
            }
        }
        Some(mirror)
    }

    pub fn list(&self, list: QueueList) -> &[ID] {
        match list {
            QueueList::Pending => &self.pending,
            QueueList::Live => &self.live,
        }
    }

    fn list_mut(&mut self, list: QueueList) -> &mut Vec<ID> {
        match list {
            QueueList::Pending => &mut self.pending,
            QueueList::Live => &mut self.live,
        }
    }

    /// The list and raw index of element `id`. A linear search of one
    /// contiguous list (ids compare in a few nanoseconds), used only for the
    /// elements a change touched. It runs from the end: people join a queue
    /// at its end, so the origin of most inserts is the last element, found
    /// at once however long the queue.
    pub fn position(&self, id: &ID) -> Option<(QueueList, usize)> {
        let (list, _) = self.by_id.get(id)?;
        self.list(*list).iter().rposition(|e| e == id).map(|index| (*list, index))
    }

    /// The entry of element `id`; `None` for an invalid or unknown element.
    pub fn entry(&self, id: &ID) -> Option<&Entry> {
        self.by_id.get(id)?.1.as_ref()
    }

    /// The list and index at which an element inserted between `origin` and
    /// `right_origin` (or, with neither, into the root array `root`) now
    /// sits among the elements already here: the nearest element still here
    /// on each side, found through the bounds of deleted ones, must be
    /// neighbours. `None` when they are not (something else lies between,
    /// whose order against the new element is yrs's to settle) or an origin
    /// is unknown here.
    fn gap(&self, origin: Option<ID>, right_origin: Option<ID>, root: Option<&str>) -> Option<(QueueList, usize)> {
        let left = match origin {
            Some(id) => Some(self.nearest_here(id, Side::Left)?),
            None => None,
        };
        // On the right, a chase that reaches the list's end stands for
        // its length: the new element goes last.
        let right = match right_origin {
            Some(id) => {
                let (list, at) = self.nearest_here(id, Side::Right)?;
                Some((list, at.unwrap_or_else(|| self.list(list).len())))
            }
            None => None,
        };
        let (list, after) = match (left, right) {
            (Some((list, after)), Some((other, before))) => {
                (list == other && before == after.map_or(0, |at| at + 1)).then_some((list, after))?
            }
            (Some((list, after)), None) => {
                (after.map_or(0, |at| at + 1) == self.list(list).len()).then_some((list, after))?
            }
            (None, Some((list, before))) => (before == 0).then_some((list, None))?,
            (None, None) => {
                let list = [QueueList::Pending, QueueList::Live].into_iter().find(|l| Some(l.array_name()) == root)?;
                self.list(list).is_empty().then_some((list, None))?
            }
        };
        Some((list, after.map_or(0, |at| at + 1)))
    }

    /// The index of `id` if it is here, else of the nearest element still
    /// here on `side` of where it was, followed through the bounds deleted
    /// elements kept (`None` inside: the chase reached the list's end on
    /// that side). `None` for an element never seen, or a chase longer
    /// than `MAX_CHASE`.
    fn nearest_here(&self, mut id: ID, side: Side) -> Option<(QueueList, Option<usize>)> {
        for _ in 0..MAX_CHASE {
            if let Some((list, at)) = self.position(&id) {
                return Some((list, Some(at)));
            }
            let bounds = self.tombstones.get(&id)?;
            let next = match side {
                Side::Left => bounds.left,
                Side::Right => bounds.right,
            };
            match next {
                Some(next) => id = next,
                None => return Some((bounds.list, None)),
            }
        }
        None
    }

    /// Every element of `user_id`, wherever it is.
    pub fn elements_of(&self, user_id: &str) -> &[ID] {
        self.by_user.get(user_id).map(Vec::as_slice).unwrap_or(&[])
    }

    fn insert(&mut self, list: QueueList, index: usize, elem: Elem) -> bool {
        if index > self.list(list).len() {
            return false;
        }
        if let Some(entry) = &elem.entry {
            self.by_user.entry(entry.user_id.clone()).or_default().push(elem.id);
        }
        self.list_mut(list).insert(index, elem.id);
        self.by_id.insert(elem.id, (list, elem.entry));
        true
    }

    /// Removes element `id` (already out of its list) from the indexes.
    fn forget(&mut self, id: &ID) -> Option<Elem> {
        let (_, entry) = self.by_id.remove(id)?;
        if let Some(entry) = &entry
            && let Some(ids) = self.by_user.get_mut(&entry.user_id)
        {
            ids.retain(|other| other != id);
            if ids.is_empty() {
                self.by_user.remove(&entry.user_id);
            }
        }
        Some(Elem { id: *id, entry })
    }
}

/// Brings `mirror` in step with a committed transaction and says what it
/// touched. Drops the mirror when it no longer matches the document.
/// `update` is the transaction's own v1 update (`encode_update_v1` after
/// commit).
pub(crate) fn track(
    mirror: &mut Option<Mirror>,
    txn: &TransactionMut,
    update: &[u8],
    pending: &ArrayRef,
    live: &ArrayRef,
) -> Touched {
    let Some(m) = mirror.as_mut() else { return Touched::default() };
    let touched = apply_txn(m, txn, update, pending, live);
    let consistent =
        touched.is_some() && m.pending.len() == pending.len(txn) as usize && m.live.len() == live.len(txn) as usize;
    if !consistent {
        *mirror = None;
        return Touched::default();
    }
    touched.unwrap_or_default()
}

fn apply_txn(
    m: &mut Mirror,
    txn: &TransactionMut,
    update: &[u8],
    pending: &ArrayRef,
    live: &ArrayRef,
) -> Option<Touched> {
    let mut touched = Touched::default();
    // Deletions first, located in the lists as they were before.
    let mut gone: Vec<(QueueList, ID)> = Vec::new();
    for (client, ranges) in txn.delete_set().iter() {
        for range in ranges.iter() {
            for clock in range.clone() {
                let id = ID::new(*client, clock);
                if let Some((list, _)) = m.by_id.get(&id) {
                    gone.push((*list, id));
                }
            }
        }
    }
    for list in [QueueList::Pending, QueueList::Live] {
        let ids: HashSet<ID> = gone.iter().filter(|(l, _)| *l == list).map(|(_, id)| *id).collect();
        if ids.is_empty() {
            continue;
        }
        let elems = m.list_mut(list);
        // Few deletions (a move, a repair): search and shift. Many (a
        // cleared list): one pass.
        let mut found: Vec<(usize, ID)> = if ids.len() <= FEW {
            ids.iter().filter_map(|id| elems.iter().position(|e| e == id).map(|i| (i, *id))).collect()
        } else {
            elems.iter().enumerate().filter(|(_, e)| ids.contains(e)).map(|(i, e)| (i, *e)).collect()
        };
        if found.len() != ids.len() {
            return None;
        }
        found.sort_unstable_by_key(|(index, _)| *index);
        let bounds: Vec<(ID, Bounds)> = found
            .iter()
            .map(|(index, id)| {
                let left = index.checked_sub(1).map(|i| elems[i]);
                (*id, Bounds { list, left, right: elems.get(index + 1).copied() })
            })
            .collect();
        if ids.len() <= FEW {
            for (index, _) in found.iter().rev() {
                elems.remove(*index);
            }
        } else {
            elems.retain(|e| !ids.contains(e));
        }
        for (index, id) in found {
            let elem = m.forget(&id)?;
            touched.removed.push((list, index, elem));
        }
        if m.tombstones.len() + bounds.len() <= MAX_TOMBSTONES {
            m.tombstones.extend(bounds);
        }
    }
    // Insertions: where each new element went, and what it holds. Read from
    // the transaction's own update where its neighbours say so; asked of
    // yrs, a walk over every item to the left, where they do not.
    let arrived = match arrivals_from_update(m, txn, update) {
        Some(arrived) => {
            #[cfg(test)]
            if !arrived.is_empty() {
                placements::FROM_UPDATE.with(|n| n.set(n.get() + 1));
                // Not in release test builds, whose timing tests time this.
                #[cfg(debug_assertions)]
                assert_eq!(
                    arrived,
                    arrivals_by_walking(txn, pending, live),
                    "the update's neighbours placed an element where yrs did not"
                );
            }
            arrived
        }
        None => {
            #[cfg(test)]
            placements::BY_WALKING.with(|n| n.set(n.get() + 1));
            arrivals_by_walking(txn, pending, live)
        }
    };
    for (list, index, elem) in arrived {
        let id = elem.id;
        if !m.insert(list, index, elem) {
            return None;
        }
        touched.inserted.push((list, index, id));
        m.clean = false;
    }
    Some(touched)
}

/// Where each element the transaction inserted (and kept) now is, asked of
/// yrs: `get_offset` and `Array::get` each walk the items to the element,
/// deleted ones included, so this grows with the document's whole history.
/// Sorted by list and final index.
fn arrivals_by_walking(txn: &TransactionMut, pending: &ArrayRef, live: &ArrayRef) -> Vec<(QueueList, usize, Elem)> {
    let pending_branch = BranchPtr::from(pending.as_ref());
    let live_branch = BranchPtr::from(live.as_ref());
    let mut arrived: Vec<(QueueList, usize, Elem)> = Vec::new();
    for (client, ranges) in txn.insert_set().iter() {
        for range in ranges.iter() {
            for clock in range.clone() {
                let id = ID::new(*client, clock);
                if txn.delete_set().contains(&id) {
                    continue;
                }
                let Some(offset) = StickyIndex::new(IndexScope::Relative(id), Assoc::After).get_offset(txn) else {
                    continue;
                };
                let (list, array) = if offset.branch == pending_branch {
                    (QueueList::Pending, pending)
                } else if offset.branch == live_branch {
                    (QueueList::Live, live)
                } else {
                    // Inside another type (a nested map, another root): not
                    // an element of the queue.
                    continue;
                };
                let entry =
                    array.get(txn, offset.index).and_then(parse_item).map(|(user_id, name, _)| Entry { user_id, name });
                arrived.push((list, offset.index as usize, Elem { id, entry }));
            }
        }
    }
    arrived.sort_by_key(|(list, index, _)| (*list, *index));
    arrived
}

/// One struct of a v1 update: elements with consecutive clocks, inserted
/// together between `origin` and `right_origin`.
struct Run {
    first: ID,
    len: u32,
    origin: Option<ID>,
    right_origin: Option<ID>,
    /// The root type named by a struct that has neither origin.
    root: Option<String>,
    /// The elements' values when they are plain values (`ContentAny`);
    /// `None` for any other content.
    values: Option<Vec<Any>>,
}

/// The structs of a v1 update (the layout `Update::decode` reads, through
/// yrs's own decoder). `None` when it holds anything but items and GC or
/// skip ranges with plain, deleted or no content, or does not parse.
fn runs_of(update: &[u8]) -> Option<Vec<Run>> {
    let mut decoder = DecoderV1::new(Cursor::new(update));
    let clients: u32 = decoder.read_var().ok()?;
    let mut runs = Vec::new();
    for _ in 0..clients {
        let structs: u32 = decoder.read_var().ok()?;
        let client = decoder.read_client().ok()?;
        let mut clock: u32 = decoder.read_var().ok()?;
        for _ in 0..structs {
            let info = decoder.read_info().ok()?;
            if info == BLOCK_SKIP_REF_NUMBER || info == BLOCK_GC_REF_NUMBER {
                let len: u32 = decoder.read_var().ok()?;
                clock = clock.checked_add(len)?;
                continue;
            }
            let origin = if info & HAS_ORIGIN != 0 { Some(decoder.read_left_id().ok()?) } else { None };
            let right_origin = if info & HAS_RIGHT_ORIGIN != 0 { Some(decoder.read_right_id().ok()?) } else { None };
            let mut root = None;
            if origin.is_none() && right_origin.is_none() {
                if decoder.read_parent_info().ok()? {
                    root = Some(decoder.read_string().ok()?.to_owned());
                } else {
                    // Inside a nested type.
                    return None;
                }
                if info & HAS_PARENT_SUB != 0 {
                    // A map entry.
                    return None;
                }
            }
            let (len, values) = match ItemContent::decode(&mut decoder, info).ok()? {
                ItemContent::Any(values) => (u32::try_from(values.len()).ok()?, Some(values)),
                ItemContent::Deleted(len) => (len, None),
                _ => return None,
            };
            runs.push(Run { first: ID::new(client, clock), len, origin, right_origin, root, values });
            clock = clock.checked_add(len)?;
        }
    }
    Some(runs)
}

/// Where each element the transaction inserted (and kept) now is, read
/// from its own update (`update`) without walking the document: an element
/// sits between the origins it was inserted with, so when those are
/// neighbours in the mirror (after the transaction's deletions) its index
/// follows, whatever deleted items lie between them. `None`, so that yrs is
/// asked, when an origin is unknown, deleted, or not next to the other,
/// when two runs share a gap (their order is yrs's conflict resolution), or
/// when anything inserted is not a plain value of a root array. Sorted by
/// list and final index.
fn arrivals_from_update(m: &Mirror, txn: &TransactionMut, update: &[u8]) -> Option<Vec<(QueueList, usize, Elem)>> {
    let deleted = txn.delete_set();
    let mut gaps: Vec<(QueueList, usize, Vec<Elem>)> = Vec::new();
    let mut kept = 0usize;
    for run in runs_of(update)? {
        let alive: Vec<(usize, ID)> = (0..run.len)
            .map(|k| (k as usize, ID::new(run.first.client, run.first.clock + k)))
            .filter(|(_, id)| !deleted.contains(id))
            .collect();
        if alive.is_empty() {
            continue;
        }
        let values = run.values.as_ref()?;
        let (list, base) = m.gap(run.origin, run.right_origin, run.root.as_deref())?;
        if gaps.iter().any(|(other, at, _)| *other == list && *at == base) {
            return None;
        }
        let elems = alive
            .into_iter()
            .map(|(k, id)| {
                let entry =
                    parse_item(Out::Any(values.get(k)?.clone())).map(|(user_id, name, _)| Entry { user_id, name });
                Some(Elem { id, entry })
            })
            .collect::<Option<Vec<_>>>()?;
        kept += elems.len();
        gaps.push((list, base, elems));
    }
    // Everything yrs integrated must be one of those runs' elements.
    let integrated: usize = txn
        .insert_set()
        .iter()
        .flat_map(|(client, ranges)| {
            ranges.iter().flat_map(move |range| range.clone().map(move |clock| ID::new(*client, clock)))
        })
        .filter(|id| !deleted.contains(id))
        .count();
    if integrated != kept {
        return None;
    }
    // Each gap's elements, shifted by the new elements of earlier gaps in
    // the same list.
    gaps.sort_by_key(|(list, base, _)| (*list, *base));
    let mut arrived = Vec::with_capacity(kept);
    let mut shift = None;
    for (list, base, elems) in gaps {
        let earlier = match shift {
            Some((shifted, n)) if shifted == list => n,
            _ => 0,
        };
        let n = elems.len();
        arrived.extend(elems.into_iter().enumerate().map(|(k, elem)| (list, base + earlier + k, elem)));
        shift = Some((list, earlier + n));
    }
    Some(arrived)
}

/// How the transactions of this test thread had their insertions placed:
/// tests check that the fast path is taken where it should be and agrees
/// with yrs (every placement from an update is checked against the walk).
#[cfg(test)]
pub(crate) mod placements {
    use std::cell::Cell;

    thread_local! {
        pub static FROM_UPDATE: Cell<usize> = const { Cell::new(0) };
        pub static BY_WALKING: Cell<usize> = const { Cell::new(0) };
    }

    /// (from the update, by walking) so far on this thread.
    pub fn counts() -> (usize, usize) {
        (FROM_UPDATE.with(Cell::get), BY_WALKING.with(Cell::get))
    }
}
