//! Presence sessions and stage intervals of event rooms.
//!
//! A session is one connection's life: `(event, connection, user, kind,
//! connected_at, disconnected_at?)`. A stage interval is one stay on stage:
//! `(event, user, entered_at, exited_at?)`. Heartbeats and sweeps change
//! neither and are ignored.

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
        | RoomEvent::RecordingChanged { .. } => vec![],
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
}
