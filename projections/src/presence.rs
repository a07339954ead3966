//! Presence sessions and stage intervals of event rooms.
//!
//! A session is one connection's life: `(event, connection, user, kind,
//! connected_at, disconnected_at?)`. A stage interval is one stay on stage:
//! `(event, user, entered_at, exited_at?)`. Heartbeats and sweeps change
//! neither and are ignored.
//!
//! [`Writes::compact`] turns a batch's changes into their net effect as four
//! set-wise statements (close, then insert, per table), so that a batch costs
//! a few multi-row statements instead of one statement per change, with
//! exactly the rows the changes applied one by one would leave.

use std::collections::HashMap;

use eventuall_domain::room::{CloseReason, ConnectionKind, RoomEvent};

use crate::RowChange;

fn kind_name(kind: ConnectionKind) -> &'static str {
    match kind {
        ConnectionKind::WebSocket => "websocket",
        ConnectionKind::LiveKit => "livekit",
    }
}

fn reason_name(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Closed => "closed",
        CloseReason::Lost => "lost",
        CloseReason::LeftLiveKit => "left_livekit",
        CloseReason::TooSlow => "too_slow",
    }
}

/// The row changes one room event implies for room `event_id`.
pub fn changes(event_id: &str, event: &RoomEvent) -> Vec<RowChange> {
    match event {
        RoomEvent::ConnectionOpened { connection_id, user_id, kind, at, .. } => vec![RowChange::SessionOpened {
            event_id: event_id.to_owned(),
            connection_id: connection_id.clone(),
            user_id: user_id.clone(),
            kind: kind_name(*kind).to_owned(),
            connected_at: *at,
        }],
        RoomEvent::ConnectionClosed { connection_id, reason, at, .. } => vec![RowChange::SessionClosed {
            event_id: event_id.to_owned(),
            connection_id: connection_id.clone(),
            disconnected_at: *at,
            reason: reason_name(*reason).to_owned(),
        }],
        RoomEvent::StageEntered { user_id, at } => vec![RowChange::StageIntervalOpened {
            event_id: event_id.to_owned(),
            user_id: user_id.clone(),
            entered_at: *at,
        }],
        RoomEvent::StageExited { user_id, at } => vec![RowChange::StageIntervalClosed {
            event_id: event_id.to_owned(),
            user_id: user_id.clone(),
            exited_at: *at,
        }],
        RoomEvent::HeartbeatReceived { .. }
        | RoomEvent::UserWentAway { .. }
        | RoomEvent::UserForgotten { .. }
        | RoomEvent::RecordingChanged { .. }
        | RoomEvent::LiveKitDeliveryApplied { .. } => vec![],
    }
}

/// Room event types that never change these rows: the runner skips them
/// without decoding (they are most of a room's log: heartbeats).
pub const IGNORED_EVENT_TYPES: [&str; 5] =
    ["HeartbeatReceived", "UserWentAway", "UserForgotten", "RecordingChanged", "LiveKitDeliveryApplied"];

/// A session row to insert unless its `(event_id, connection_id)` exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub event_id: String,
    pub connection_id: String,
    pub user_id: String,
    pub kind: String,
    pub connected_at: i64,
    pub disconnected_at: Option<i64>,
    pub close_reason: Option<String>,
}

/// Close session `(event_id, connection_id)` if it exists and is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionClose {
    pub event_id: String,
    pub connection_id: String,
    pub disconnected_at: i64,
    pub reason: String,
}

/// A stage interval to insert unless `(event_id, user_id, entered_at)` exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageRow {
    pub event_id: String,
    pub user_id: String,
    pub entered_at: i64,
    pub exited_at: Option<i64>,
}

/// Close every open stage interval of `(event_id, user_id)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageClose {
    pub event_id: String,
    pub user_id: String,
    pub exited_at: i64,
}

/// The net effect of a sequence of [`RowChange`]s, to be applied in field
/// order: `session_closes`, `session_inserts`, `stage_closes`,
/// `stage_inserts`. Each list touches each row group (a connection; a user's
/// stage intervals) at most once, so a list is one multi-row statement.
///
/// Why it is exact: changes to different groups touch different rows, so
/// only the order within a group matters. Within a group, the rows that
/// existed before the batch are closed by the group's *first* close (later
/// closes find them closed) and never re-inserted (inserts are
/// insert-if-absent); a row the batch inserts is closed by the first close
/// that follows its insert. Closing first and inserting second reproduces
/// both: the close statement only meets pre-existing rows, and each insert
/// carries its own close.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Writes {
    pub session_closes: Vec<SessionClose>,
    pub session_inserts: Vec<SessionRow>,
    pub stage_closes: Vec<StageClose>,
    pub stage_inserts: Vec<StageRow>,
}

impl Writes {
    pub fn is_empty(&self) -> bool {
        self.session_closes.is_empty()
            && self.session_inserts.is_empty()
            && self.stage_closes.is_empty()
            && self.stage_inserts.is_empty()
    }

    /// The net effect of `changes`, in order.
    pub fn compact(changes: impl IntoIterator<Item = RowChange>) -> Self {
        #[derive(Default)]
        struct SessionGroup {
            first_close: Option<(i64, String)>,
            insert: Option<SessionRow>,
        }
        #[derive(Default)]
        struct StageGroup {
            first_exit: Option<i64>,
            inserts: Vec<StageRow>,
        }
        // Groups in order of first appearance, so the output is deterministic.
        let mut sessions: Vec<((String, String), SessionGroup)> = Vec::new();
        let mut session_index: HashMap<(String, String), usize> = HashMap::new();
        let mut stages: Vec<((String, String), StageGroup)> = Vec::new();
        let mut stage_index: HashMap<(String, String), usize> = HashMap::new();
        fn group<'g, G: Default>(
            groups: &'g mut Vec<((String, String), G)>,
            index: &mut HashMap<(String, String), usize>,
            key: (String, String),
        ) -> &'g mut G {
            let next = groups.len();
            let i = *index.entry(key.clone()).or_insert(next);
            if i == next {
                groups.push((key, G::default()));
            }
            &mut groups[i].1
        }
        for change in changes {
            match change {
                RowChange::SessionOpened { event_id, connection_id, user_id, kind, connected_at } => {
                    let g = group(&mut sessions, &mut session_index, (event_id.clone(), connection_id.clone()));
                    g.insert.get_or_insert(SessionRow {
                        event_id,
                        connection_id,
                        user_id,
                        kind,
                        connected_at,
                        disconnected_at: None,
                        close_reason: None,
                    });
                }
                RowChange::SessionClosed { event_id, connection_id, disconnected_at, reason } => {
                    let g = group(&mut sessions, &mut session_index, (event_id, connection_id));
                    if let Some(row) = g.insert.as_mut().filter(|r| r.disconnected_at.is_none()) {
                        row.disconnected_at = Some(disconnected_at);
                        row.close_reason = Some(reason.clone());
                    }
                    g.first_close.get_or_insert((disconnected_at, reason));
                }
                RowChange::StageIntervalOpened { event_id, user_id, entered_at } => {
                    let g = group(&mut stages, &mut stage_index, (event_id.clone(), user_id.clone()));
                    if !g.inserts.iter().any(|r| r.entered_at == entered_at) {
                        g.inserts.push(StageRow { event_id, user_id, entered_at, exited_at: None });
                    }
                }
                RowChange::StageIntervalClosed { event_id, user_id, exited_at } => {
                    let g = group(&mut stages, &mut stage_index, (event_id, user_id));
                    for row in g.inserts.iter_mut().filter(|r| r.exited_at.is_none()) {
                        row.exited_at = Some(exited_at);
                    }
                    g.first_exit.get_or_insert(exited_at);
                }
            }
        }
        let mut writes = Writes::default();
        for ((event_id, connection_id), g) in sessions {
            if let Some((disconnected_at, reason)) = g.first_close {
                writes.session_closes.push(SessionClose { event_id, connection_id, disconnected_at, reason });
            }
            writes.session_inserts.extend(g.insert);
        }
        for ((event_id, user_id), g) in stages {
            if let Some(exited_at) = g.first_exit {
                writes.stage_closes.push(StageClose { event_id, user_id, exited_at });
            }
            writes.stage_inserts.extend(g.inserts);
        }
        writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_open_and_close_sessions() {
        let opened = RoomEvent::ConnectionOpened {
            connection_id: "c1".into(),
            client_id: Some("pk".into()),
            user_id: "alice".into(),
            name: "Alice".into(),
            kind: ConnectionKind::WebSocket,
            at: 10,
        };
        assert_eq!(
            changes("launch", &opened),
            vec![RowChange::SessionOpened {
                event_id: "launch".into(),
                connection_id: "c1".into(),
                user_id: "alice".into(),
                kind: "websocket".into(),
                connected_at: 10
            }]
        );
        let closed = RoomEvent::ConnectionClosed {
            connection_id: "c1".into(),
            user_id: "alice".into(),
            reason: CloseReason::Lost,
            at: 20,
        };
        assert_eq!(
            changes("launch", &closed),
            vec![RowChange::SessionClosed {
                event_id: "launch".into(),
                connection_id: "c1".into(),
                disconnected_at: 20,
                reason: "lost".into()
            }]
        );
    }

    #[test]
    fn stage_moves_open_and_close_intervals() {
        let entered = RoomEvent::StageEntered { user_id: "bob".into(), at: 5 };
        assert_eq!(
            changes("e", &entered),
            vec![RowChange::StageIntervalOpened { event_id: "e".into(), user_id: "bob".into(), entered_at: 5 }]
        );
        let exited = RoomEvent::StageExited { user_id: "bob".into(), at: 9 };
        assert_eq!(
            changes("e", &exited),
            vec![RowChange::StageIntervalClosed { event_id: "e".into(), user_id: "bob".into(), exited_at: 9 }]
        );
    }

    #[test]
    fn heartbeats_change_no_rows() {
        let beat = RoomEvent::HeartbeatReceived { connection_id: "c".into(), user_id: "u".into(), at: 1 };
        assert!(changes("e", &beat).is_empty());
    }

    /// A session row: connected at, disconnected at, close reason.
    type SessionRow = (i64, Option<i64>, Option<String>);

    /// The tables as a model: sessions by (event, connection), stage rows by
    /// (event, user, entered_at).
    #[derive(Clone, Debug, Default, PartialEq)]
    struct Model {
        sessions: std::collections::BTreeMap<(String, String), SessionRow>,
        stages: std::collections::BTreeMap<(String, String, i64), Option<i64>>,
    }

    impl Model {
        /// One change as the live statements apply it.
        fn apply_one(&mut self, change: &RowChange) {
            match change.clone() {
                RowChange::SessionOpened { event_id, connection_id, connected_at, .. } => {
                    self.sessions.entry((event_id, connection_id)).or_insert((connected_at, None, None));
                }
                RowChange::SessionClosed { event_id, connection_id, disconnected_at, reason } => {
                    if let Some(row) = self.sessions.get_mut(&(event_id, connection_id))
                        && row.1.is_none()
                    {
                        *row = (row.0, Some(disconnected_at), Some(reason));
                    }
                }
                RowChange::StageIntervalOpened { event_id, user_id, entered_at } => {
                    self.stages.entry((event_id, user_id, entered_at)).or_insert(None);
                }
                RowChange::StageIntervalClosed { event_id, user_id, exited_at } => {
                    for ((e, u, _), exited) in self.stages.iter_mut() {
                        if *e == event_id && *u == user_id && exited.is_none() {
                            *exited = Some(exited_at);
                        }
                    }
                }
            }
        }

        /// Compacted writes as the runner's set-wise statements apply them.
        fn apply_writes(&mut self, writes: &Writes) {
            for c in &writes.session_closes {
                self.apply_one(&RowChange::SessionClosed {
                    event_id: c.event_id.clone(),
                    connection_id: c.connection_id.clone(),
                    disconnected_at: c.disconnected_at,
                    reason: c.reason.clone(),
                });
            }
            for r in &writes.session_inserts {
                self.sessions.entry((r.event_id.clone(), r.connection_id.clone())).or_insert((
                    r.connected_at,
                    r.disconnected_at,
                    r.close_reason.clone(),
                ));
            }
            for c in &writes.stage_closes {
                self.apply_one(&RowChange::StageIntervalClosed {
                    event_id: c.event_id.clone(),
                    user_id: c.user_id.clone(),
                    exited_at: c.exited_at,
                });
            }
            for r in &writes.stage_inserts {
                self.stages.entry((r.event_id.clone(), r.user_id.clone(), r.entered_at)).or_insert(r.exited_at);
            }
        }
    }

    /// A deterministic random sequence over few keys, so that every
    /// interleaving (re-opens, double closes, closes before opens) occurs.
    fn random_changes(seed: &mut u64, n: usize) -> Vec<RowChange> {
        let mut next = || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        };
        (0..n)
            .map(|_| {
                let r = next();
                let event_id = format!("e{}", r % 2);
                let key = format!("k{}", (r >> 8) % 3);
                let at = ((r >> 16) % 5) as i64;
                match (r >> 32) % 4 {
                    0 => RowChange::SessionOpened {
                        event_id,
                        connection_id: key,
                        user_id: "u".into(),
                        kind: "websocket".into(),
                        connected_at: at,
                    },
                    1 => RowChange::SessionClosed {
                        event_id,
                        connection_id: key,
                        disconnected_at: at,
                        reason: format!("r{at}"),
                    },
                    2 => RowChange::StageIntervalOpened { event_id, user_id: key, entered_at: at },
                    _ => RowChange::StageIntervalClosed { event_id, user_id: key, exited_at: at },
                }
            })
            .collect()
    }

    #[test]
    fn compacted_writes_leave_exactly_the_rows_of_one_by_one_changes() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2_000 {
            // Some rows exist before the batch, open or closed.
            let mut before = Model::default();
            for change in random_changes(&mut seed, 6) {
                before.apply_one(&change);
            }
            let batch = random_changes(&mut seed, 12);
            let mut one_by_one = before.clone();
            for change in &batch {
                one_by_one.apply_one(change);
            }
            let mut compacted = before.clone();
            compacted.apply_writes(&Writes::compact(batch.clone()));
            assert_eq!(compacted, one_by_one, "batch {batch:?} on {before:?}");
        }
    }

    #[test]
    fn an_open_and_close_in_one_batch_is_one_closed_insert() {
        let writes = Writes::compact([
            RowChange::SessionOpened {
                event_id: "e".into(),
                connection_id: "c".into(),
                user_id: "u".into(),
                kind: "websocket".into(),
                connected_at: 1,
            },
            RowChange::SessionClosed {
                event_id: "e".into(),
                connection_id: "c".into(),
                disconnected_at: 2,
                reason: "closed".into(),
            },
        ]);
        assert_eq!(writes.session_inserts.len(), 1);
        assert_eq!(writes.session_inserts[0].disconnected_at, Some(2));
        assert_eq!(writes.session_closes.len(), 1, "a pre-existing open row is closed too");
    }
}
