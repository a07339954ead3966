//! The `Queue` aggregate: one per event, owning the queue's [`QueueDoc`].
//!
//! Its stream records two kinds of events:
//! - [`QueueEvent::UpdateApplied`] carries a raw Yjs v1 update (base64). These
//!   are the truth: replaying them rebuilds the document, and they are what the
//!   server broadcasts to connected clients. Yjs updates are idempotent and
//!   commute, so replaying one twice is harmless.
//! - Semantic events (`ParticipantQueued`, `…Moved`, `…Promoted`,
//!   `…SentBack`, `…Removed`, `QueueRepaired`) annotate the stream for audits
//!   and projections ("who moved alice to live at 20:14"). They are derived by
//!   diffing the view before and after each change and do not touch the
//!   document when applied.
//!
//! A command is decided on a fork of the document (same content, same server
//! client id): the real document changes only through `apply`, so a rejected
//! or panicking update can never leave it half-changed.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use yrs::Update;
use yrs::updates::decoder::Decode;

use super::document::{QueueDoc, QueueList, QueueView, RemovedEntry, Touched, TrackedEntry, guarded};
use super::{Actor, QueueError, Role};

/// Who produced an [`QueueEvent::UpdateApplied`] update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOrigin {
    /// A moderator's Yjs client, over the WebSocket.
    Client,
    /// The server, executing an HTTP command.
    Server,
    /// The server, restoring the invariants after another update.
    Repair,
}

#[derive(Clone, Debug, PartialEq)]
pub enum QueueCommand {
    /// Integrate a Yjs update received from a connection (SyncStep2 or Update).
    /// A participant's update is dropped without events (public contract).
    ApplyClientUpdate { update: Vec<u8>, actor: Actor, at: i64 },
    /// Append a user to `pending`, unless they are queued already.
    Add { user_id: String, name: String, actor: Actor, at: i64 },
    /// Put a user at `index` of `list` (`index` counts the list without them).
    Move { user_id: String, list: QueueList, index: usize, actor: Actor, at: i64 },
    /// Move a user from `pending` to the end of `live`.
    Promote { user_id: String, actor: Actor, at: i64 },
    /// Take a user out of the queue.
    Remove { user_id: String, actor: Actor, at: i64 },
}

impl QueueCommand {
    /// The command's name, for the audit metadata of its events.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ApplyClientUpdate { .. } => "ApplyClientUpdate",
            Self::Add { .. } => "AddToQueue",
            Self::Move { .. } => "MoveInQueue",
            Self::Promote { .. } => "PromoteToLive",
            Self::Remove { .. } => "RemoveFromQueue",
        }
    }

    /// Who asked for it.
    pub fn actor(&self) -> &Actor {
        match self {
            Self::ApplyClientUpdate { actor, .. }
            | Self::Add { actor, .. }
            | Self::Move { actor, .. }
            | Self::Promote { actor, .. }
            | Self::Remove { actor, .. } => actor,
        }
    }
}

/// Every event names who caused it (`by`, a user id) and when (`at`, ms since
/// the Unix epoch, from the command). Indices are positions in the view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueEvent {
    /// A Yjs v1 update (standard base64) was integrated into the document.
    UpdateApplied { update: String, origin: UpdateOrigin, by: String, at: i64 },
    /// A user entered the queue.
    ParticipantQueued { user_id: String, name: String, list: QueueList, index: usize, by: String, at: i64 },
    /// A user changed place within a list (relative to the entries that stayed put).
    ParticipantMoved { user_id: String, list: QueueList, from: usize, to: usize, by: String, at: i64 },
    /// A user went from `pending` to `live`.
    ParticipantPromoted { user_id: String, by: String, at: i64 },
    /// A user went from `live` back to `pending`.
    ParticipantSentBack { user_id: String, by: String, at: i64 },
    /// A user left the queue.
    ParticipantRemoved { user_id: String, list: QueueList, by: String, at: i64 },
    /// The server removed items that broke the invariants; `by` is the author
    /// of the update that broke them.
    QueueRepaired { removed: Vec<RemovedEntry>, by: String, at: i64 },
}

impl QueueEvent {
    /// The Yjs update to broadcast to connected clients, for `UpdateApplied`.
    pub fn update(&self) -> Option<Vec<u8>> {
        match self {
            QueueEvent::UpdateApplied { update, .. } => BASE64.decode(update).ok(),
            _ => None,
        }
    }

    fn update_applied(update: &[u8], origin: UpdateOrigin, by: &str, at: i64) -> Self {
        QueueEvent::UpdateApplied { update: BASE64.encode(update), origin, by: by.to_owned(), at }
    }
}

impl DomainEvent for QueueEvent {
    fn event_type(&self) -> String {
        match self {
            QueueEvent::UpdateApplied { .. } => "UpdateApplied",
            QueueEvent::ParticipantQueued { .. } => "ParticipantQueued",
            QueueEvent::ParticipantMoved { .. } => "ParticipantMoved",
            QueueEvent::ParticipantPromoted { .. } => "ParticipantPromoted",
            QueueEvent::ParticipantSentBack { .. } => "ParticipantSentBack",
            QueueEvent::ParticipantRemoved { .. } => "ParticipantRemoved",
            QueueEvent::QueueRepaired { .. } => "QueueRepaired",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// The queue of one event. Snapshots serialise it as `{"doc":"<base64 of the
/// document's full v1 state>"}`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Queue {
    doc: QueueDoc,
}

impl Queue {
    pub fn doc(&self) -> &QueueDoc {
        &self.doc
    }

    pub fn view(&self) -> QueueView {
        self.doc.view()
    }

    /// The events `command` yields, integrated into the live document as
    /// they are decided (ADR 0016); a refused command changes nothing.
    pub fn decide(&mut self, command: QueueCommand) -> Result<Vec<QueueEvent>, QueueError> {
        match command {
            QueueCommand::ApplyClientUpdate { update, actor, at } => {
                if actor.role != Role::Moderator {
                    // Participants read; their writes vanish without an error
                    // so that their socket keeps receiving (public contract).
                    return Ok(vec![]);
                }
                let decoded = guarded(|| Update::decode_v1(&update).ok()).ok_or(QueueError::MalformedUpdate)?;
                let before = self.before();
                let integrated = self.doc.integrate(decoded)?;
                if integrated.error {
                    return Err(QueueError::MalformedUpdate);
                }
                if !integrated.changed && !integrated.parked {
                    // Nothing new: every reconnect's SyncStep2 carries the
                    // client's whole delete set, and recording those would grow
                    // the log with each reconnect. An update that adds content,
                    // deletions, or parks something pending is always kept.
                    return Ok(vec![]);
                }
                // What integrated, exactly: the client's bytes, or the part
                // yrs took before refusing a block.
                let recorded = integrated.update.unwrap_or(update);
                if !integrated.changed {
                    return Ok(vec![QueueEvent::update_applied(&recorded, UpdateOrigin::Client, &actor.user_id, at)]);
                }
                Ok(self.conclude(before, integrated.touched, &recorded, UpdateOrigin::Client, &actor.user_id, at))
            }
            QueueCommand::Add { user_id, name, actor, at } => {
                self.server_edit(&actor, at, |doc| doc.add(&user_id, &name))
            }
            QueueCommand::Move { user_id, list, index, actor, at } => {
                self.server_edit(&actor, at, |doc| doc.move_to(&user_id, list, index))
            }
            QueueCommand::Promote { user_id, actor, at } => self.server_edit(&actor, at, |doc| doc.promote(&user_id)),
            QueueCommand::Remove { user_id, actor, at } => self.server_edit(&actor, at, |doc| doc.remove(&user_id)),
        }
    }

    /// `None` when the change can be judged by what it touches (the usual
    /// case); otherwise the whole tracked view before it, for a document that
    /// does not keep the invariants yet (one loaded from such a state).
    fn before(&mut self) -> Option<Vec<TrackedEntry>> {
        (!self.doc.prepare()).then(|| self.doc.tracked())
    }

    fn server_edit(
        &mut self,
        actor: &Actor,
        at: i64,
        edit: impl FnOnce(&mut QueueDoc) -> Result<Option<Vec<u8>>, QueueError>,
    ) -> Result<Vec<QueueEvent>, QueueError> {
        if actor.role != Role::Moderator {
            return Err(QueueError::Forbidden(actor.user_id.clone()));
        }
        let before = self.before();
        // Every check of an edit happens before its transaction, so an error
        // here has changed nothing.
        Ok(match edit(&mut self.doc)? {
            Some(update) => {
                let touched = self.doc.take_touched();
                self.conclude(before, touched, &update, UpdateOrigin::Server, &actor.user_id, at)
            }
            None => vec![],
        })
    }

    /// The events of one change already made on the live document: the
    /// update, the repair it needed if any, then what it meant for the view.
    fn conclude(
        &mut self,
        before: Option<Vec<TrackedEntry>>,
        touched: Touched,
        update: &[u8],
        origin: UpdateOrigin,
        by: &str,
        at: i64,
    ) -> Vec<QueueEvent> {
        let mut events = vec![QueueEvent::update_applied(update, origin, by, at)];
        let (repair, before, after) = match before {
            None => {
                let settled = self.doc.settle(touched);
                (settled.repair, settled.before, settled.after)
            }
            Some(before) => {
                let repair = self.doc.repair();
                (repair, before, self.doc.tracked())
            }
        };
        if let Some(repair) = repair {
            events.push(QueueEvent::update_applied(&repair.update, UpdateOrigin::Repair, by, at));
            events.push(QueueEvent::QueueRepaired { removed: repair.removed, by: by.to_owned(), at });
        }
        events.extend(semantic_changes(&before, &after, by, at));
        events
    }
}

/// What changed between two views, as semantic events: removals in the old
/// view's order, then arrivals, list changes and moves in the new view's order
/// (pending first, then live). The views may be whole, or hold only the
/// entries of the users a change touched: every entry left out must have
/// stayed put (same list, same item), which is all the rank below needs.
///
/// A move is told apart from an index shift by the item's Yjs id: Yjs moves by
/// delete + insert, so an entry whose item is unchanged did not move, however
/// its index shifted. A re-inserted entry counts as moved when its place among
/// the entries that stayed put changed (a delete and re-insert at the same
/// place is no move).
fn semantic_changes(before: &[TrackedEntry], after: &[TrackedEntry], by: &str, at: i64) -> Vec<QueueEvent> {
    let old: HashMap<&str, &TrackedEntry> = before.iter().map(|e| (e.entry.user_id.as_str(), e)).collect();
    let new: HashMap<&str, &TrackedEntry> = after.iter().map(|e| (e.entry.user_id.as_str(), e)).collect();
    let stayed_put: HashSet<&str> = after
        .iter()
        .filter(|a| old.get(a.entry.user_id.as_str()).is_some_and(|b| b.list == a.list && b.item == a.item))
        .map(|a| a.entry.user_id.as_str())
        .collect();
    // Place among the entries that stayed put: its index less the entries
    // before it that did not (all of which the views hold).
    let rank = |view: &[TrackedEntry], of: &TrackedEntry| {
        of.index
            - view
                .iter()
                .filter(|e| e.list == of.list && e.index < of.index && !stayed_put.contains(e.entry.user_id.as_str()))
                .count()
    };
    let by = by.to_owned();
    let mut events = Vec::new();
    for b in before {
        if !new.contains_key(b.entry.user_id.as_str()) {
            events.push(QueueEvent::ParticipantRemoved {
                user_id: b.entry.user_id.clone(),
                list: b.list,
                by: by.clone(),
                at,
            });
        }
    }
    for a in after {
        let user_id = a.entry.user_id.clone();
        match old.get(a.entry.user_id.as_str()) {
            None => events.push(QueueEvent::ParticipantQueued {
                user_id,
                name: a.entry.name.clone(),
                list: a.list,
                index: a.index,
                by: by.clone(),
                at,
            }),
            Some(b) if b.list != a.list => events.push(match a.list {
                QueueList::Live => QueueEvent::ParticipantPromoted { user_id, by: by.clone(), at },
                QueueList::Pending => QueueEvent::ParticipantSentBack { user_id, by: by.clone(), at },
            }),
            Some(b) if b.item != a.item && rank(before, b) != rank(after, a) => {
                events.push(QueueEvent::ParticipantMoved {
                    user_id,
                    list: a.list,
                    from: b.index,
                    to: a.index,
                    by: by.clone(),
                    at,
                });
            }
            Some(_) => {}
        }
    }
    events
}

impl Aggregate for Queue {
    crate::decided::decided_aggregate!("queue", QueueCommand, QueueEvent, QueueError);

    fn apply(&mut self, event: QueueEvent) {
        if let QueueEvent::UpdateApplied { update, .. } = event {
            let applied = BASE64
                .decode(update)
                .map_err(|_| QueueError::MalformedUpdate)
                .and_then(|bytes| self.doc.apply_update(&bytes));
            // Every recorded update was integrated once before it was recorded.
            // Should a stored one be corrupt anyway, release builds skip it
            // rather than make the whole stream unloadable.
            debug_assert!(applied.is_ok(), "a recorded queue update failed to apply: {applied:?}");
        }
    }
}

#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod tests;
