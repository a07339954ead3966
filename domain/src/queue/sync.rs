//! The y-websocket protocol (as spoken by `y-websocket` and `y-partyserver`
//! providers) without sockets: bytes in, bytes out.
//!
//! The server's WebSocket task feeds each binary frame of a connection to its
//! [`Session`] and routes the [`Outcome`]: `replies` go back to that
//! connection, `update` becomes a `QueueCommand::ApplyClientUpdate` (and is
//! broadcast only once its events are stored), `awareness` goes to every
//! connection of the room, the sender included, because y-websocket clients
//! close an idle socket after 30 s unless their own awareness renewals are
//! echoed back.
//!
//! Wire format (y-protocols PROTOCOL.md): a frame is `varUint(type)` then the
//! payload; 0 Sync (`0` SyncStep1, `1` SyncStep2, `2` Update), 1 Awareness,
//! 2 Auth, 3 QueryAwareness. We send exactly one message per frame, because
//! y-websocket reads only the first message of a frame; we accept frames with
//! several messages, as yrs's own protocol writes them.
//!
//! Awareness (presence, cursors) lives in one [`AwarenessRegistry`] per room.
//! Unlike y-websocket-server it has no 30 s timeout: y-partyserver clients
//! never renew their state, so a clock-based sweep would hide present users.
//! States leave when the connection that announced them closes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::protocol::{MSG_AUTH, MSG_AWARENESS, MSG_QUERY_AWARENESS, MSG_SYNC, PERMISSION_DENIED};
use yrs::sync::{AwarenessUpdate, Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Update};

use super::Role;
use super::document::{QueueDoc, guarded};

/// Yjs client ids are JavaScript safe integers: below 2^53.
const MAX_CLIENT_ID: u64 = 1 << 53;

/// How awareness encodes "this client is gone".
const NULL_STATE: &str = "null";

/// A frame the server cannot read. The connection may stay open; the frame
/// is ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("empty frame")]
    EmptyFrame,
    /// Truncated, an unknown sync step, or bytes yrs cannot decode.
    #[error("malformed y-protocol frame")]
    MalformedFrame,
    #[error("malformed Yjs update in a sync message")]
    MalformedUpdate,
    /// An awareness state that is neither JSON nor `null`: relaying it would
    /// make every client's `JSON.parse` throw.
    #[error("awareness state is not JSON")]
    MalformedAwareness,
}

/// Decodes every message of a frame. Any malformed message fails the frame.
pub fn decode_frame(frame: &[u8]) -> Result<Vec<Message>, SyncError> {
    if frame.is_empty() {
        return Err(SyncError::EmptyFrame);
    }
    let mut reader = Envelope { bytes: frame, at: 0 };
    let mut messages = Vec::new();
    while reader.at < frame.len() {
        let start = reader.at;
        reader.skip_message()?;
        let bytes = &frame[start..reader.at];
        let message = guarded(|| Message::decode_v1(bytes).ok()).ok_or(SyncError::MalformedFrame)?;
        validate(&message)?;
        messages.push(message);
    }
    Ok(messages)
}

/// Encodes one message as one frame.
pub fn encode(message: &Message) -> Vec<u8> {
    message.encode_v1()
}

/// The frame that carries a stored update to clients (`[0, 2, …]`).
pub fn update_frame(update_v1: &[u8]) -> Vec<u8> {
    encode(&Message::Sync(SyncMessage::Update(update_v1.to_vec())))
}

/// The frames a new connection gets first: SyncStep1 with the server's state
/// vector (the client answers with what the server lacks), then all current
/// awareness states, if any, in a frame of their own.
pub fn greeting(doc: &QueueDoc, awareness: &AwarenessRegistry) -> Vec<Vec<u8>> {
    let mut frames = vec![encode(&Message::Sync(SyncMessage::SyncStep1(doc.current_state_vector())))];
    frames.extend(awareness.full_state_frame());
    frames
}

/// What one incoming frame asks of the server.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Frames to send back to this connection only.
    pub replies: Vec<Vec<u8>>,
    /// A moderator's update (v1) for the aggregate; several in one frame are
    /// merged. Never set for participants.
    pub update: Option<Vec<u8>>,
    /// An awareness frame to send to every connection, the sender included.
    pub awareness: Option<Vec<u8>>,
}

/// The protocol state of one connection.
#[derive(Debug, Clone)]
pub struct Session {
    role: Role,
    /// Awareness client ids this connection introduced to the room; their
    /// states are removed when it closes (clients may not say goodbye).
    announced: BTreeSet<u64>,
}

impl Session {
    pub fn new(role: Role) -> Self {
        Session { role, announced: BTreeSet::new() }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The awareness client ids this connection introduced and still owns.
    pub fn announced(&self) -> impl Iterator<Item = u64> + '_ {
        self.announced.iter().copied()
    }

    /// Handles one binary frame from the connection.
    pub fn on_frame(
        &mut self,
        frame: &[u8],
        doc: &QueueDoc,
        awareness: &mut AwarenessRegistry,
    ) -> Result<Outcome, SyncError> {
        let mut outcome = Outcome::default();
        let mut updates = Vec::new();
        let mut changed = BTreeSet::new();
        for message in decode_frame(frame)? {
            match message {
                Message::Sync(SyncMessage::SyncStep1(state_vector)) => {
                    let diff = doc.encode_diff_from(&state_vector);
                    outcome.replies.push(encode(&Message::Sync(SyncMessage::SyncStep2(diff))));
                }
                Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
                    // Read-only connections drop writes (y-protocols' advice);
                    // the client will keep its local change, which the next
                    // server update does not undo, but no one else sees it.
                    if self.role == Role::Moderator && !is_empty_update(&update) {
                        updates.push(update);
                    }
                }
                Message::Awareness(update) => {
                    let applied = awareness.apply(&update);
                    // Clients echo the states of others back to the server;
                    // only ids that were new to the room belong to this
                    // connection, as in y-websocket-server.
                    self.announced.extend(applied.added.iter().copied());
                    for id in &applied.removed {
                        self.announced.remove(id);
                    }
                    changed.extend(applied.all());
                }
                Message::AwarenessQuery => outcome.replies.extend(awareness.full_state_frame()),
                // Auth is server-to-client only; unknown types are extensions
                // we do not speak.
                Message::Auth(_) | Message::Custom(..) => {}
            }
        }
        outcome.update = match updates.len() {
            0 => None,
            1 => updates.pop(),
            _ => Some(yrs::merge_updates_v1(&updates).map_err(|_| SyncError::MalformedUpdate)?),
        };
        outcome.awareness = awareness.frame_for(changed);
        Ok(outcome)
    }

    /// The frame telling the room that this connection's awareness states are
    /// gone (null states with bumped clocks), to broadcast when it closes.
    /// `None` when it announced nothing that is still present.
    pub fn closing_awareness(&self, awareness: &mut AwarenessRegistry) -> Option<Vec<u8>> {
        awareness.remove(self.announced())
    }
}

/// Which client ids an awareness update changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AwarenessChanges {
    /// Had no state before (never seen, or removed earlier).
    pub added: Vec<u64>,
    pub updated: Vec<u64>,
    pub removed: Vec<u64>,
}

impl AwarenessChanges {
    pub fn all(&self) -> impl Iterator<Item = u64> + '_ {
        self.added.iter().chain(&self.updated).chain(&self.removed).copied()
    }
}

/// The awareness states of one room, with y-protocols' clock rules: a state
/// replaces the known one if its clock is higher, and a `null` state with the
/// same clock removes it. Removed clients are remembered (clock only) so that
/// a late, stale state cannot bring them back.
#[derive(Debug, Default, Clone)]
pub struct AwarenessRegistry {
    clients: BTreeMap<u64, ClientState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientState {
    clock: u32,
    /// JSON text; `None` once removed.
    state: Option<Arc<str>>,
}

impl AwarenessRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The JSON state of a present client.
    pub fn state(&self, client_id: u64) -> Option<&str> {
        self.clients.get(&client_id)?.state.as_deref()
    }

    /// Present clients.
    pub fn len(&self) -> usize {
        self.clients.values().filter(|c| c.state.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies an awareness update from any connection.
    pub fn apply(&mut self, update: &AwarenessUpdate) -> AwarenessChanges {
        let mut changes = AwarenessChanges::default();
        let mut incoming: Vec<_> = update.clients.iter().map(|(id, entry)| (id.get(), entry)).collect();
        incoming.sort_unstable_by_key(|(id, _)| *id);
        for (id, entry) in incoming {
            let state = (entry.json.as_ref() != NULL_STATE).then(|| entry.json.clone());
            match self.clients.get_mut(&id) {
                None => {
                    if state.is_some() {
                        changes.added.push(id);
                    }
                    self.clients.insert(id, ClientState { clock: entry.clock, state });
                }
                Some(known) => {
                    let newer = known.clock < entry.clock;
                    let removal = known.clock == entry.clock && state.is_none() && known.state.is_some();
                    if !(newer || removal) {
                        continue;
                    }
                    match (&known.state, &state) {
                        (Some(_), None) => changes.removed.push(id),
                        (None, Some(_)) => changes.added.push(id),
                        (Some(_), Some(_)) => changes.updated.push(id),
                        (None, None) => {}
                    }
                    *known = ClientState { clock: entry.clock, state };
                }
            }
        }
        changes
    }

    /// One awareness frame with every present state, or `None` if nobody is
    /// present (a frame with zero states is noise).
    pub fn full_state_frame(&self) -> Option<Vec<u8>> {
        let present = self.clients.iter().filter(|(_, c)| c.state.is_some()).map(|(id, _)| *id);
        self.frame_for(present)
    }

    /// Removes the states of `client_ids` (the ones still present) by bumping
    /// their clocks with a null state, as a client's own goodbye would, and
    /// returns the frame that tells everyone.
    pub fn remove(&mut self, client_ids: impl IntoIterator<Item = u64>) -> Option<Vec<u8>> {
        let mut removed = Vec::new();
        for id in client_ids {
            if let Some(known) = self.clients.get_mut(&id).filter(|c| c.state.is_some()) {
                known.clock = known.clock.wrapping_add(1);
                known.state = None;
                removed.push(id);
            }
        }
        self.frame_for(removed)
    }

    /// An awareness frame with the current clock and state (or null) of the
    /// given known clients.
    fn frame_for(&self, client_ids: impl IntoIterator<Item = u64>) -> Option<Vec<u8>> {
        let clients: HashMap<ClientID, AwarenessUpdateEntry> = client_ids
            .into_iter()
            .filter_map(|id| {
                let known = self.clients.get(&id)?;
                let json = known.state.clone().unwrap_or_else(|| NULL_STATE.into());
                Some((ClientID::new(id), AwarenessUpdateEntry { clock: known.clock, json }))
            })
            .collect();
        (!clients.is_empty()).then(|| encode(&Message::Awareness(AwarenessUpdate { clients })))
    }
}

fn is_empty_update(update_v1: &[u8]) -> bool {
    Update::decode_v1(update_v1).is_ok_and(|update| update.is_empty())
}

/// Rejects decodable messages whose contents we would choke on later or must
/// not relay.
fn validate(message: &Message) -> Result<(), SyncError> {
    match message {
        Message::Sync(SyncMessage::SyncStep2(update) | SyncMessage::Update(update)) => {
            guarded(|| Update::decode_v1(update).ok()).map(|_| ()).ok_or(SyncError::MalformedUpdate)
        }
        Message::Awareness(update) => {
            let all_json =
                update.clients.values().all(|entry| serde_json::from_str::<serde::de::IgnoredAny>(&entry.json).is_ok());
            if all_json { Ok(()) } else { Err(SyncError::MalformedAwareness) }
        }
        _ => Ok(()),
    }
}

/// Finds where each message of a frame ends. yrs's `MessageReader` stops
/// silently at a truncated message; we want such frames rejected, so the
/// envelope (types and lengths, per PROTOCOL.md) is walked first and each
/// message's exact bytes are then decoded by yrs.
struct Envelope<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Envelope<'a> {
    fn skip_message(&mut self) -> Result<(), SyncError> {
        match self.var_uint()? {
            tag if tag == u64::from(MSG_SYNC) => {
                // SyncStep1, SyncStep2 and Update all carry one byte array.
                if self.var_uint()? > 2 {
                    return Err(SyncError::MalformedFrame);
                }
                self.skip_bytes().map(drop)
            }
            tag if tag == u64::from(MSG_AWARENESS) => {
                let payload = self.skip_bytes()?;
                Envelope { bytes: payload, at: 0 }.check_awareness()
            }
            tag if tag == u64::from(MSG_AUTH) => {
                if self.var_uint()? == u64::from(PERMISSION_DENIED) {
                    self.skip_bytes()?;
                }
                Ok(())
            }
            tag if tag == u64::from(MSG_QUERY_AWARENESS) => Ok(()),
            // yrs reads other tags as "custom": one byte array.
            tag if tag <= u64::from(u8::MAX) => self.skip_bytes().map(drop),
            _ => Err(SyncError::MalformedFrame),
        }
    }

    /// lib0 varUint: 7 bits per byte, least significant first, high bit = more.
    fn var_uint(&mut self) -> Result<u64, SyncError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or(SyncError::MalformedFrame)?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(SyncError::MalformedFrame)
    }

    /// Skips a varByteArray and returns its contents.
    fn skip_bytes(&mut self) -> Result<&'a [u8], SyncError> {
        let len = usize::try_from(self.var_uint()?).map_err(|_| SyncError::MalformedFrame)?;
        let end = self.at.checked_add(len).filter(|end| *end <= self.bytes.len()).ok_or(SyncError::MalformedFrame)?;
        let contents = &self.bytes[self.at..end];
        self.at = end;
        Ok(contents)
    }

    /// An awareness payload: `n × (clientID, clock, JSON)`, nothing after.
    /// Client ids must fit Yjs's 53 bits: yrs would assert (debug) or
    /// silently truncate them (release).
    fn check_awareness(mut self) -> Result<(), SyncError> {
        for _ in 0..self.var_uint()? {
            if self.var_uint()? >= MAX_CLIENT_ID {
                return Err(SyncError::MalformedFrame);
            }
            self.var_uint()?;
            self.skip_bytes()?;
        }
        if self.at == self.bytes.len() { Ok(()) } else { Err(SyncError::MalformedFrame) }
    }
}

#[cfg(test)]
mod tests;
