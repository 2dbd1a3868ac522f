//! The outbox: every send, from the moment the app makes it until the region stores it.
//!
//! Owns: the queue of sends in the order the app made them, one batch in flight per space, what
//! is retried and what has failed for good. It is a sans-IO state machine: the client
//! persists what it returns (each entry is written to the [`crate::store::Store`] before
//! `send_message` returns) and submits what it hands out. Must never do IO or drop an entry
//! that wasn't stored by the region, failed for good, or cancelled by the app.
//!
//! Ordering: sends to one space are submitted in the order made, one batch at a time (the
//! sends queued when the previous batch is answered, up to a maximum). A send that
//! fails for good (policy, not found, invalid) is marked failed and steps out of line: the
//! sends after it go on. The app sees the failure (event and handle), and can retry it,
//! which puts it at the back of its space's line, or cancel it.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};
use crate::model::{IdempotencyKey, SendReceipt, SpaceId};
use crate::protocol::SendRequest;
use crate::sorted::SortedMap;

/// The store namespace of outbox entries.
pub const NAMESPACE: &str = "outbox";

/// Where a send stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SendStatus {
    /// Waiting for its turn or for the region's answer.
    Queued,
    /// Refused for good; kept until the app retries or cancels it.
    Failed {
        /// The error's code.
        code: ErrorCode,
        /// The error's message.
        message: String,
    },
}

/// One send in the outbox.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Its idempotency key: the region stores it once, however often it is sent.
    pub key: IdempotencyKey,
    /// The space.
    pub space: SpaceId,
    /// The text.
    pub body: String,
    /// W3C traceparent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// Position in the outbox: the order the app made its sends in (a retry moves it back).
    pub order: u64,
    /// Where it stands.
    pub status: SendStatus,
}

impl crate::json::ToJson for OutboxEntry {
    fn to_json(&self, w: &mut crate::json::ObjectWriter<'_>) {
        w.str("key", self.key.as_str())
            .str("space", self.space.as_str())
            .str("body", &self.body);
        if let Some(trace) = &self.trace {
            w.str("trace", trace);
        }
        w.num("order", self.order)
            .object("status", |w| match &self.status {
                SendStatus::Queued => {
                    w.str("state", "queued");
                }
                SendStatus::Failed { code, message } => {
                    w.str("state", "failed")
                        .str("code", code.as_str())
                        .str("message", message);
                }
            });
    }
}

impl crate::json::FromJson for SendStatus {
    fn from_json(value: serde_json::Value) -> std::result::Result<Self, String> {
        let mut f = crate::json::Fields::of(value)?;
        let state: String = f.field("state")?;
        match state.as_str() {
            "queued" => Ok(Self::Queued),
            "failed" => Ok(Self::Failed {
                code: f.field("code")?,
                message: f.field("message")?,
            }),
            other => Err(crate::json::unknown_variant(other, &["queued", "failed"])),
        }
    }
}

crate::json::struct_from_json!(OutboxEntry {
    key,
    space,
    body,
    trace,
    order,
    status
});

impl std::fmt::Debug for OutboxEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxEntry")
            .field("key", &self.key)
            .field("space", &self.space)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .field("order", &self.order)
            .field("status", &self.status)
            .finish()
    }
}

impl OutboxEntry {
    /// Its key in the store: sorts in outbox order.
    pub fn store_key(&self) -> String {
        format!("{:020}.{}", self.order, self.key)
    }

    /// What goes on the wire.
    pub fn request(&self) -> SendRequest {
        SendRequest {
            space: self.space.clone(),
            key: self.key.clone(),
            body: self.body.clone(),
            sealed: None,
            trace: self.trace.clone(),
        }
    }

    /// The bytes kept in the store.
    pub fn encode(&self) -> Vec<u8> {
        crate::json::to_text(self).into_bytes()
    }

    /// Reads an entry back from the store; a corrupt record is an error, not a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        crate::json::from_slice(bytes)
            .map_err(|e| Error::Internal(format!("corrupt outbox record: {e}")))
    }

    /// Whether it failed for good.
    pub fn is_failed(&self) -> bool {
        matches!(self.status, SendStatus::Failed { .. })
    }
}

/// What became of a send the region answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Stored by the region: remove the entry from the store.
    Delivered(OutboxEntry, SendReceipt),
    /// Refused for good: persist the entry (now failed).
    Failed(OutboxEntry, Error),
    /// Not settled (the client is closing, the space moved, ...): it stays queued and is
    /// submitted again; nothing to persist.
    Retry(OutboxEntry),
}

/// The outbox state machine.
#[derive(Debug, Default)]
pub struct Outbox {
    entries: SortedMap<u64, OutboxEntry>,
    in_flight: HashSet<u64>,
    next_order: u64,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// The outbox as an earlier run left it (entries read back from the store). When a
    /// send has two records (a crash in the middle of a retry), the newer one wins.
    pub fn restore(entries: impl IntoIterator<Item = OutboxEntry>) -> Self {
        let mut newest: std::collections::HashMap<IdempotencyKey, OutboxEntry> =
            std::collections::HashMap::new();
        for e in entries {
            match newest.get(&e.key) {
                Some(kept) if kept.order >= e.order => {}
                _ => {
                    newest.insert(e.key.clone(), e);
                }
            }
        }
        let entries: SortedMap<u64, OutboxEntry> =
            newest.into_values().map(|e| (e.order, e)).collect();
        let next_order = entries.keys().next_back().map_or(0, |o| o + 1);
        Self {
            entries,
            in_flight: HashSet::new(),
            next_order,
        }
    }

    /// Adds a send at the back of the line. The caller persists the entry before telling
    /// the app it was accepted.
    pub fn add(
        &mut self,
        key: IdempotencyKey,
        space: SpaceId,
        body: String,
        trace: Option<String>,
    ) -> Result<OutboxEntry> {
        if self.entries.values().any(|e| e.key == key) {
            return Err(Error::InvalidInput(format!(
                "send {key} is already in the outbox"
            )));
        }
        let entry = OutboxEntry {
            key,
            space,
            body,
            trace,
            order: self.take_order(),
            status: SendStatus::Queued,
        };
        self.entries.insert(entry.order, entry.clone());
        Ok(entry)
    }

    /// Undoes an [`Self::add`] whose entry could not be persisted.
    pub fn forget(&mut self, order: u64) {
        self.entries.remove(&order);
        self.in_flight.remove(&order);
    }

    /// The sends to submit now, in outbox order: for each space without a send in flight,
    /// its oldest queued sends, at most `max` and each `sendable` (all but the first may
    /// only be taken when sendable; the first always is). They are in flight until
    /// [`Self::settle`]; each batch goes to its region in one request, stored in this order.
    pub fn take_ready(
        &mut self,
        max: usize,
        sendable: impl Fn(u64) -> bool,
    ) -> Vec<Vec<OutboxEntry>> {
        let mut busy: HashSet<SpaceId> = self
            .in_flight
            .iter()
            .filter_map(|o| self.entries.get(o).map(|e| e.space.clone()))
            .collect();
        // A space's batch takes its queued sends until one can't go: later ones wait.
        let mut closed: HashSet<SpaceId> = HashSet::new();
        let mut batches: Vec<Vec<OutboxEntry>> = Vec::new();
        for (order, entry) in self.entries.iter() {
            if entry.status != SendStatus::Queued || closed.contains(&entry.space) {
                continue;
            }
            if busy.insert(entry.space.clone()) {
                batches.push(vec![entry.clone()]);
                self.in_flight.insert(*order);
                // A first send not sendable yet goes alone.
                if !sendable(*order) {
                    closed.insert(entry.space.clone());
                }
                continue;
            }
            let open = batches
                .iter_mut()
                .find(|b| b.first().is_some_and(|first| first.space == entry.space));
            match open {
                Some(batch) if batch.len() < max && sendable(*order) => {
                    batch.push(entry.clone());
                    self.in_flight.insert(*order);
                }
                // In flight from before, or this batch is full: the rest waits its turn.
                _ => {
                    closed.insert(entry.space.clone());
                }
            }
        }
        batches
    }

    /// Records the region's answer to the send at `order` (or the reason it had none).
    pub fn settle(&mut self, order: u64, result: Result<SendReceipt>) -> Option<Settled> {
        self.in_flight.remove(&order);
        let entry = self.entries.get_mut(&order)?;
        Some(match result {
            Ok(receipt) => {
                let entry = self.entries.remove(&order)?;
                Settled::Delivered(entry, receipt)
            }
            Err(error) if settles(&error) => {
                entry.status = SendStatus::Failed {
                    code: error.code(),
                    message: error.to_string(),
                };
                Settled::Failed(entry.clone(), error)
            }
            Err(_) => Settled::Retry(entry.clone()),
        })
    }

    /// Puts a failed send back in line (at the back of it). The caller persists it.
    pub fn retry(&mut self, key: &IdempotencyKey) -> Result<OutboxEntry> {
        let order = self.order_of(key)?;
        let entry = self.entries.get(&order).cloned();
        match entry {
            Some(mut e) if e.is_failed() => {
                self.entries.remove(&order);
                e.order = self.take_order();
                e.status = SendStatus::Queued;
                self.entries.insert(e.order, e.clone());
                Ok(e)
            }
            _ => Err(Error::InvalidInput(format!(
                "send {key} has not failed; only failed sends can be retried"
            ))),
        }
    }

    /// Removes a send that is not on its way to the region. The caller deletes it from
    /// the store.
    pub fn cancel(&mut self, key: &IdempotencyKey) -> Result<OutboxEntry> {
        let order = self.order_of(key)?;
        if self.in_flight.contains(&order) {
            return Err(Error::InvalidInput(format!(
                "send {key} is already on its way to the region and can't be cancelled"
            )));
        }
        self.entries
            .remove(&order)
            .ok_or_else(|| Error::NotFound(format!("send {key}")))
    }

    /// Every send not yet stored, in outbox order.
    pub fn list(&self) -> Vec<OutboxEntry> {
        self.entries.values().cloned().collect()
    }

    /// Whether any send waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry at `order`, if it is still in the outbox.
    pub fn get(&self, order: u64) -> Option<&OutboxEntry> {
        self.entries.get(&order)
    }

    /// The entry of the send with this key, if it is still in the outbox.
    pub fn find(&self, key: &IdempotencyKey) -> Option<&OutboxEntry> {
        self.entries.values().find(|e| &e.key == key)
    }

    fn order_of(&self, key: &IdempotencyKey) -> Result<u64> {
        self.find(key)
            .map(|e| e.order)
            .ok_or_else(|| Error::NotFound(format!("send {key} is not in the outbox")))
    }

    fn take_order(&mut self) -> u64 {
        let order = self.next_order;
        self.next_order += 1;
        order
    }
}

/// Whether an error settles a send for good. Everything else (the client closing, a moved
/// space, an unreachable directory or region) leaves it queued: retried until answered.
fn settles(error: &Error) -> bool {
    !(error.is_transient() || error.code() == ErrorCode::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageId;
    use meridian_test_macros::meridian_test;

    fn key(k: &str) -> IdempotencyKey {
        IdempotencyKey::new_unchecked(k)
    }

    fn space(s: &str) -> SpaceId {
        SpaceId::new_unchecked(s)
    }

    fn receipt(seq: u64) -> SendReceipt {
        SendReceipt {
            message_id: MessageId::new_unchecked(format!("m{seq}")),
            seq,
            sent_at_ms: 0,
        }
    }

    fn keys(entries: &[OutboxEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.key.as_str()).collect()
    }

    /// One send per space at a time (batches of one).
    fn ready(o: &mut Outbox) -> Vec<OutboxEntry> {
        o.take_ready(1, |_| true).into_iter().flatten().collect()
    }

    fn batches(o: &mut Outbox, max: usize, sendable: impl Fn(u64) -> bool) -> Vec<Vec<String>> {
        o.take_ready(max, sendable)
            .iter()
            .map(|b| b.iter().map(|e| e.key.to_string()).collect())
            .collect()
    }

    #[meridian_test]
    fn a_space_s_waiting_sends_go_as_one_batch_in_order_and_the_next_waits_for_it() {
        let mut o = Outbox::new();
        for (k, s) in [
            ("a1", "a"),
            ("b1", "b"),
            ("a2", "a"),
            ("a3", "a"),
            ("a4", "a"),
        ] {
            o.add(key(k), space(s), "x".into(), None).unwrap();
        }
        assert_eq!(
            batches(&mut o, 3, |_| true),
            [vec!["a1", "a2", "a3"], vec!["b1"]]
        );
        o.add(key("b2"), space("b"), "x".into(), None).unwrap();
        assert!(o.take_ready(3, |_| true).is_empty(), "both spaces are busy");
        let orders: Vec<u64> = o.list().iter().take(4).map(|e| e.order).collect();
        // a1, b1, a2, a3 settle: a4 goes next, then b2.
        for (seq, order) in orders.into_iter().enumerate() {
            o.settle(order, Ok(receipt(seq as u64 + 1)));
        }
        assert_eq!(batches(&mut o, 3, |_| true), [vec!["a4"], vec!["b2"]]);
    }

    #[meridian_test]
    fn a_batch_stops_at_the_first_send_not_yet_sendable() {
        let mut o = Outbox::new();
        let a: Vec<OutboxEntry> = ["a1", "a2", "a3"]
            .iter()
            .map(|k| o.add(key(k), space("a"), "x".into(), None).unwrap())
            .collect();
        let (a2, a3) = (a[1].order, a[2].order);
        assert_eq!(batches(&mut o, 8, |order| order != a2), [vec!["a1"]]);
        o.settle(a[0].order, Ok(receipt(1)));
        // The first of a batch is taken even when not sendable (the engine parks it).
        assert_eq!(batches(&mut o, 8, |order| order != a2), [vec!["a2"]]);
        o.settle(a2, Ok(receipt(2)));
        assert_eq!(batches(&mut o, 8, |order| order != a3), [vec!["a3"]]);
    }

    #[meridian_test]
    fn one_send_per_space_is_in_flight_in_the_order_made() {
        let mut o = Outbox::new();
        for (k, s) in [("a1", "a"), ("b1", "b"), ("a2", "a"), ("a3", "a")] {
            o.add(key(k), space(s), "x".into(), None).unwrap();
        }
        assert_eq!(keys(&ready(&mut o)), ["a1", "b1"]);
        assert!(ready(&mut o).is_empty(), "both spaces are busy");
        let first = o.list()[0].order;
        assert!(matches!(
            o.settle(first, Ok(receipt(1))),
            Some(Settled::Delivered(..))
        ));
        assert_eq!(keys(&ready(&mut o)), ["a2"]);
    }

    #[meridian_test]
    fn a_send_refused_for_good_steps_out_of_line_and_the_next_goes_on() {
        let mut o = Outbox::new();
        let a1 = o.add(key("a1"), space("a"), "x".into(), None).unwrap();
        o.add(key("a2"), space("a"), "x".into(), None).unwrap();
        ready(&mut o);
        let refused = Error::PolicyViolation {
            region: crate::model::RegionId::new_unchecked("us-east"),
            reason: "no".into(),
        };
        let Some(Settled::Failed(entry, _)) = o.settle(a1.order, Err(refused)) else {
            panic!("expected a failure")
        };
        assert!(entry.is_failed());
        assert_eq!(keys(&ready(&mut o)), ["a2"]);
        assert_eq!(o.list().len(), 2, "the failed send stays listed");
    }

    #[meridian_test]
    fn transient_errors_leave_the_send_queued_for_another_try() {
        let mut o = Outbox::new();
        let a1 = o.add(key("a1"), space("a"), "x".into(), None).unwrap();
        for error in [
            Error::Closed,
            Error::Moved("eu".into()),
            Error::Transport("reset".into()),
            Error::DirectoryUnavailable("down".into()),
        ] {
            ready(&mut o);
            assert!(matches!(
                o.settle(a1.order, Err(error)),
                Some(Settled::Retry(_))
            ));
        }
        assert_eq!(keys(&ready(&mut o)), ["a1"]);
    }

    #[meridian_test]
    fn failed_sends_can_be_retried_at_the_back_of_the_line_or_cancelled() {
        let mut o = Outbox::new();
        let a1 = o.add(key("a1"), space("a"), "x".into(), None).unwrap();
        o.add(key("a2"), space("a"), "x".into(), None).unwrap();
        ready(&mut o);
        o.settle(a1.order, Err(Error::NotFound("s".into())));
        assert!(o.retry(&key("a2")).is_err(), "a2 has not failed");
        let again = o.retry(&key("a1")).unwrap();
        assert!(again.order > a1.order, "a retry goes to the back");
        assert_eq!(keys(&o.list()), ["a2", "a1"]);
        assert_eq!(keys(&ready(&mut o)), ["a2"]);
        assert!(o.cancel(&key("a2")).is_err(), "a2 is in flight");
        assert_eq!(o.cancel(&key("a1")).unwrap().key, key("a1"));
        assert_eq!(
            o.cancel(&key("zz")).unwrap_err().code(),
            ErrorCode::NotFound
        );
    }

    #[meridian_test]
    fn a_restored_outbox_keeps_its_order_and_numbers_new_sends_after_it() {
        let mut o = Outbox::new();
        o.add(key("a1"), space("a"), "x".into(), None).unwrap();
        o.add(key("a2"), space("a"), "y".into(), None).unwrap();
        let stored: Vec<Vec<u8>> = o.list().iter().map(OutboxEntry::encode).collect();
        let mut restored = Outbox::restore(stored.iter().map(|b| OutboxEntry::decode(b).unwrap()));
        let a3 = restored
            .add(key("a3"), space("a"), "z".into(), None)
            .unwrap();
        assert_eq!(a3.order, 2);
        assert_eq!(keys(&ready(&mut restored)), ["a1"]);
        assert!(OutboxEntry::decode(b"{broken").is_err());
        // A crash mid-retry leaves two records of one send: the newer wins.
        let mut stale = OutboxEntry::decode(&stored[0]).unwrap();
        stale.order = 7;
        let twice = Outbox::restore(
            stored
                .iter()
                .map(|b| OutboxEntry::decode(b).unwrap())
                .chain([stale]),
        );
        assert_eq!(keys(&twice.list()), ["a2", "a1"]);
        assert!(o.add(key("a1"), space("a"), "dup".into(), None).is_err());
    }

    #[meridian_test]
    fn store_keys_sort_in_outbox_order() {
        let mut o = Outbox::new();
        let entries: Vec<_> = (0..12)
            .map(|i| {
                o.add(key(&format!("k{i}")), space("a"), "x".into(), None)
                    .unwrap()
            })
            .collect();
        let mut store_keys: Vec<String> = entries.iter().map(OutboxEntry::store_key).collect();
        let in_order = store_keys.clone();
        store_keys.sort();
        assert_eq!(store_keys, in_order);
    }
}
