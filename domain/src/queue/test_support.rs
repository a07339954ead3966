//! A stand-in for a browser's Yjs client in tests: its own `yrs::Doc` with its
//! own client id, editing the arrays the way y-websocket apps do (plain
//! objects; a move is a delete plus an insert). The service's tests use
//! [`TestClient`] too, through the crate's `test-support` feature.

use std::collections::HashMap;

use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::{Any, Array, ArrayRef, Doc, Out, ReadTxn, StateVector, Transact, TransactionMut, Update};

use super::document::{QueueDoc, QueueList, QueueView};

pub struct TestClient {
    doc: Doc,
    pending: ArrayRef,
    live: ArrayRef,
}

pub(crate) fn item(user_id: &str, name: &str) -> Any {
    Any::from(HashMap::from([("userId".to_owned(), Any::from(user_id)), ("name".to_owned(), Any::from(name))]))
}

impl TestClient {
    pub fn new(client_id: u64) -> Self {
        let doc = Doc::with_client_id(client_id);
        let pending = doc.get_or_insert_array("pending");
        let live = doc.get_or_insert_array("live");
        TestClient { doc, pending, live }
    }

    /// A client that already holds everything `server` has.
    pub fn synced(client_id: u64, server: &QueueDoc) -> Self {
        let client = Self::new(client_id);
        client.apply(&server.encode_state());
        client
    }

    pub fn state(&self) -> Vec<u8> {
        self.doc.transact().encode_state_as_update_v1(&StateVector::default())
    }

    pub fn apply(&self, update: &[u8]) {
        let update = Update::decode_v1(update).expect("a valid update");
        self.doc.transact_mut().apply_update(update).expect("update applies");
    }

    fn array(&self, list: QueueList) -> &ArrayRef {
        match list {
            QueueList::Pending => &self.pending,
            QueueList::Live => &self.live,
        }
    }

    fn edit(&self, change: impl FnOnce(&mut TransactionMut)) -> Vec<u8> {
        let mut txn = self.doc.transact_mut();
        change(&mut txn);
        txn.commit();
        txn.encode_update_v1()
    }

    /// Appends a raw value (any JSON-like value, valid or not).
    pub fn push_raw(&self, list: QueueList, value: Any) -> Vec<u8> {
        let array = self.array(list);
        self.edit(|txn| {
            let end = array.len(txn);
            array.insert(txn, end, value);
        })
    }

    /// Appends several users in one insert (one Yjs item holding them all).
    pub fn push_many(&self, list: QueueList, user_ids: &[String]) -> Vec<u8> {
        let array = self.array(list);
        self.edit(|txn| {
            let end = array.len(txn);
            let values: Vec<Any> = user_ids.iter().map(|u| item(u, &u.to_uppercase())).collect();
            array.insert_range(txn, end, values);
        })
    }

    pub fn push(&self, list: QueueList, user_id: &str) -> Vec<u8> {
        self.push_raw(list, item(user_id, &user_id.to_uppercase()))
    }

    fn find(&self, user_id: &str) -> Option<(QueueList, u32, Any)> {
        let txn = self.doc.transact();
        [QueueList::Pending, QueueList::Live].into_iter().find_map(|list| {
            self.array(list).iter(&txn).enumerate().find_map(|(i, out)| match out {
                Out::Any(value @ Any::Map(_)) => {
                    let Any::Map(map) = &value else { unreachable!() };
                    (map.get("userId") == Some(&Any::from(user_id))).then(|| (list, i as u32, value.clone()))
                }
                _ => None,
            })
        })
    }

    /// Moves the first raw item of `user_id` to raw index `index` of `list`
    /// (counted after the removal), like `arr.delete(i); arr.insert(j, [v])`.
    pub fn move_user(&self, user_id: &str, list: QueueList, index: u32) -> Vec<u8> {
        let (from, raw, value) = self.find(user_id).expect("user present");
        self.edit(|txn| {
            self.array(from).remove(txn, raw);
            self.array(list).insert(txn, index, value);
        })
    }

    pub fn remove_user(&self, user_id: &str) -> Vec<u8> {
        let (from, raw, _) = self.find(user_id).expect("user present");
        self.edit(|txn| self.array(from).remove(txn, raw))
    }

    pub fn len(&self, list: QueueList) -> u32 {
        self.array(list).len(&self.doc.transact())
    }

    /// The client's content read through the server's rules.
    pub fn view(&self) -> QueueView {
        QueueDoc::from_state(&self.state()).expect("valid state").view()
    }

    pub fn raw_json(&self) -> (Any, Any) {
        let txn = self.doc.transact();
        (self.pending.to_json(&txn), self.live.to_json(&txn))
    }
}

/// A server doc holding `pending` and `live` users, written by client 1 (so
/// other clients can be built from its state).
#[cfg(test)]
pub(crate) fn queue_of(pending: &[&str], live: &[&str]) -> QueueDoc {
    let client = TestClient::new(1);
    for user in pending {
        client.push(QueueList::Pending, user);
    }
    for user in live {
        client.push(QueueList::Live, user);
    }
    QueueDoc::from_state(&client.state()).expect("valid state")
}

#[cfg(test)]
pub(crate) fn users(entries: &[super::document::Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.user_id.as_str()).collect()
}
