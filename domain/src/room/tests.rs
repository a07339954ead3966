//! Given/when/then tests of the event room.

use cqrs_es::test::TestFramework;

use super::*;

const AWAY: i64 = 90_000;
const FORGET: i64 = 86_400_000;

fn room() -> TestFramework<EventRoom> {
    TestFramework::with(())
}

fn opened(connection_id: &str, user_id: &str, at: i64) -> RoomEvent {
    RoomEvent::ConnectionOpened {
        connection_id: connection_id.into(),
        client_id: None,
        user_id: user_id.into(),
        name: user_id.to_uppercase(),
        kind: ConnectionKind::WebSocket,
        at,
    }
}

fn closed(connection_id: &str, user_id: &str, at: i64) -> RoomEvent {
    RoomEvent::ConnectionClosed {
        connection_id: connection_id.into(),
        user_id: user_id.into(),
        reason: CloseReason::Closed,
        at,
    }
}

fn sweep(at: i64) -> RoomCommand {
    RoomCommand::Sweep { at, away_after_ms: AWAY, forget_after_ms: FORGET }
}

fn state_after(events: Vec<RoomEvent>) -> EventRoom {
    let mut room = EventRoom::default();
    for event in events {
        room.apply(event);
    }
    room
}

#[test]
fn connecting_opens_a_connection() {
    room()
        .given_no_previous_events()
        .when(RoomCommand::Connect {
            connection_id: "c1".into(),
            client_id: Some("pk".into()),
            user_id: "alice".into(),
            name: "Alice".into(),
            kind: ConnectionKind::WebSocket,
            at: 10,
        })
        .then_expect_events(vec![RoomEvent::ConnectionOpened {
            connection_id: "c1".into(),
            client_id: Some("pk".into()),
            user_id: "alice".into(),
            name: "Alice".into(),
            kind: ConnectionKind::WebSocket,
            at: 10,
        }]);
}

#[test]
fn three_tabs_of_one_user_are_one_presence_entry_with_three_connections() {
    let state = state_after(vec![opened("c1", "alice", 1), opened("c2", "alice", 2), opened("c3", "alice", 3)]);
    let snapshot = state.snapshot("e", 3);
    assert_eq!(snapshot.presence.len(), 1);
    assert_eq!(snapshot.presence[0].connections, 3);
    assert_eq!(snapshot.presence[0].status, PresenceStatus::Online);
}

#[test]
fn a_user_is_offline_only_when_their_last_connection_closes() {
    let one_left = state_after(vec![opened("c1", "alice", 1), opened("c2", "alice", 2), closed("c1", "alice", 3)]);
    assert_eq!(one_left.status_of("alice"), PresenceStatus::Online);
    let none_left = state_after(vec![opened("c1", "alice", 1), closed("c1", "alice", 3)]);
    assert_eq!(none_left.status_of("alice"), PresenceStatus::Offline);
    let snapshot = none_left.snapshot("e", 2);
    assert_eq!(snapshot.presence[0].connections, 0, "offline users stay listed");
}

#[test]
fn a_heartbeat_is_an_event_of_the_connections_user() {
    room()
        .given(vec![opened("c1", "alice", 1)])
        .when(RoomCommand::Heartbeat { connection_id: "c1".into(), at: 5 })
        .then_expect_events(vec![RoomEvent::HeartbeatReceived {
            connection_id: "c1".into(),
            user_id: "alice".into(),
            at: 5,
        }]);
}

#[test]
fn a_heartbeat_on_an_unknown_connection_is_refused() {
    room()
        .given_no_previous_events()
        .when(RoomCommand::Heartbeat { connection_id: "nope".into(), at: 5 })
        .then_expect_error(RoomError::UnknownConnection("nope".into()));
}

#[test]
fn a_sweep_marks_users_away_after_the_away_timeout_without_heartbeat() {
    room()
        .given(vec![
            opened("c1", "alice", 0),
            opened("c2", "bob", 0),
            RoomEvent::HeartbeatReceived { connection_id: "c2".into(), user_id: "bob".into(), at: 50_000 },
        ])
        .when(sweep(AWAY))
        .then_expect_events(vec![RoomEvent::UserWentAway { user_id: "alice".into(), at: AWAY }]);
}

#[test]
fn a_sweep_before_the_timeout_changes_nothing() {
    room().given(vec![opened("c1", "alice", 0)]).when(sweep(AWAY - 1)).then_expect_events(vec![]);
}

#[test]
fn a_heartbeat_from_an_away_user_makes_them_online_at_once() {
    let state = state_after(vec![
        opened("c1", "alice", 0),
        RoomEvent::UserWentAway { user_id: "alice".into(), at: AWAY },
        RoomEvent::HeartbeatReceived { connection_id: "c1".into(), user_id: "alice".into(), at: AWAY + 1 },
    ]);
    assert_eq!(state.status_of("alice"), PresenceStatus::Online);
}

#[test]
fn only_heartbeats_of_away_users_change_the_snapshot() {
    let online = state_after(vec![opened("c1", "alice", 0)]);
    let heartbeat = RoomEvent::HeartbeatReceived { connection_id: "c1".into(), user_id: "alice".into(), at: 1 };
    assert!(!heartbeat.changes_snapshot(&online));
    let away = state_after(vec![opened("c1", "alice", 0), RoomEvent::UserWentAway { user_id: "alice".into(), at: 1 }]);
    assert!(heartbeat.changes_snapshot(&away));
}

#[test]
fn a_sweep_forgets_offline_users_after_the_forget_timeout() {
    room()
        .given(vec![opened("c1", "alice", 0), closed("c1", "alice", 10)])
        .when(sweep(10 + FORGET))
        .then_expect_events(vec![RoomEvent::UserForgotten { user_id: "alice".into(), at: 10 + FORGET }]);
    let forgotten = state_after(vec![
        opened("c1", "alice", 0),
        closed("c1", "alice", 10),
        RoomEvent::UserForgotten { user_id: "alice".into(), at: 10 + FORGET },
    ]);
    assert!(forgotten.snapshot("e", 3).presence.is_empty());
}

#[test]
fn closing_a_closed_connection_records_nothing() {
    room()
        .given(vec![opened("c1", "alice", 0), closed("c1", "alice", 1)])
        .when(RoomCommand::Disconnect { connection_id: "c1".into(), reason: CloseReason::Closed, at: 2 })
        .then_expect_events(vec![]);
}

#[test]
fn dropping_websocket_connections_leaves_livekit_participants() {
    let livekit = RoomEvent::ConnectionOpened {
        connection_id: "livekit:PA_1".into(),
        client_id: None,
        user_id: "bob".into(),
        name: "Bob".into(),
        kind: ConnectionKind::LiveKit,
        at: 0,
    };
    room()
        .given(vec![opened("c1", "alice", 0), livekit])
        .when(RoomCommand::DropConnections { kind: ConnectionKind::WebSocket, at: 7 })
        .then_expect_events(vec![RoomEvent::ConnectionClosed {
            connection_id: "c1".into(),
            user_id: "alice".into(),
            reason: CloseReason::Lost,
            at: 7,
        }]);
}

#[test]
fn entering_the_stage_is_idempotent() {
    room()
        .given_no_previous_events()
        .when(RoomCommand::EnterStage { user_id: "alice".into(), at: 3 })
        .then_expect_events(vec![RoomEvent::StageEntered { user_id: "alice".into(), at: 3 }]);
    room()
        .given(vec![RoomEvent::StageEntered { user_id: "alice".into(), at: 3 }])
        .when(RoomCommand::EnterStage { user_id: "alice".into(), at: 4 })
        .then_expect_events(vec![]);
}

#[test]
fn exiting_the_stage_when_not_on_it_records_nothing() {
    room()
        .given_no_previous_events()
        .when(RoomCommand::ExitStage { user_id: "alice".into(), at: 3 })
        .then_expect_events(vec![]);
    room()
        .given(vec![RoomEvent::StageEntered { user_id: "alice".into(), at: 3 }])
        .when(RoomCommand::ExitStage { user_id: "alice".into(), at: 9 })
        .then_expect_events(vec![RoomEvent::StageExited { user_id: "alice".into(), at: 9 }]);
}

#[test]
fn the_next_deadline_is_the_earliest_away_or_forget_time() {
    let state = state_after(vec![opened("c1", "alice", 100), opened("c2", "bob", 0), closed("c2", "bob", 5)]);
    assert_eq!(state.next_deadline(AWAY, FORGET), Some(100 + AWAY));
    assert_eq!(EventRoom::default().next_deadline(AWAY, FORGET), None);
}

#[test]
fn a_livekit_join_delivered_twice_is_one_connection() {
    let join = || RoomCommand::Connect {
        connection_id: "livekit:PA_1".into(),
        client_id: None,
        user_id: "bob".into(),
        name: "Bob".into(),
        kind: ConnectionKind::LiveKit,
        at: 0,
    };
    let first = room().given_no_previous_events().when(join()).inspect_result().expect("first join");
    room().given(first).when(join()).then_expect_events(vec![]);
}

#[test]
fn the_snapshot_serialises_to_the_public_contract() {
    let state = state_after(vec![opened("c1", "alice", 7), RoomEvent::StageEntered { user_id: "alice".into(), at: 8 }]);
    let json = serde_json::to_value(state.snapshot("launch", 2)).expect("serialises");
    assert_eq!(
        json,
        serde_json::json!({
            "eventId": "launch", "version": 2,
            "presence": [{"userId": "alice", "name": "ALICE", "status": "online", "connections": 1, "lastSeen": 7}],
            "stage": [{"userId": "alice", "since": 8}],
            "recording": null
        })
    );
}

fn livekit_joined(user_id: &str, at: i64) -> RoomEvent {
    RoomEvent::ConnectionOpened {
        connection_id: format!("livekit:PA_{user_id}"),
        client_id: None,
        user_id: user_id.into(),
        name: user_id.to_uppercase(),
        kind: ConnectionKind::LiveKit,
        at,
    }
}

/// Issue #22, defect 4: a participant known only from LiveKit webhooks never
/// heartbeats; they stay online (on stage) until LiveKit says they left.
#[test]
fn a_livekit_participant_never_goes_away_by_the_heartbeat_rule() {
    let given = vec![livekit_joined("bob", 0), RoomEvent::StageEntered { user_id: "bob".into(), at: 0 }];
    room().given(given.clone()).when(sweep(AWAY)).then_expect_events(vec![]);
    room().given(given.clone()).when(sweep(10 * FORGET)).then_expect_events(vec![]);
    // Nor with a silent browser tab beside it: LiveKit still has them.
    let mut with_tab = given.clone();
    with_tab.push(opened("c1", "bob", 0));
    room().given(with_tab).when(sweep(AWAY)).then_expect_events(vec![]);
    // No away deadline to wake a sweep for.
    assert_eq!(state_after(given.clone()).next_deadline(AWAY, FORGET), None);
    // Once LiveKit reports the leave, the usual rules apply again.
    let mut left = given;
    left.push(RoomEvent::ConnectionClosed {
        connection_id: "livekit:PA_bob".into(),
        user_id: "bob".into(),
        reason: CloseReason::LeftLiveKit,
        at: 1_000,
    });
    assert_eq!(state_after(left.clone()).status_of("bob"), PresenceStatus::Offline);
    room()
        .given(left)
        .when(sweep(1_000 + FORGET))
        .then_expect_events(vec![RoomEvent::UserForgotten { user_id: "bob".into(), at: 1_000 + FORGET }]);
}

fn delivered(delivery_id: &str, command: RoomCommand, at: i64) -> RoomCommand {
    RoomCommand::LiveKitDelivery { delivery_id: delivery_id.into(), command: Box::new(command), at }
}

fn livekit_connect(user_id: &str, at: i64) -> RoomCommand {
    RoomCommand::Connect {
        connection_id: format!("livekit:PA_{user_id}"),
        client_id: None,
        user_id: user_id.into(),
        name: user_id.to_uppercase(),
        kind: ConnectionKind::LiveKit,
        at,
    }
}

/// Issue #22, defect 7: a delivery's effect and its record are one append,
/// so a join redelivered after the leave (the first answer was lost in a
/// crash) does not bring the participant back; the memory of delivery ids
/// is bounded by time.
#[test]
fn a_livekit_delivery_is_applied_once_even_after_the_leave_that_followed_it() {
    let joined =
        vec![livekit_joined("bob", 0), RoomEvent::LiveKitDeliveryApplied { delivery_id: "EV_1".into(), at: 0 }];
    room().given(vec![]).when(delivered("EV_1", livekit_connect("bob", 0), 0)).then_expect_events(joined.clone());
    let mut left = joined.clone();
    left.push(RoomEvent::ConnectionClosed {
        connection_id: "livekit:PA_bob".into(),
        user_id: "bob".into(),
        reason: CloseReason::LeftLiveKit,
        at: 10,
    });
    left.push(RoomEvent::LiveKitDeliveryApplied { delivery_id: "EV_2".into(), at: 10 });
    room().given(left.clone()).when(delivered("EV_1", livekit_connect("bob", 20), 20)).then_expect_events(vec![]);
    assert_eq!(state_after(left.clone()).livekit_deliveries.len(), 2);
    // Forgotten once older than the memory: an id seen 48 h ago is dropped
    // when the next delivery is recorded.
    let mut later = left;
    later.push(RoomEvent::LiveKitDeliveryApplied { delivery_id: "EV_3".into(), at: LIVEKIT_DELIVERY_MEMORY_MS });
    let state = state_after(later);
    assert_eq!(state.livekit_deliveries.keys().collect::<Vec<_>>(), ["EV_2", "EV_3"]);
    // Deliveries do not nest.
    room()
        .given(vec![])
        .when(delivered("EV_4", delivered("EV_5", livekit_connect("bob", 0), 0), 0))
        .then_expect_error(RoomError::NestedDelivery);
}
