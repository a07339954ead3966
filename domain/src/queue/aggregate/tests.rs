//! Given/when/then tests of the queue aggregate.

use cqrs_es::test::TestFramework;

use super::*;
use crate::queue::document::{RemovalReason, RemovedEntry};
use crate::queue::test_support::{TestClient, users};

const AT: i64 = 1_700_000_000_000;
const MODERATOR: &str = "mod-1";

fn queue() -> TestFramework<Queue> {
    TestFramework::with(())
}

fn moderator() -> Actor {
    Actor::moderator(MODERATOR)
}

fn applied(update: &[u8], origin: UpdateOrigin) -> QueueEvent {
    QueueEvent::update_applied(update, origin, MODERATOR, AT)
}

/// A queue built by a moderator's client (Yjs client 1), as the stream's
/// first event, and that client, which can go on editing it.
fn seeded(pending: &[&str], live: &[&str]) -> (Vec<QueueEvent>, TestClient) {
    let client = TestClient::new(1);
    for user in pending {
        client.push(QueueList::Pending, user);
    }
    for user in live {
        client.push(QueueList::Live, user);
    }
    let seed = QueueEvent::update_applied(&client.state(), UpdateOrigin::Client, MODERATOR, 0);
    (vec![seed], client)
}

fn client_update(update: Vec<u8>) -> QueueCommand {
    QueueCommand::ApplyClientUpdate { update, actor: moderator(), at: AT }
}

fn state_after(events: impl IntoIterator<Item = QueueEvent>) -> Queue {
    let mut queue = Queue::default();
    for event in events {
        queue.apply(event);
    }
    queue
}

fn by_and_at<T>(make: impl FnOnce(String, i64) -> T) -> T {
    make(MODERATOR.to_owned(), AT)
}

/// Runs a server command. Its update's bytes are not predictable (yrs writes
/// object keys in hash order), so this checks that there is exactly one
/// server update, that it leads to `expected`, and returns the other events.
fn when_server_command(given: Vec<QueueEvent>, command: QueueCommand, expected: (&[&str], &[&str])) -> Vec<QueueEvent> {
    let events = queue().given(given.clone()).when(command).inspect_result().expect("command accepted");
    let (updates, semantic): (Vec<_>, Vec<_>) =
        events.iter().cloned().partition(|e| matches!(e, QueueEvent::UpdateApplied { .. }));
    assert_eq!(updates.len(), 1, "one server update in {events:?}");
    let QueueEvent::UpdateApplied { origin, by, at, .. } = &updates[0] else { unreachable!() };
    assert_eq!((*origin, by.as_str(), *at), (UpdateOrigin::Server, MODERATOR, AT));
    let view = state_after(given.into_iter().chain(events)).view();
    assert_eq!((users(&view.pending), users(&view.live)), (expected.0.to_vec(), expected.1.to_vec()));
    semantic
}

// --- client updates -------------------------------------------------------

#[test]
fn a_moderators_update_is_recorded_with_what_it_meant() {
    let (given, client) = seeded(&["a"], &[]);
    let update = client.push(QueueList::Pending, "b");
    queue().given(given).when(client_update(update.clone())).then_expect_events(vec![
        applied(&update, UpdateOrigin::Client),
        by_and_at(|by, at| QueueEvent::ParticipantQueued {
            user_id: "b".into(),
            name: "B".into(),
            list: QueueList::Pending,
            index: 1,
            by,
            at,
        }),
    ]);
}

#[test]
fn a_participants_update_is_dropped_silently() {
    let (given, client) = seeded(&["a"], &[]);
    let update = client.push(QueueList::Pending, "b");
    queue()
        .given(given)
        .when(QueueCommand::ApplyClientUpdate { update, actor: Actor::participant("pat"), at: AT })
        .then_expect_events(vec![]);
}

#[test]
fn a_participants_garbage_is_dropped_silently_too() {
    queue()
        .given_no_previous_events()
        .when(QueueCommand::ApplyClientUpdate { update: vec![0xff], actor: Actor::participant("pat"), at: AT })
        .then_expect_events(vec![]);
}

#[test]
fn a_malformed_update_is_rejected() {
    let (given, _) = seeded(&["a"], &[]);
    queue().given(given).when(client_update(vec![0xff, 0x01])).then_expect_error(QueueError::MalformedUpdate);
}

#[test]
fn an_update_the_queue_already_has_records_nothing() {
    let (mut given, client) = seeded(&["a"], &[]);
    let update = client.push(QueueList::Pending, "b");
    given.push(applied(&update, UpdateOrigin::Client));
    queue().given(given).when(client_update(update)).then_expect_events(vec![]);
}

#[test]
fn a_reconnecting_clients_full_state_records_nothing() {
    let (given, client) = seeded(&["a", "b"], &[]);
    let mut given = given;
    let removal = client.remove_user("a");
    given.push(applied(&removal, UpdateOrigin::Client));
    // SyncStep2 after a reconnect: everything, deletions included, is known.
    queue().given(given).when(client_update(client.state())).then_expect_events(vec![]);
}

#[test]
fn an_update_waiting_for_a_missing_predecessor_is_kept() {
    let (given, client) = seeded(&["a"], &[]);
    let _lost = client.push(QueueList::Pending, "b");
    let later = client.push(QueueList::Pending, "c");
    // `later` depends on `_lost`, which the server never got: yrs parks it.
    queue()
        .given(given)
        .when(client_update(later.clone()))
        .then_expect_events(vec![applied(&later, UpdateOrigin::Client)]);
}

#[test]
fn moving_an_entry_is_a_move_and_shifted_neighbours_are_not() {
    let (given, client) = seeded(&["a", "b", "c", "d"], &[]);
    let update = client.move_user("a", QueueList::Pending, 2);
    queue().given(given).when(client_update(update.clone())).then_expect_events(vec![
        applied(&update, UpdateOrigin::Client),
        by_and_at(|by, at| QueueEvent::ParticipantMoved {
            user_id: "a".into(),
            list: QueueList::Pending,
            from: 0,
            to: 2,
            by,
            at,
        }),
    ]);
}

#[test]
fn re_inserting_an_entry_in_place_is_no_move() {
    let (given, client) = seeded(&["a", "b", "c"], &[]);
    let update = client.move_user("b", QueueList::Pending, 1);
    queue()
        .given(given)
        .when(client_update(update.clone()))
        .then_expect_events(vec![applied(&update, UpdateOrigin::Client)]);
}

#[test]
fn removing_the_first_entry_is_only_a_removal() {
    let (given, client) = seeded(&["a", "b", "c"], &["x"]);
    let update = client.remove_user("a");
    queue().given(given).when(client_update(update.clone())).then_expect_events(vec![
        applied(&update, UpdateOrigin::Client),
        by_and_at(|by, at| QueueEvent::ParticipantRemoved { user_id: "a".into(), list: QueueList::Pending, by, at }),
    ]);
}

#[test]
fn dragging_into_live_is_a_promotion() {
    let (given, client) = seeded(&["a", "b"], &["x"]);
    let update = client.move_user("b", QueueList::Live, 0);
    queue().given(given).when(client_update(update.clone())).then_expect_events(vec![
        applied(&update, UpdateOrigin::Client),
        by_and_at(|by, at| QueueEvent::ParticipantPromoted { user_id: "b".into(), by, at }),
    ]);
}

#[test]
fn dragging_out_of_live_is_a_send_back() {
    let (given, client) = seeded(&["a"], &["x", "y"]);
    let update = client.move_user("x", QueueList::Pending, 1);
    queue().given(given).when(client_update(update.clone())).then_expect_events(vec![
        applied(&update, UpdateOrigin::Client),
        by_and_at(|by, at| QueueEvent::ParticipantSentBack { user_id: "x".into(), by, at }),
    ]);
}

/// The repair the server would make after `updates` on top of `given`.
fn expected_repair(given: &[QueueEvent], updates: &[&[u8]]) -> crate::queue::Repair {
    let mut doc = state_after(given.iter().cloned()).doc().fork().unwrap();
    for update in updates {
        doc.apply_update(update).unwrap();
    }
    doc.repair().expect("a repair")
}

#[test]
fn an_update_that_breaks_the_invariants_is_repaired_in_the_same_command() {
    let (given, client) = seeded(&["a", "b"], &[]);
    // A sloppy client copies "a" into live without deleting it from pending.
    let update = client.push(QueueList::Live, "a");
    let repair = expected_repair(&given, &[&update]);
    queue().given(given).when(client_update(update.clone())).then_expect_events(vec![
        applied(&update, UpdateOrigin::Client),
        applied(&repair.update, UpdateOrigin::Repair),
        by_and_at(|by, at| QueueEvent::QueueRepaired {
            removed: vec![RemovedEntry {
                list: QueueList::Pending,
                index: 0,
                user_id: Some("a".into()),
                reason: RemovalReason::AlreadyLive,
            }],
            by,
            at,
        }),
        by_and_at(|by, at| QueueEvent::ParticipantPromoted { user_id: "a".into(), by, at }),
    ]);
}

#[test]
fn conflicting_moves_by_two_moderators_are_repaired() {
    let (mut given, one) = seeded(&["a", "b", "c"], &[]);
    let two = TestClient::new(2);
    two.apply(&one.state());
    let first = one.move_user("a", QueueList::Pending, 2);
    given.push(applied(&first, UpdateOrigin::Client));
    // Two had not seen one's move: it moves the original "a" to live.
    let second = two.move_user("a", QueueList::Live, 0);
    let repair = expected_repair(&given, &[&second]);
    let events = queue().given(given.clone()).when(client_update(second.clone())).inspect_result().unwrap();
    assert_eq!(
        events,
        vec![
            applied(&second, UpdateOrigin::Client),
            applied(&repair.update, UpdateOrigin::Repair),
            by_and_at(|by, at| QueueEvent::QueueRepaired {
                removed: vec![RemovedEntry {
                    list: QueueList::Pending,
                    index: 2,
                    user_id: Some("a".into()),
                    reason: RemovalReason::AlreadyLive,
                }],
                by,
                at,
            }),
            by_and_at(|by, at| QueueEvent::ParticipantPromoted { user_id: "a".into(), by, at }),
        ]
    );
    // Both clients, given what they missed plus the repair, agree with the server.
    let server = state_after(given.into_iter().chain(events));
    one.apply(&second);
    two.apply(&first);
    one.apply(&repair.update);
    two.apply(&repair.update);
    assert_eq!(one.view(), server.view());
    assert_eq!(two.view(), server.view());
    assert_eq!(users(&server.view().live), ["a"]);
}

// --- server commands ------------------------------------------------------

#[test]
fn adding_queues_a_participant() {
    let (given, _) = seeded(&["a"], &["x"]);
    let command = QueueCommand::Add { user_id: "b".into(), name: "Bea".into(), actor: moderator(), at: AT };
    let semantic = when_server_command(given, command, (&["a", "b"], &["x"]));
    assert_eq!(
        semantic,
        vec![by_and_at(|by, at| QueueEvent::ParticipantQueued {
            user_id: "b".into(),
            name: "Bea".into(),
            list: QueueList::Pending,
            index: 1,
            by,
            at,
        })]
    );
}

#[test]
fn adding_someone_already_queued_changes_nothing() {
    let (given, _) = seeded(&["a"], &["x"]);
    queue()
        .given(given)
        .when(QueueCommand::Add { user_id: "x".into(), name: "X".into(), actor: moderator(), at: AT })
        .then_expect_events(vec![]);
}

#[test]
fn only_moderators_may_send_commands() {
    let (given, _) = seeded(&["a"], &[]);
    queue()
        .given(given)
        .when(QueueCommand::Promote { user_id: "a".into(), actor: Actor::participant("pat"), at: AT })
        .then_expect_error(QueueError::Forbidden("pat".into()));
}

#[test]
fn moving_by_command_within_a_list() {
    let (given, _) = seeded(&["a", "b", "c"], &[]);
    let command =
        QueueCommand::Move { user_id: "c".into(), list: QueueList::Pending, index: 0, actor: moderator(), at: AT };
    let semantic = when_server_command(given, command, (&["c", "a", "b"], &[]));
    assert_eq!(
        semantic,
        vec![by_and_at(|by, at| QueueEvent::ParticipantMoved {
            user_id: "c".into(),
            list: QueueList::Pending,
            from: 2,
            to: 0,
            by,
            at,
        })]
    );
}

#[test]
fn moving_by_command_to_pending_is_a_send_back() {
    let (given, _) = seeded(&["a"], &["x"]);
    let command =
        QueueCommand::Move { user_id: "x".into(), list: QueueList::Pending, index: 0, actor: moderator(), at: AT };
    let semantic = when_server_command(given, command, (&["x", "a"], &[]));
    assert_eq!(semantic, vec![by_and_at(|by, at| QueueEvent::ParticipantSentBack { user_id: "x".into(), by, at })]);
}

#[test]
fn moving_rejects_unknown_users_and_bad_indices() {
    let (given, _) = seeded(&["a"], &["x"]);
    queue()
        .given(given.clone())
        .when(QueueCommand::Move { user_id: "zed".into(), list: QueueList::Live, index: 0, actor: moderator(), at: AT })
        .then_expect_error(QueueError::UnknownParticipant("zed".into()));
    queue()
        .given(given)
        .when(QueueCommand::Move { user_id: "a".into(), list: QueueList::Live, index: 5, actor: moderator(), at: AT })
        .then_expect_error(QueueError::InvalidIndex { index: 5, len: 1 });
}

#[test]
fn promoting_by_command() {
    let (given, _) = seeded(&["a", "b"], &["x"]);
    let command = QueueCommand::Promote { user_id: "a".into(), actor: moderator(), at: AT };
    let semantic = when_server_command(given, command, (&["b"], &["x", "a"]));
    assert_eq!(semantic, vec![by_and_at(|by, at| QueueEvent::ParticipantPromoted { user_id: "a".into(), by, at })]);
}

#[test]
fn promoting_someone_live_changes_nothing() {
    let (given, _) = seeded(&[], &["x"]);
    queue()
        .given(given)
        .when(QueueCommand::Promote { user_id: "x".into(), actor: moderator(), at: AT })
        .then_expect_events(vec![]);
}

#[test]
fn removing_by_command() {
    let (given, _) = seeded(&["a"], &["x"]);
    let command = QueueCommand::Remove { user_id: "x".into(), actor: moderator(), at: AT };
    let semantic = when_server_command(given, command, (&["a"], &[]));
    assert_eq!(
        semantic,
        vec![by_and_at(|by, at| QueueEvent::ParticipantRemoved { user_id: "x".into(), list: QueueList::Live, by, at })]
    );
}

#[test]
fn removing_an_unknown_user_is_an_error() {
    queue()
        .given_no_previous_events()
        .when(QueueCommand::Remove { user_id: "zed".into(), actor: moderator(), at: AT })
        .then_expect_error(QueueError::UnknownParticipant("zed".into()));
}

// --- state, snapshots, wire shapes ---------------------------------------

#[test]
fn semantic_events_do_not_touch_the_document() {
    let (given, _) = seeded(&["a"], &[]);
    let mut queue = state_after(given);
    let before = queue.doc().fingerprint();
    queue.apply(by_and_at(|by, at| QueueEvent::ParticipantPromoted { user_id: "a".into(), by, at }));
    queue.apply(by_and_at(|by, at| QueueEvent::QueueRepaired { removed: vec![], by, at }));
    assert_eq!(queue.doc().fingerprint(), before);
}

#[test]
fn a_snapshot_round_trips_through_json() {
    let (given, _) = seeded(&["a", "b"], &["x"]);
    let queue = state_after(given);
    let json = serde_json::to_value(&queue).unwrap();
    assert!(json["doc"].is_string(), "{json}");
    let back: Queue = serde_json::from_value(json).unwrap();
    assert_eq!(back.view(), queue.view());
}

#[test]
fn events_have_stable_types_and_json_shapes() {
    let event = applied(&[0, 0], UpdateOrigin::Repair);
    assert_eq!(event.event_type(), "UpdateApplied");
    assert_eq!(event.event_version(), "1");
    assert_eq!(event.update(), Some(vec![0, 0]));
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        serde_json::json!({"UpdateApplied": {"update": "AAA=", "origin": "repair", "by": MODERATOR, "at": AT}})
    );
    let moved = by_and_at(|by, at| QueueEvent::ParticipantMoved {
        user_id: "a".into(),
        list: QueueList::Live,
        from: 0,
        to: 2,
        by,
        at,
    });
    assert_eq!(moved.event_type(), "ParticipantMoved");
    assert_eq!(
        serde_json::to_value(&moved).unwrap(),
        serde_json::json!({"ParticipantMoved": {"user_id": "a", "list": "live", "from": 0, "to": 2, "by": MODERATOR, "at": AT}})
    );
    let repaired = by_and_at(|by, at| QueueEvent::QueueRepaired {
        removed: vec![RemovedEntry {
            list: QueueList::Pending,
            index: 3,
            user_id: None,
            reason: RemovalReason::MissingUserId,
        }],
        by,
        at,
    });
    assert_eq!(
        serde_json::to_value(&repaired).unwrap(),
        serde_json::json!({"QueueRepaired": {
            "removed": [{"list": "pending", "index": 3, "user_id": null, "reason": "missing_user_id"}],
            "by": MODERATOR, "at": AT,
        }})
    );
}
