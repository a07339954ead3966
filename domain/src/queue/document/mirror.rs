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

use yrs::branch::BranchPtr;
use yrs::{Array, ArrayRef, Assoc, ID, IndexScope, IndexedSequence, ReadTxn, StickyIndex, TransactionMut};

use super::{Entry, QueueList, parse_item};

/// Up to this many deletions in one list are located by linear search each;
/// more by one pass over the list.
const FEW: usize = 8;

/// One raw element of an array.
#[derive(Clone, Debug)]
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
    /// elements a change touched.
    pub fn position(&self, id: &ID) -> Option<(QueueList, usize)> {
        let (list, _) = self.by_id.get(id)?;
        self.list(*list).iter().position(|e| e == id).map(|index| (*list, index))
    }

    /// The entry of element `id`; `None` for an invalid or unknown element.
    pub fn entry(&self, id: &ID) -> Option<&Entry> {
        self.by_id.get(id)?.1.as_ref()
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
pub(crate) fn track(mirror: &mut Option<Mirror>, txn: &TransactionMut, pending: &ArrayRef, live: &ArrayRef) -> Touched {
    let Some(m) = mirror.as_mut() else { return Touched::default() };
    let touched = apply_txn(m, txn, pending, live);
    let consistent =
        touched.is_some() && m.pending.len() == pending.len(txn) as usize && m.live.len() == live.len(txn) as usize;
    if !consistent {
        *mirror = None;
        return Touched::default();
    }
    touched.unwrap_or_default()
}

fn apply_txn(m: &mut Mirror, txn: &TransactionMut, pending: &ArrayRef, live: &ArrayRef) -> Option<Touched> {
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
    }
    // Insertions: where yrs put each new element, and what it holds.
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
    // Inserting in ascending final index keeps every index valid.
    arrived.sort_by_key(|(list, index, _)| (*list, *index));
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
