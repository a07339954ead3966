//! The event room: who is here, who is on stage, whether it is recording.
//!
//! Presence is kept per connection (a browser tab, or a LiveKit participant)
//! and shown per user: one user with three tabs is one entry with
//! `connections: 3`. A user is `online` while connected and heartbeating,
//! `away` once a sweep finds no heartbeat from any of their connections for
//! the away timeout, `offline` when their last connection closes, and is
//! forgotten by a sweep once unseen for the forget timeout. Timeouts come in
//! the `Sweep` command so that configuration stays outside the domain.
//!
//! Only WebSockets heartbeat. A LiveKit participant has no socket here: it
//! is present from `participant_joined` until `participant_left` (LiveKit
//! tells us when it leaves), so a user with a LiveKit connection never goes
//! away by the heartbeat rule.

use std::collections::BTreeMap;

use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// How a connection reaches the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// A WebSocket on this service; it cannot outlive the process.
    WebSocket,
    /// A LiveKit participant, known from webhooks; outlives our restarts.
    LiveKit,
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The client closed it, or the socket failed.
    Closed,
    /// The service restarted while it was open.
    Lost,
    /// LiveKit reported the participant left.
    LeftLiveKit,
    /// The client did not read its snapshots fast enough and was dropped.
    TooSlow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Online,
    Away,
    Offline,
}

/// The room's recording as its snapshot shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingInfo {
    pub session_id: String,
    pub status: RecordingStatus,
    /// When the recording started; while `starting`, when it was requested.
    pub started_at: i64,
}

/// Where the room's recording is, as a stage manager needs to know: the
/// start accepted but nothing captured yet, capturing, or being stopped.
/// After the stop the snapshot shows no recording (the clips follow).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingStatus {
    Starting,
    Recording,
    Stopping,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub user_id: String,
    pub kind: ConnectionKind,
    pub opened_at: i64,
    pub last_heartbeat: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPresence {
    pub name: String,
    /// Last connect, heartbeat or disconnect of any of the user's connections.
    pub last_seen: i64,
    /// Set by a sweep, cleared by the next heartbeat or connection.
    pub away: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRoom {
    pub connections: BTreeMap<String, Connection>,
    pub users: BTreeMap<String, UserPresence>,
    /// User id → when they entered the stage.
    pub stage: BTreeMap<String, i64>,
    pub recording: Option<RecordingInfo>,
    /// LiveKit webhook deliveries applied in the last
    /// [`LIVEKIT_DELIVERY_MEMORY_MS`] (delivery id → when), so that a
    /// redelivery, even one racing the first or arriving after a crash,
    /// changes nothing: the check and the effect are one append.
    #[serde(default)]
    pub livekit_deliveries: BTreeMap<String, i64>,
}

/// How long a room remembers a LiveKit delivery id (LiveKit retries for
/// minutes; the contract asks for at least 24 h).
pub const LIVEKIT_DELIVERY_MEMORY_MS: i64 = 48 * 3600 * 1000;

/// Serialisable so that a node can hand a command to the room's owner
/// (several nodes: webhooks and the recording saga run anywhere).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RoomCommand {
    Connect {
        connection_id: String,
        /// The client's own id (`_pk`); may repeat across sockets.
        client_id: Option<String>,
        user_id: String,
        name: String,
        kind: ConnectionKind,
        at: i64,
    },
    Heartbeat {
        connection_id: String,
        at: i64,
    },
    Disconnect {
        connection_id: String,
        reason: CloseReason,
        at: i64,
    },
    /// Closes every connection of `kind`: after a restart no socket survives.
    DropConnections {
        kind: ConnectionKind,
        at: i64,
    },
    Sweep {
        at: i64,
        away_after_ms: i64,
        forget_after_ms: i64,
    },
    EnterStage {
        user_id: String,
        at: i64,
    },
    ExitStage {
        user_id: String,
        at: i64,
    },
    SetRecording {
        recording: Option<RecordingInfo>,
        at: i64,
    },
    /// A LiveKit webhook's `command` (a connect or disconnect), applied at
    /// most once per `delivery_id`.
    LiveKitDelivery {
        delivery_id: String,
        command: Box<RoomCommand>,
        at: i64,
    },
}

impl RoomCommand {
    /// The command's name, for the audit metadata of its events.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "Connect",
            Self::Heartbeat { .. } => "Heartbeat",
            Self::Disconnect { .. } => "Disconnect",
            Self::DropConnections { .. } => "DropConnections",
            Self::Sweep { .. } => "Sweep",
            Self::EnterStage { .. } => "EnterStage",
            Self::ExitStage { .. } => "ExitStage",
            Self::SetRecording { .. } => "SetRecording",
            Self::LiveKitDelivery { .. } => "LiveKitDelivery",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RoomEvent {
    ConnectionOpened {
        connection_id: String,
        client_id: Option<String>,
        user_id: String,
        name: String,
        kind: ConnectionKind,
        at: i64,
    },
    HeartbeatReceived {
        connection_id: String,
        user_id: String,
        at: i64,
    },
    ConnectionClosed {
        connection_id: String,
        user_id: String,
        reason: CloseReason,
        at: i64,
    },
    UserWentAway {
        user_id: String,
        at: i64,
    },
    UserForgotten {
        user_id: String,
        at: i64,
    },
    StageEntered {
        user_id: String,
        at: i64,
    },
    StageExited {
        user_id: String,
        at: i64,
    },
    RecordingChanged {
        recording: Option<RecordingInfo>,
        at: i64,
    },
    /// A LiveKit webhook delivery was applied (its effects are the events
    /// before it in the same append).
    LiveKitDeliveryApplied {
        delivery_id: String,
        at: i64,
    },
}

impl RoomEvent {
    /// Whether the event can change what a snapshot shows. A heartbeat from an
    /// online user only moves `lastSeen`, which snapshots may show late.
    pub fn changes_snapshot(&self, before: &EventRoom) -> bool {
        match self {
            RoomEvent::HeartbeatReceived { user_id, .. } => before.users.get(user_id).is_some_and(|u| u.away),
            RoomEvent::LiveKitDeliveryApplied { .. } => false,
            _ => true,
        }
    }

    pub fn at(&self) -> i64 {
        match self {
            RoomEvent::ConnectionOpened { at, .. }
            | RoomEvent::HeartbeatReceived { at, .. }
            | RoomEvent::ConnectionClosed { at, .. }
            | RoomEvent::UserWentAway { at, .. }
            | RoomEvent::UserForgotten { at, .. }
            | RoomEvent::StageEntered { at, .. }
            | RoomEvent::StageExited { at, .. }
            | RoomEvent::RecordingChanged { at, .. }
            | RoomEvent::LiveKitDeliveryApplied { at, .. } => *at,
        }
    }
}

impl DomainEvent for RoomEvent {
    fn event_type(&self) -> String {
        match self {
            RoomEvent::ConnectionOpened { .. } => "ConnectionOpened",
            RoomEvent::HeartbeatReceived { .. } => "HeartbeatReceived",
            RoomEvent::ConnectionClosed { .. } => "ConnectionClosed",
            RoomEvent::UserWentAway { .. } => "UserWentAway",
            RoomEvent::UserForgotten { .. } => "UserForgotten",
            RoomEvent::StageEntered { .. } => "StageEntered",
            RoomEvent::StageExited { .. } => "StageExited",
            RoomEvent::RecordingChanged { .. } => "RecordingChanged",
            RoomEvent::LiveKitDeliveryApplied { .. } => "LiveKitDeliveryApplied",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("connection {0} is not open in this room")]
    UnknownConnection(String),
    #[error("connection {0} is already open")]
    DuplicateConnection(String),
    #[error("a LiveKit delivery cannot wrap another")]
    NestedDelivery,
}

impl EventRoom {
    /// Open connections of `user_id`.
    pub fn connection_count(&self, user_id: &str) -> usize {
        self.connections.values().filter(|c| c.user_id == user_id).count()
    }

    pub fn status_of(&self, user_id: &str) -> PresenceStatus {
        match self.users.get(user_id) {
            Some(_) if self.connection_count(user_id) == 0 => PresenceStatus::Offline,
            Some(user) if user.away => PresenceStatus::Away,
            Some(_) => PresenceStatus::Online,
            None => PresenceStatus::Offline,
        }
    }

    /// The earliest time a sweep could change something, if any: the next
    /// user to go away or to be forgotten. Lets timers sleep until then.
    pub fn next_deadline(&self, away_after_ms: i64, forget_after_ms: i64) -> Option<i64> {
        self.users
            .iter()
            .filter_map(|(user_id, user)| match self.status_of(user_id) {
                PresenceStatus::Online if self.in_livekit(user_id) => None,
                PresenceStatus::Online => self.last_heartbeat_of(user_id).map(|t| t + away_after_ms),
                PresenceStatus::Away => None,
                PresenceStatus::Offline => Some(user.last_seen + forget_after_ms),
            })
            .min()
    }

    /// Whether `user_id` has a LiveKit connection: present until LiveKit
    /// says they left, whatever their sockets do.
    fn in_livekit(&self, user_id: &str) -> bool {
        self.connections.values().any(|c| c.user_id == user_id && c.kind == ConnectionKind::LiveKit)
    }

    fn last_heartbeat_of(&self, user_id: &str) -> Option<i64> {
        self.connections.values().filter(|c| c.user_id == user_id).map(|c| c.last_heartbeat).max()
    }

    fn sweep_events(&self, at: i64, away_after_ms: i64, forget_after_ms: i64) -> Vec<RoomEvent> {
        let mut events = Vec::new();
        for (user_id, user) in &self.users {
            match self.status_of(user_id) {
                PresenceStatus::Online if self.in_livekit(user_id) => {}
                PresenceStatus::Online => {
                    let silent_since = self.last_heartbeat_of(user_id).unwrap_or(user.last_seen);
                    if at - silent_since >= away_after_ms {
                        events.push(RoomEvent::UserWentAway { user_id: user_id.clone(), at });
                    }
                }
                PresenceStatus::Offline if at - user.last_seen >= forget_after_ms => {
                    events.push(RoomEvent::UserForgotten { user_id: user_id.clone(), at });
                }
                _ => {}
            }
        }
        events
    }

    /// The events `command` yields against this state, not yet applied:
    /// what `handle` writes. The room actor uses it to apply events one at
    /// a time without cloning the state per command.
    pub fn decide(&self, command: RoomCommand) -> Result<Vec<RoomEvent>, RoomError> {
        Ok(match command {
            RoomCommand::Connect { connection_id, client_id, user_id, name, kind, at } => {
                if let Some(existing) = self.connections.get(&connection_id) {
                    // LiveKit redelivers joins; the same participant is not
                    // a second connection.
                    if existing.user_id == user_id && kind == ConnectionKind::LiveKit {
                        return Ok(vec![]);
                    }
                    return Err(RoomError::DuplicateConnection(connection_id));
                }
                vec![RoomEvent::ConnectionOpened { connection_id, client_id, user_id, name, kind, at }]
            }
            RoomCommand::Heartbeat { connection_id, at } => {
                let connection =
                    self.connections.get(&connection_id).ok_or(RoomError::UnknownConnection(connection_id.clone()))?;
                vec![RoomEvent::HeartbeatReceived { user_id: connection.user_id.clone(), connection_id, at }]
            }
            RoomCommand::Disconnect { connection_id, reason, at } => match self.connections.get(&connection_id) {
                // Closing twice (socket error then close) is not an error.
                None => vec![],
                Some(connection) => {
                    vec![RoomEvent::ConnectionClosed { user_id: connection.user_id.clone(), connection_id, reason, at }]
                }
            },
            RoomCommand::DropConnections { kind, at } => self
                .connections
                .iter()
                .filter(|(_, c)| c.kind == kind)
                .map(|(id, c)| RoomEvent::ConnectionClosed {
                    connection_id: id.clone(),
                    user_id: c.user_id.clone(),
                    reason: CloseReason::Lost,
                    at,
                })
                .collect(),
            RoomCommand::Sweep { at, away_after_ms, forget_after_ms } => {
                self.sweep_events(at, away_after_ms, forget_after_ms)
            }
            RoomCommand::EnterStage { user_id, at } => {
                if self.stage.contains_key(&user_id) {
                    vec![]
                } else {
                    vec![RoomEvent::StageEntered { user_id, at }]
                }
            }
            RoomCommand::ExitStage { user_id, at } => {
                if self.stage.contains_key(&user_id) {
                    vec![RoomEvent::StageExited { user_id, at }]
                } else {
                    vec![]
                }
            }
            RoomCommand::LiveKitDelivery { delivery_id, command, at } => {
                if self.livekit_deliveries.contains_key(&delivery_id) {
                    return Ok(vec![]);
                }
                if matches!(*command, RoomCommand::LiveKitDelivery { .. }) {
                    return Err(RoomError::NestedDelivery);
                }
                let mut events = self.decide(*command)?;
                events.push(RoomEvent::LiveKitDeliveryApplied { delivery_id, at });
                events
            }
            RoomCommand::SetRecording { recording, at } => {
                if self.recording == recording {
                    vec![]
                } else {
                    vec![RoomEvent::RecordingChanged { recording, at }]
                }
            }
        })
    }
}

impl Aggregate for EventRoom {
    crate::decided::decided_aggregate!("room", RoomCommand, RoomEvent, RoomError);

    fn apply(&mut self, event: RoomEvent) {
        match event {
            RoomEvent::ConnectionOpened { connection_id, user_id, name, kind, at, .. } => {
                self.connections.insert(
                    connection_id,
                    Connection { user_id: user_id.clone(), kind, opened_at: at, last_heartbeat: at },
                );
                let user = self.users.entry(user_id).or_insert(UserPresence {
                    name: name.clone(),
                    last_seen: at,
                    away: false,
                });
                user.name = name;
                user.last_seen = at;
                user.away = false;
            }
            RoomEvent::HeartbeatReceived { connection_id, user_id, at } => {
                if let Some(connection) = self.connections.get_mut(&connection_id) {
                    connection.last_heartbeat = at;
                }
                if let Some(user) = self.users.get_mut(&user_id) {
                    user.last_seen = at;
                    user.away = false;
                }
            }
            RoomEvent::ConnectionClosed { connection_id, user_id, at, .. } => {
                self.connections.remove(&connection_id);
                if let Some(user) = self.users.get_mut(&user_id) {
                    user.last_seen = user.last_seen.max(at);
                    if self.connections.values().all(|c| c.user_id != user_id) {
                        user.away = false;
                    }
                }
            }
            RoomEvent::UserWentAway { user_id, .. } => {
                if let Some(user) = self.users.get_mut(&user_id) {
                    user.away = true;
                }
            }
            RoomEvent::UserForgotten { user_id, .. } => {
                self.users.remove(&user_id);
            }
            RoomEvent::StageEntered { user_id, at } => {
                self.stage.insert(user_id, at);
            }
            RoomEvent::StageExited { user_id, .. } => {
                self.stage.remove(&user_id);
            }
            RoomEvent::RecordingChanged { recording, .. } => {
                self.recording = recording;
            }
            RoomEvent::LiveKitDeliveryApplied { delivery_id, at } => {
                self.livekit_deliveries.retain(|_, seen| at - *seen < LIVEKIT_DELIVERY_MEMORY_MS);
                self.livekit_deliveries.insert(delivery_id, at);
            }
        }
    }
}

/// The room as clients see it: the `snapshot` frame of the public contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomSnapshot {
    pub event_id: String,
    pub version: u64,
    pub presence: Vec<PresenceEntry>,
    pub stage: Vec<StageEntry>,
    pub recording: Option<RecordingInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEntry {
    pub user_id: String,
    pub name: String,
    pub status: PresenceStatus,
    pub connections: usize,
    pub last_seen: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageEntry {
    pub user_id: String,
    pub since: i64,
}

impl EventRoom {
    pub fn snapshot(&self, event_id: &str, version: u64) -> RoomSnapshot {
        RoomSnapshot {
            event_id: event_id.to_owned(),
            version,
            presence: self
                .users
                .iter()
                .map(|(user_id, user)| PresenceEntry {
                    user_id: user_id.clone(),
                    name: user.name.clone(),
                    status: self.status_of(user_id),
                    connections: self.connection_count(user_id),
                    last_seen: user.last_seen,
                })
                .collect(),
            stage: self
                .stage
                .iter()
                .map(|(user_id, since)| StageEntry { user_id: user_id.clone(), since: *since })
                .collect(),
            recording: self.recording.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
