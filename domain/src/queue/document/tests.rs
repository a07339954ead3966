//! The queue document: its view, the server's edits, and the repair, above
//! all under concurrent moves by two moderators.

use super::*;
use crate::queue::test_support::{TestClient, item, queue_of, users};

fn view_of(doc: &QueueDoc) -> (Vec<String>, Vec<String>) {
    let view = doc.view();
    let ids = |entries: &[Entry]| entries.iter().map(|e| e.user_id.clone()).collect();
    (ids(&view.pending), ids(&view.live))
}

fn strings(users: &[&str]) -> Vec<String> {
    users.iter().map(|u| u.to_string()).collect()
}

fn assert_queue(doc: &QueueDoc, pending: &[&str], live: &[&str]) {
    assert_eq!(view_of(doc), (strings(pending), strings(live)));
}

/// Every user at most once across both lists.
fn assert_no_duplicates(view: &QueueView) {
    let mut seen = HashSet::new();
    for entry in view.pending.iter().chain(&view.live) {
        assert!(seen.insert(entry.user_id.clone()), "{} appears twice in {view:?}", entry.user_id);
    }
}

#[test]
fn an_empty_queue_serialises_as_the_contract_says() {
    let doc = QueueDoc::new();
    assert_eq!(serde_json::to_value(doc.view()).unwrap(), serde_json::json!({"pending": [], "live": []}));
}

#[test]
fn the_view_serialises_entries_with_camel_case_keys() {
    let doc = queue_of(&["alice"], &["bob"]);
    assert_eq!(
        serde_json::to_value(doc.view()).unwrap(),
        serde_json::json!({
            "pending": [{"userId": "alice", "name": "ALICE"}],
            "live": [{"userId": "bob", "name": "BOB"}],
        })
    );
}

#[test]
fn the_server_edits_with_its_fixed_client_id() {
    let mut doc = QueueDoc::new();
    doc.add("alice", "Alice").unwrap();
    let update = Update::decode_v1(&doc.encode_state()).unwrap();
    let sv = update.state_vector();
    assert_eq!(sv.iter().map(|(client, _)| client.get()).collect::<Vec<_>>(), vec![SERVER_CLIENT_ID]);
}

#[test]
fn adding_appends_to_pending_once() {
    let mut doc = queue_of(&["alice"], &["bob"]);
    assert!(doc.add("carol", "Carol").unwrap().is_some());
    assert_queue(&doc, &["alice", "carol"], &["bob"]);
    assert_eq!(doc.view().pending[1], Entry::new("carol", "Carol"));
    assert_eq!(doc.add("carol", "Carol").unwrap(), None);
    assert_eq!(doc.add("bob", "Bob").unwrap(), None, "a live user is not queued again");
    assert_eq!(doc.add("", "Nobody"), Err(QueueError::EmptyUserId));
}

#[test]
fn moving_within_a_list_counts_the_index_without_the_moved_entry() {
    let mut doc = queue_of(&["a", "b", "c", "d"], &[]);
    doc.move_to("a", QueueList::Pending, 2).unwrap();
    assert_queue(&doc, &["b", "c", "a", "d"], &[]);
    doc.move_to("d", QueueList::Pending, 0).unwrap();
    assert_queue(&doc, &["d", "b", "c", "a"], &[]);
    doc.move_to("b", QueueList::Pending, 3).unwrap();
    assert_queue(&doc, &["d", "c", "a", "b"], &[]);
}

#[test]
fn moving_to_the_same_place_changes_nothing() {
    let mut doc = queue_of(&["a", "b"], &[]);
    assert_eq!(doc.move_to("b", QueueList::Pending, 1).unwrap(), None);
}

#[test]
fn moving_across_lists() {
    let mut doc = queue_of(&["a", "b"], &["x"]);
    doc.move_to("b", QueueList::Live, 0).unwrap();
    assert_queue(&doc, &["a"], &["b", "x"]);
    doc.move_to("x", QueueList::Pending, 1).unwrap();
    assert_queue(&doc, &["a", "x"], &["b"]);
}

#[test]
fn moving_rejects_unknown_users_and_out_of_range_indices() {
    let mut doc = queue_of(&["a", "b"], &["x"]);
    assert_eq!(doc.move_to("zed", QueueList::Live, 0), Err(QueueError::UnknownParticipant("zed".into())));
    assert_eq!(doc.move_to("a", QueueList::Pending, 2), Err(QueueError::InvalidIndex { index: 2, len: 1 }));
    assert_eq!(doc.move_to("a", QueueList::Live, 3), Err(QueueError::InvalidIndex { index: 3, len: 1 }));
    assert_queue(&doc, &["a", "b"], &["x"]);
}

#[test]
fn a_move_keeps_fields_clients_added_to_the_item() {
    let client = TestClient::new(7);
    let extra = HashMap::from([
        ("userId".to_owned(), Any::from("alice")),
        ("name".to_owned(), Any::from("Alice")),
        ("handRaisedAt".to_owned(), Any::from(1234.0)),
    ]);
    client.push_raw(QueueList::Pending, Any::from(extra.clone()));
    let mut doc = QueueDoc::from_state(&client.state()).unwrap();
    doc.promote("alice").unwrap();
    let (_, live) = doc.raw_json();
    assert_eq!(live, Any::from(vec![Any::from(extra)]));
}

#[test]
fn promoting_appends_to_live() {
    let mut doc = queue_of(&["a", "b"], &["x"]);
    doc.promote("a").unwrap();
    assert_queue(&doc, &["b"], &["x", "a"]);
    assert_eq!(doc.promote("a").unwrap(), None, "already live");
    assert_eq!(doc.promote("zed"), Err(QueueError::UnknownParticipant("zed".into())));
}

#[test]
fn removing_takes_every_item_of_the_user() {
    let client = TestClient::new(3);
    client.push(QueueList::Pending, "a");
    client.push(QueueList::Pending, "b");
    client.push(QueueList::Pending, "a");
    client.push(QueueList::Live, "a");
    let mut doc = QueueDoc::from_state(&client.state()).unwrap();
    doc.remove("a").unwrap();
    assert_queue(&doc, &["b"], &[]);
    assert_eq!(doc.raw_json().0, Any::from(vec![item("b", "B")]));
    assert_eq!(doc.remove("a"), Err(QueueError::UnknownParticipant("a".into())));
}

#[test]
fn server_updates_bring_a_client_to_the_same_queue() {
    let mut server = queue_of(&["a", "b", "c"], &[]);
    let client = TestClient::synced(9, &server);
    for update in [
        server.add("d", "D").unwrap(),
        server.move_to("c", QueueList::Pending, 0).unwrap(),
        server.promote("a").unwrap(),
        server.remove("b").unwrap(),
    ] {
        client.apply(&update.expect("a change"));
    }
    assert_queue(&server, &["c", "d"], &["a"]);
    assert_eq!(client.view(), server.view());
    assert_eq!(client.raw_json(), server.raw_json());
}

#[test]
fn state_round_trips_through_bytes_and_serde() {
    let mut doc = queue_of(&["a", "b"], &["x"]);
    doc.promote("b").unwrap();
    let copy = QueueDoc::from_state(&doc.encode_state()).unwrap();
    assert_eq!(copy.view(), doc.view());
    let json = serde_json::to_string(&doc).unwrap();
    let back: QueueDoc = serde_json::from_str(&json).unwrap();
    assert_eq!(back.view(), doc.view());
    assert!(serde_json::from_str::<QueueDoc>("\"not base64!\"").is_err());
    assert!(serde_json::from_str::<QueueDoc>("\"AAAA\"").is_ok(), "an empty update is an empty queue");
}

#[test]
fn a_late_joiner_gets_what_it_lacks_from_the_state_vector() {
    let server = queue_of(&["a"], &["b"]);
    let late = TestClient::new(11);
    let empty_sv = StateVector::default().encode_v1();
    late.apply(&server.encode_diff(&empty_sv).unwrap());
    assert_eq!(late.view(), server.view());
    assert_eq!(server.encode_diff(&[0xff]), Err(QueueError::MalformedStateVector));
}

#[test]
fn malformed_updates_are_errors_not_panics() {
    let mut doc = queue_of(&["a"], &[]);
    let huge_client = {
        // One block from client 2^60: past the 53 bits Yjs allows.
        let mut bytes = vec![1, 1];
        let mut id: u64 = 1 << 60;
        while id >= 0x80 {
            bytes.push((id as u8 & 0x7f) | 0x80);
            id >>= 7;
        }
        bytes.push(id as u8);
        bytes.extend([0, 0]);
        bytes
    };
    for garbage in [vec![], vec![0xff; 12], vec![1, 1, 5, 0, 0x28], vec![1, 0, 0], huge_client] {
        assert_eq!(doc.apply_update(&garbage), Err(QueueError::MalformedUpdate), "{garbage:?}");
    }
    assert!(QueueDoc::from_state(&[0xff]).is_err());
    assert_queue(&doc, &["a"], &[]);
}

#[test]
fn the_view_skips_invalid_items_and_losing_duplicates() {
    let client = TestClient::new(5);
    client.push_raw(QueueList::Pending, Any::from(42.0));
    client.push(QueueList::Pending, "a");
    client.push_raw(QueueList::Pending, Any::from(HashMap::from([("name".to_owned(), Any::from("anon"))])));
    client.push_raw(QueueList::Pending, Any::from(HashMap::from([("userId".to_owned(), Any::from(7.0))])));
    client.push(QueueList::Pending, "b");
    client.push(QueueList::Pending, "a");
    client.push(QueueList::Pending, "x");
    client.push(QueueList::Live, "x");
    client.push_raw(QueueList::Live, Any::from(HashMap::from([("userId".to_owned(), Any::from("y"))])));
    let doc = QueueDoc::from_state(&client.state()).unwrap();
    let view = doc.view();
    assert_eq!(users(&view.pending), ["a", "b"]);
    assert_eq!(users(&view.live), ["x", "y"]);
    assert_eq!(view.live[1].name, "y", "a missing name falls back to the user id");
}

#[test]
fn repair_removes_what_breaks_the_invariants_and_says_why() {
    let client = TestClient::new(5);
    client.push_raw(QueueList::Pending, Any::from("just a string"));
    client.push(QueueList::Pending, "a");
    client.push(QueueList::Pending, "x");
    client.push(QueueList::Pending, "a");
    client.push(QueueList::Live, "x");
    client.push(QueueList::Live, "x");
    let mut doc = QueueDoc::from_state(&client.state()).unwrap();
    let view_before = doc.view();

    let repair = doc.repair().expect("something to repair");

    let removed = |list, index, user: Option<&str>, reason| RemovedEntry {
        list,
        index,
        user_id: user.map(str::to_owned),
        reason,
    };
    assert_eq!(
        repair.removed,
        vec![
            removed(QueueList::Pending, 0, None, RemovalReason::MissingUserId),
            removed(QueueList::Pending, 2, Some("x"), RemovalReason::AlreadyLive),
            removed(QueueList::Pending, 3, Some("a"), RemovalReason::Duplicate),
            removed(QueueList::Live, 1, Some("x"), RemovalReason::Duplicate),
        ]
    );
    assert_eq!(doc.view(), view_before, "the view already read through the rules");
    assert_eq!(doc.raw_json(), (Any::from(vec![item("a", "A")]), Any::from(vec![item("x", "X")])));
    assert_eq!(doc.repair(), None, "a repaired queue needs no repair");

    client.apply(&repair.update);
    assert_eq!(client.raw_json(), doc.raw_json());
}

#[test]
fn repair_is_the_same_on_every_copy() {
    let client = TestClient::new(5);
    for user in ["a", "b", "a", "c", "b"] {
        client.push(QueueList::Pending, user);
    }
    client.push(QueueList::Live, "c");
    let mut one = QueueDoc::from_state(&client.state()).unwrap();
    let mut two = QueueDoc::from_state(&client.state()).unwrap();
    let first = one.repair().unwrap();
    let second = two.repair().unwrap();
    assert_eq!(first, second, "same removals, same update bytes");
    let before = two.fingerprint();
    one.apply_update(&second.update).unwrap();
    two.apply_update(&first.update).unwrap();
    assert_eq!(two.fingerprint(), before, "each copy's repair is a no-op for the other");
    assert_eq!(one.raw_json(), two.raw_json());
}

/// Two moderators' clients edit concurrently; the server merges both, repairs,
/// and everyone (server, both clients) must end up with the same duplicate-free
/// queue once the repair reaches them.
/// Returns whether a repair was needed.
fn converge(server: &mut QueueDoc, one: &TestClient, two: &TestClient, edit_one: Vec<u8>, edit_two: Vec<u8>) -> bool {
    server.apply_update(&edit_one).unwrap();
    server.apply_update(&edit_two).unwrap();
    let repair = server.repair();
    one.apply(&edit_two);
    two.apply(&edit_one);
    if let Some(repair) = &repair {
        one.apply(&repair.update);
        two.apply(&repair.update);
    }
    assert_no_duplicates(&server.view());
    assert_eq!(one.view(), server.view());
    assert_eq!(two.view(), server.view());
    assert_eq!(one.raw_json(), server.raw_json(), "raw arrays, not only the views, agree");
    assert_eq!(two.raw_json(), server.raw_json());
    assert_eq!(server.repair(), None);
    repair.is_some()
}

#[test]
fn concurrent_moves_within_a_list_keep_the_first_copy() {
    let mut server = queue_of(&["a", "b", "c", "d"], &[]);
    let one = TestClient::synced(101, &server);
    let two = TestClient::synced(202, &server);
    let edit_one = one.move_user("a", QueueList::Pending, 3);
    let edit_two = two.move_user("a", QueueList::Pending, 1);

    server.apply_update(&edit_one).unwrap();
    server.apply_update(&edit_two).unwrap();
    // Both deleted the same item and each inserted a copy: two "a"s.
    let (pending, _) = server.raw_json();
    let Any::Array(raw) = pending else { panic!("an array") };
    assert_eq!(raw.len(), 5);

    let repair = server.repair().expect("a duplicate to remove");
    assert_eq!(repair.removed.len(), 1);
    assert_eq!(repair.removed[0].reason, RemovalReason::Duplicate);
    assert_queue(&server, &["b", "a", "c", "d"], &[]);

    one.apply(&edit_two);
    two.apply(&edit_one);
    one.apply(&repair.update);
    two.apply(&repair.update);
    assert_eq!(one.view(), server.view());
    assert_eq!(two.view(), server.view());
    assert_eq!(one.raw_json(), server.raw_json());
    assert_eq!(two.raw_json(), server.raw_json());
}

#[test]
fn concurrent_promote_and_reorder_keep_the_live_copy() {
    let mut server = queue_of(&["a", "b", "c"], &["x"]);
    let one = TestClient::synced(101, &server);
    let two = TestClient::synced(202, &server);
    let edit_one = one.move_user("b", QueueList::Live, 1);
    let edit_two = two.move_user("b", QueueList::Pending, 0);
    assert!(converge(&mut server, &one, &two, edit_one, edit_two));
    assert_queue(&server, &["a", "c"], &["x", "b"]);
}

#[test]
fn concurrent_promotions_of_the_same_user_keep_one() {
    let mut server = queue_of(&["a", "b"], &["x"]);
    let one = TestClient::synced(101, &server);
    let two = TestClient::synced(202, &server);
    let edit_one = one.move_user("a", QueueList::Live, 0);
    let edit_two = two.move_user("a", QueueList::Live, 1);
    assert!(converge(&mut server, &one, &two, edit_one, edit_two));
    let view = server.view();
    assert_eq!(users(&view.pending), ["b"]);
    assert_eq!(view.live.len(), 2);
}

#[test]
fn concurrent_send_back_and_removal() {
    let mut server = queue_of(&["a"], &["x", "y"]);
    let one = TestClient::synced(101, &server);
    let two = TestClient::synced(202, &server);
    let edit_one = one.move_user("x", QueueList::Pending, 0);
    let edit_two = two.remove_user("x");
    // A delete of the old item plus a re-insert elsewhere: the insert survives.
    assert!(!converge(&mut server, &one, &two, edit_one, edit_two));
    assert_queue(&server, &["x", "a"], &["y"]);
}

#[test]
fn concurrent_inserts_of_the_same_new_user() {
    let mut server = queue_of(&["a"], &[]);
    let one = TestClient::synced(101, &server);
    let two = TestClient::synced(202, &server);
    let edit_one = one.push(QueueList::Pending, "n");
    let edit_two = two.push(QueueList::Live, "n");
    assert!(converge(&mut server, &one, &two, edit_one, edit_two));
    assert_queue(&server, &["a"], &["n"]);
}

/// Many rounds of random concurrent moves by two clients (a fixed-seed
/// generator, so failures reproduce).
#[test]
fn random_concurrent_moves_always_converge_without_duplicates() {
    let mut seed: u64 = 0x5eed;
    let mut next = |below: u32| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) % u64::from(below)) as u32
    };
    let users = ["a", "b", "c", "d", "e", "f"];
    let mut server = queue_of(&users, &[]);
    let one = TestClient::synced(101, &server);
    let two = TestClient::synced(202, &server);
    let mut repairs = 0;
    for _ in 0..60 {
        let mut random_move = |client: &TestClient| {
            let view = client.view();
            let all: Vec<&Entry> = view.pending.iter().chain(&view.live).collect();
            let user = all[next(all.len() as u32) as usize].user_id.clone();
            let list = if next(2) == 0 { QueueList::Pending } else { QueueList::Live };
            let (from, _) = view.position(&user).unwrap();
            let len = client.len(list) - u32::from(from == list);
            client.move_user(&user, list, next(len + 1))
        };
        let edit_one = random_move(&one);
        let edit_two = random_move(&two);
        repairs += usize::from(converge(&mut server, &one, &two, edit_one, edit_two));
        let view = server.view();
        assert_eq!(view.pending.len() + view.live.len(), users.len(), "nobody lost, nobody doubled");
    }
    assert!(repairs >= 5, "the moves collided often enough to test the repair ({repairs})");
}
