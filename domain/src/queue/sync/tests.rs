//! The y-websocket protocol, driven with hand-built frames and with in-memory
//! "browser" docs talking to the server doc through these functions only.

use yrs::StateVector;
use yrs::sync::{Awareness, DefaultProtocol, Protocol};
use yrs::updates::encoder::Encoder as _;
use yrs::updates::encoder::EncoderV1;

use super::*;
use crate::queue::document::QueueList;
use crate::queue::test_support::{TestClient, queue_of};

fn awareness_frame(entries: &[(u64, u32, &str)]) -> Vec<u8> {
    let clients = entries
        .iter()
        .map(|(id, clock, json)| (ClientID::new(*id), AwarenessUpdateEntry { clock: *clock, json: Arc::from(*json) }))
        .collect();
    encode(&Message::Awareness(AwarenessUpdate { clients }))
}

/// The `(client, clock, json)` entries of an awareness frame, sorted by client.
fn awareness_entries(frame: &[u8]) -> Vec<(u64, u32, String)> {
    let messages = decode_frame(frame).unwrap();
    let [Message::Awareness(update)] = messages.as_slice() else {
        panic!("one awareness message expected in {frame:?}");
    };
    let mut entries: Vec<_> = update.clients.iter().map(|(id, e)| (id.get(), e.clock, e.json.to_string())).collect();
    entries.sort();
    entries
}

/// The update inside a single SyncStep2 frame.
fn sync_step2(frame: &[u8]) -> Vec<u8> {
    match decode_frame(frame).unwrap().as_slice() {
        [Message::Sync(SyncMessage::SyncStep2(update))] => update.clone(),
        other => panic!("expected SyncStep2, got {other:?}"),
    }
}

fn sync_step1_frame(client: &TestClient) -> Vec<u8> {
    let state_vector = Update::decode_v1(&client.state()).unwrap().state_vector();
    encode(&Message::Sync(SyncMessage::SyncStep1(state_vector)))
}

#[test]
fn messages_are_encoded_one_per_frame() {
    assert_eq!(encode(&Message::AwarenessQuery), vec![3]);
    assert_eq!(update_frame(&[0, 0]), vec![0, 2, 2, 0, 0]);
    assert_eq!(encode(&Message::Sync(SyncMessage::SyncStep1(StateVector::default()))), vec![0, 0, 1, 0]);
}

#[test]
fn the_greeting_is_sync_step1_then_awareness_in_frames_of_their_own() {
    let doc = queue_of(&["a"], &[]);
    let mut awareness = AwarenessRegistry::new();
    let greeting = greeting(&doc, &awareness);
    assert_eq!(greeting.len(), 1, "no awareness frame while nobody is present");
    assert_eq!(
        decode_frame(&greeting[0]).unwrap(),
        vec![Message::Sync(SyncMessage::SyncStep1(doc.current_state_vector()))]
    );

    awareness.apply(&AwarenessUpdate {
        clients: [(ClientID::new(7), AwarenessUpdateEntry { clock: 1, json: Arc::from(r#"{"user":"a"}"#) })].into(),
    });
    let greeting = super::greeting(&doc, &awareness);
    assert_eq!(greeting.len(), 2);
    assert_eq!(greeting[0][..2], [0, 0]);
    assert_eq!(awareness_entries(&greeting[1]), vec![(7, 1, r#"{"user":"a"}"#.to_owned())]);
}

#[test]
fn a_late_joiner_gets_the_whole_queue_in_sync_step2() {
    let doc = queue_of(&["a", "b"], &["x"]);
    let mut awareness = AwarenessRegistry::new();
    let mut session = Session::new(Role::Participant);
    // y-websocket's first frame: SyncStep1 with an empty state vector.
    let outcome = session.on_frame(&[0, 0, 1, 0], &doc, &mut awareness).unwrap();
    assert_eq!(outcome.update, None);
    assert_eq!(outcome.awareness, None);
    let [reply] = outcome.replies.as_slice() else { panic!("one reply") };
    let late = TestClient::new(50);
    late.apply(&sync_step2(reply));
    assert_eq!(late.view(), doc.view());
}

#[test]
fn sync_step1_gets_only_what_the_client_lacks() {
    let mut doc = queue_of(&["a"], &[]);
    let client = TestClient::synced(50, &doc);
    doc.add("b", "B").unwrap();
    let mut session = Session::new(Role::Moderator);
    let outcome = session.on_frame(&sync_step1_frame(&client), &doc, &mut AwarenessRegistry::new()).unwrap();
    let diff = sync_step2(&outcome.replies[0]);
    assert!(diff.len() < doc.encode_state().len());
    client.apply(&diff);
    assert_eq!(client.view(), doc.view());
}

#[test]
fn a_moderators_update_goes_to_the_aggregate_and_reaches_other_clients() {
    let mut doc = queue_of(&["a"], &[]);
    let mut awareness = AwarenessRegistry::new();
    let editor = TestClient::synced(61, &doc);
    let watcher = TestClient::synced(62, &doc);
    let mut editor_session = Session::new(Role::Moderator);

    let update = editor.push(QueueList::Pending, "b");
    let outcome = editor_session.on_frame(&update_frame(&update), &doc, &mut awareness).unwrap();
    assert_eq!(outcome, Outcome { update: Some(update.clone()), ..Outcome::default() });

    // The server stores it (the aggregate's job), then broadcasts it.
    doc.apply_update(outcome.update.as_ref().unwrap()).unwrap();
    for message in decode_frame(&update_frame(&update)).unwrap() {
        let Message::Sync(SyncMessage::Update(bytes)) = message else { panic!("an update") };
        watcher.apply(&bytes);
    }
    assert_eq!(watcher.view(), doc.view());
    assert_eq!(watcher.view(), editor.view());
}

#[test]
fn a_moderators_sync_step2_is_an_update_too() {
    let doc = queue_of(&["a"], &[]);
    let editor = TestClient::synced(61, &doc);
    let offline_edit = editor.push(QueueList::Live, "z");
    let step2 = encode(&Message::Sync(SyncMessage::SyncStep2(offline_edit.clone())));
    let outcome = Session::new(Role::Moderator).on_frame(&step2, &doc, &mut AwarenessRegistry::new()).unwrap();
    assert_eq!(outcome.update, Some(offline_edit));
}

#[test]
fn a_participants_writes_are_dropped_and_it_keeps_syncing() {
    let doc = queue_of(&["a"], &[]);
    let mut awareness = AwarenessRegistry::new();
    let participant = TestClient::synced(70, &doc);
    let mut session = Session::new(Role::Participant);
    let update = participant.push(QueueList::Live, "me");
    for frame in [update_frame(&update), encode(&Message::Sync(SyncMessage::SyncStep2(update.clone())))] {
        assert_eq!(session.on_frame(&frame, &doc, &mut awareness).unwrap(), Outcome::default());
    }
    // Still a reader: it asks and is answered.
    let outcome = session.on_frame(&[0, 0, 1, 0], &doc, &mut awareness).unwrap();
    assert_eq!(outcome.replies.len(), 1);
}

#[test]
fn empty_updates_are_not_handed_over() {
    let doc = queue_of(&["a"], &[]);
    let mut session = Session::new(Role::Moderator);
    let outcome = session.on_frame(&update_frame(&[0, 0]), &doc, &mut AwarenessRegistry::new()).unwrap();
    assert_eq!(outcome, Outcome::default());
}

#[test]
fn several_updates_in_one_frame_are_merged() {
    let doc = queue_of(&["a"], &[]);
    let editor = TestClient::synced(61, &doc);
    let first = editor.push(QueueList::Pending, "b");
    let second = editor.push(QueueList::Pending, "c");
    let frame = [update_frame(&first), update_frame(&second)].concat();
    let outcome = Session::new(Role::Moderator).on_frame(&frame, &doc, &mut AwarenessRegistry::new()).unwrap();
    let mut server = doc;
    server.apply_update(&outcome.update.unwrap()).unwrap();
    assert_eq!(server.view(), editor.view());
}

#[test]
fn awareness_is_relayed_and_removed_when_its_connection_closes() {
    let doc = QueueDoc::new();
    let mut awareness = AwarenessRegistry::new();
    let mut alice = Session::new(Role::Moderator);
    let mut bob = Session::new(Role::Participant);

    let hello = awareness_frame(&[(1001, 1, r#"{"name":"Alice"}"#)]);
    let outcome = alice.on_frame(&hello, &doc, &mut awareness).unwrap();
    assert_eq!(awareness_entries(&outcome.awareness.unwrap()), vec![(1001, 1, r#"{"name":"Alice"}"#.to_owned())]);
    assert_eq!(alice.announced().collect::<Vec<_>>(), vec![1001]);

    // Bob joins and sees Alice; his client echoes her state back (y-websocket
    // does), which must not make her his.
    let greeting = greeting(&doc, &awareness);
    assert_eq!(awareness_entries(&greeting[1]).len(), 1);
    let echo = bob.on_frame(&awareness_frame(&[(1001, 1, r#"{"name":"Alice"}"#)]), &doc, &mut awareness).unwrap();
    assert_eq!(echo.awareness, None, "a known state is not relayed again");
    bob.on_frame(&awareness_frame(&[(2002, 1, r#"{"name":"Bob"}"#)]), &doc, &mut awareness).unwrap();
    assert_eq!(bob.announced().collect::<Vec<_>>(), vec![2002]);

    // Alice's renewal (same state, higher clock) is echoed to everyone.
    let renewal = alice.on_frame(&awareness_frame(&[(1001, 2, r#"{"name":"Alice"}"#)]), &doc, &mut awareness).unwrap();
    assert_eq!(awareness_entries(&renewal.awareness.unwrap()), vec![(1001, 2, r#"{"name":"Alice"}"#.to_owned())]);

    let goodbye = alice.closing_awareness(&mut awareness).expect("a removal frame");
    assert_eq!(awareness_entries(&goodbye), vec![(1001, 3, "null".to_owned())]);
    assert_eq!(awareness.state(1001), None);
    assert_eq!(awareness.state(2002), Some(r#"{"name":"Bob"}"#));
    assert_eq!(awareness.len(), 1);

    // A stale state arriving late cannot bring her back.
    let late = bob.on_frame(&awareness_frame(&[(1001, 2, r#"{"name":"Alice"}"#)]), &doc, &mut awareness).unwrap();
    assert_eq!(late.awareness, None);
    assert_eq!(awareness.state(1001), None);

    assert_eq!(awareness_entries(&bob.closing_awareness(&mut awareness).unwrap()), vec![(2002, 2, "null".to_owned())]);
    assert!(awareness.is_empty());
    assert_eq!(awareness.full_state_frame(), None);
}

#[test]
fn a_client_that_says_goodbye_itself_needs_no_removal_on_close() {
    let doc = QueueDoc::new();
    let mut awareness = AwarenessRegistry::new();
    let mut alice = Session::new(Role::Moderator);
    alice.on_frame(&awareness_frame(&[(1001, 1, "{}")]), &doc, &mut awareness).unwrap();
    let bye = alice.on_frame(&awareness_frame(&[(1001, 2, "null")]), &doc, &mut awareness).unwrap();
    assert_eq!(awareness_entries(&bye.awareness.unwrap()), vec![(1001, 2, "null".to_owned())]);
    assert_eq!(alice.closing_awareness(&mut awareness), None);
}

#[test]
fn a_query_gets_every_present_state() {
    let doc = QueueDoc::new();
    let mut awareness = AwarenessRegistry::new();
    let mut session = Session::new(Role::Participant);
    assert_eq!(session.on_frame(&[3], &doc, &mut awareness).unwrap(), Outcome::default());
    session.on_frame(&awareness_frame(&[(5, 1, "{\"a\":1}"), (6, 4, "{\"b\":2}")]), &doc, &mut awareness).unwrap();
    let outcome = session.on_frame(&[3], &doc, &mut awareness).unwrap();
    assert_eq!(
        awareness_entries(&outcome.replies[0]),
        vec![(5, 1, "{\"a\":1}".to_owned()), (6, 4, "{\"b\":2}".to_owned())]
    );
}

#[test]
fn a_frame_with_several_messages_is_read_whole() {
    // yrs's own `Protocol::start` packs SyncStep1 and awareness in one buffer.
    let client_doc = yrs::Doc::with_client_id(77);
    let mut client_awareness = Awareness::new(client_doc);
    client_awareness.set_local_state_raw(r#"{"user":"c"}"#);
    let mut encoder = EncoderV1::new();
    DefaultProtocol.start(&client_awareness, &mut encoder).unwrap();
    let frame = encoder.to_vec();

    let doc = queue_of(&["a"], &[]);
    let mut awareness = AwarenessRegistry::new();
    let outcome = Session::new(Role::Participant).on_frame(&frame, &doc, &mut awareness).unwrap();
    assert_eq!(outcome.replies.len(), 1, "the SyncStep2 answer");
    assert_eq!(awareness_entries(&outcome.awareness.unwrap()), vec![(77, 1, r#"{"user":"c"}"#.to_owned())]);
}

#[test]
fn auth_and_unknown_messages_are_ignored() {
    let doc = QueueDoc::new();
    let mut session = Session::new(Role::Moderator);
    let mut awareness = AwarenessRegistry::new();
    for frame in [vec![2, 1], vec![2, 0, 2, b'n', b'o'], vec![100, 2, 7, 7]] {
        assert_eq!(session.on_frame(&frame, &doc, &mut awareness).unwrap(), Outcome::default(), "{frame:?}");
    }
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let huge_client_awareness = {
        // One awareness entry for client 2^60, beyond Yjs's 53 bits.
        let mut payload = vec![1];
        let mut id: u64 = 1 << 60;
        while id >= 0x80 {
            payload.push((id as u8 & 0x7f) | 0x80);
            id >>= 7;
        }
        payload.extend([id as u8, 1, 2, b'{', b'}']);
        let mut frame = vec![1, payload.len() as u8];
        frame.extend(payload);
        frame
    };
    let cases: Vec<(Vec<u8>, SyncError)> = vec![
        (vec![], SyncError::EmptyFrame),
        (vec![0], SyncError::MalformedFrame),
        (vec![0, 0, 5, 1], SyncError::MalformedFrame),
        (vec![0, 9, 0], SyncError::MalformedFrame),
        (vec![0, 0, 1, 0, 0], SyncError::MalformedFrame),
        (vec![1, 3, 1, 1], SyncError::MalformedFrame),
        (vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], SyncError::MalformedFrame),
        (vec![0, 2, 2, 0xff, 0xff], SyncError::MalformedUpdate),
        (awareness_frame(&[(5, 1, "{not json")]), SyncError::MalformedAwareness),
        (huge_client_awareness, SyncError::MalformedFrame),
    ];
    let doc = queue_of(&["a"], &[]);
    let mut awareness = AwarenessRegistry::new();
    let mut session = Session::new(Role::Moderator);
    for (frame, error) in cases {
        assert_eq!(session.on_frame(&frame, &doc, &mut awareness), Err(error), "{frame:?}");
    }
    assert!(awareness.is_empty());
}
