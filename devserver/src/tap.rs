//! The test taps: a record of everything a region received, and of everything the relay
//! between regions carried.
//!
//! Owns: an append-only, bounded, in-memory log per region of connect attempts, events
//! (with their raw JSON payload, recorded before any validation) and disconnects
//! ([`RegionTap`]); and one for the relay of every envelope it carried or withheld
//! ([`RelayTap`]). Tests use them to prove that nothing reached a region a policy forbids,
//! that a data-sovereignty space's text never reached a region in plaintext, and that the
//! relay only ever carried sealed bytes. Must never log what it records (it holds message
//! bodies) and must never influence how a region or the relay behaves.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use meridian::ErrorCode;
use meridian::envelope::SealedPayload;
use meridian::model::{RegionId, UserId};

/// What a region received.
#[derive(Clone, PartialEq)]
pub enum TapKind {
    /// A Socket.IO connect attempt, accepted or refused.
    Connect {
        /// Whether the region accepted it.
        accepted: bool,
        /// Why it was refused (`unauthorized`, `policy_violation`, ...).
        refused_with: Option<ErrorCode>,
    },
    /// An application event.
    Event {
        /// The event name, exactly as received (unknown names included).
        name: String,
        /// The raw payload: the single argument when exactly one was sent, otherwise
        /// the array of every argument.
        payload: serde_json::Value,
        /// Whether the client asked for an ack.
        wants_ack: bool,
    },
    /// The socket went away.
    Disconnect,
}

/// One thing a region received.
#[derive(Clone, PartialEq)]
pub struct TapRecord {
    /// The region that received it.
    pub region: RegionId,
    /// Who sent it, when the token resolved to a user.
    pub user: Option<UserId>,
    /// When it was received (ms since the Unix epoch).
    pub at_ms: u64,
    /// What it was.
    pub kind: TapKind,
}

impl TapRecord {
    /// The event name, for event records.
    pub fn event_name(&self) -> Option<&str> {
        match &self.kind {
            TapKind::Event { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The raw payload, for event records.
    pub fn payload(&self) -> Option<&serde_json::Value> {
        match &self.kind {
            TapKind::Event { payload, .. } => Some(payload),
            _ => None,
        }
    }

    /// Whether `text` appears anywhere in the record's payload (for plaintext leak checks).
    pub fn mentions(&self, text: &str) -> bool {
        match &self.kind {
            TapKind::Event { name, payload, .. } => {
                name.contains(text) || payload.to_string().contains(text)
            }
            _ => false,
        }
    }

    /// Whether the record is an event whose payload carries a sealed payload (a `sealed`
    /// object at its top level, as `message:send` does for a sealed send).
    pub fn is_sealed(&self) -> bool {
        self.payload()
            .and_then(|p| p.get("sealed"))
            .is_some_and(serde_json::Value::is_object)
    }
}

// Records carry message bodies: Debug shows their shape only.
impl std::fmt::Debug for TapKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect {
                accepted,
                refused_with,
            } => f
                .debug_struct("Connect")
                .field("accepted", accepted)
                .field("refused_with", refused_with)
                .finish(),
            Self::Event {
                name,
                payload,
                wants_ack,
            } => f
                .debug_struct("Event")
                .field("name", name)
                .field(
                    "payload",
                    &format_args!("<{} bytes>", payload.to_string().len()),
                )
                .field("wants_ack", wants_ack)
                .finish(),
            Self::Disconnect => f.write_str("Disconnect"),
        }
    }
}

impl std::fmt::Debug for TapRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapRecord")
            .field("region", &self.region)
            .field("user", &self.user)
            .field("kind", &self.kind)
            .finish()
    }
}

/// How many records a tap keeps; older ones are dropped (and counted) so that a
/// long-running devserver does not grow without bound.
pub const TAP_CAPACITY: usize = 100_000;

/// A bounded log: the newest [`TAP_CAPACITY`] records, and how many older ones went.
struct Log<T> {
    records: VecDeque<T>,
    dropped: u64,
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Self {
            records: VecDeque::new(),
            dropped: 0,
        }
    }
}

impl<T> Log<T> {
    fn push(&mut self, record: T) {
        if self.records.len() >= TAP_CAPACITY {
            self.records.pop_front();
            self.dropped += 1;
        }
        self.records.push_back(record);
    }

    fn clear(&mut self) {
        self.records.clear();
        self.dropped = 0;
    }
}

fn lock_log<T>(log: &Mutex<Log<T>>) -> std::sync::MutexGuard<'_, Log<T>> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A region's tap. Cheap to clone: every clone shares the same log.
#[derive(Clone)]
pub struct RegionTap {
    region: RegionId,
    log: Arc<Mutex<Log<TapRecord>>>,
}

impl std::fmt::Debug for RegionTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log = self.lock();
        f.debug_struct("RegionTap")
            .field("region", &self.region)
            .field("records", &log.records.len())
            .field("dropped", &log.dropped)
            .finish()
    }
}

impl RegionTap {
    /// An empty tap for `region`.
    pub fn new(region: RegionId) -> Self {
        Self {
            region,
            log: Arc::default(),
        }
    }

    /// The region this tap listens to.
    pub fn region(&self) -> &RegionId {
        &self.region
    }

    /// Everything recorded so far, oldest first.
    pub fn records(&self) -> Vec<TapRecord> {
        self.lock().records.iter().cloned().collect()
    }

    /// How many old records were dropped to stay within [`TAP_CAPACITY`]. A test that
    /// proves an absence must check that this is 0.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Forgets everything recorded so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The event records sent by `user`, oldest first.
    pub fn events_from(&self, user: &UserId) -> Vec<TapRecord> {
        self.lock()
            .records
            .iter()
            .filter(|r| r.user.as_ref() == Some(user) && matches!(r.kind, TapKind::Event { .. }))
            .cloned()
            .collect()
    }

    /// The connect attempts recorded so far, oldest first.
    pub fn connects(&self) -> Vec<TapRecord> {
        self.lock()
            .records
            .iter()
            .filter(|r| matches!(r.kind, TapKind::Connect { .. }))
            .cloned()
            .collect()
    }

    /// Whether any record mentions `text` (see [`TapRecord::mentions`]).
    pub fn saw_text(&self, text: &str) -> bool {
        self.lock().records.iter().any(|r| r.mentions(text))
    }

    /// The proof that no plaintext of `text` reached the region: true when no record
    /// mentions it **and** no record was dropped (an absence can't be proven from a log
    /// that lost its oldest part).
    pub fn never_saw_text(&self, text: &str) -> bool {
        let log = self.lock();
        log.dropped == 0 && !log.records.iter().any(|r| r.mentions(text))
    }

    /// The records that mention `text`, oldest first (what to show when a leak check fails).
    pub fn records_mentioning(&self, text: &str) -> Vec<TapRecord> {
        self.lock()
            .records
            .iter()
            .filter(|r| r.mentions(text))
            .cloned()
            .collect()
    }

    /// How many events the region received (frames from clients; connects and
    /// disconnects are not counted).
    pub fn frames(&self) -> usize {
        self.lock()
            .records
            .iter()
            .filter(|r| matches!(r.kind, TapKind::Event { .. }))
            .count()
    }

    /// How many of those events carried a sealed payload (see [`TapRecord::is_sealed`]).
    pub fn sealed_frames(&self) -> usize {
        self.lock().records.iter().filter(|r| r.is_sealed()).count()
    }

    pub(crate) fn record(&self, user: Option<UserId>, kind: TapKind) {
        let record = TapRecord {
            region: self.region.clone(),
            user,
            at_ms: crate::state::now_ms(),
            kind,
        };
        self.lock().push(record);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log<TapRecord>> {
        lock_log(&self.log)
    }
}

/// One envelope the relay carried from one region to another, or withheld.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRecord {
    /// The region that handed it to the relay.
    pub from: RegionId,
    /// The region it was for.
    pub to: RegionId,
    /// The envelope's id (random; the sealed payload is bound to it).
    pub id: String,
    /// The sealed payload the relay carried; `None` when the notification was withheld
    /// (nothing is ever sealed for a region a policy forbids).
    pub sealed: Option<SealedPayload>,
    /// Whether the sending region withheld it because a policy forbids the target region
    /// to hold what it says (never sent).
    pub withheld: bool,
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
}

impl RelayRecord {
    /// Everything the relay saw of this envelope, as one text: region ids, the id, and the
    /// sealed payload's suite and base64 bytes.
    fn seen_text(&self) -> String {
        let mut text = format!("{} {} {}", self.from, self.to, self.id);
        if let Some(sealed) = &self.sealed {
            text.push(' ');
            text.push_str(&sealed.suite);
            text.push(' ');
            text.push_str(&sealed.enc);
            text.push(' ');
            text.push_str(&sealed.ct);
        }
        text
    }
}

/// The relay's tap: every envelope it carried between regions, and every notification a
/// region withheld instead of relaying. Cheap to clone: every clone shares the same log.
#[derive(Clone, Default)]
pub struct RelayTap {
    log: Arc<Mutex<Log<RelayRecord>>>,
}

impl std::fmt::Debug for RelayTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log = self.lock();
        f.debug_struct("RelayTap")
            .field("records", &log.records.len())
            .field("dropped", &log.dropped)
            .finish()
    }
}

impl RelayTap {
    /// An empty tap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything recorded so far, oldest first.
    pub fn records(&self) -> Vec<RelayRecord> {
        self.lock().records.iter().cloned().collect()
    }

    /// The envelopes carried from `from` to `to`, oldest first.
    pub fn carried(&self, from: &RegionId, to: &RegionId) -> Vec<RelayRecord> {
        self.lock()
            .records
            .iter()
            .filter(|r| !r.withheld && &r.from == from && &r.to == to)
            .cloned()
            .collect()
    }

    /// The notifications withheld, oldest first.
    pub fn withheld(&self) -> Vec<RelayRecord> {
        self.lock()
            .records
            .iter()
            .filter(|r| r.withheld)
            .cloned()
            .collect()
    }

    /// How many envelopes the relay carried (withheld ones are not counted: they were
    /// never sent).
    pub fn frames(&self) -> usize {
        self.lock().records.iter().filter(|r| !r.withheld).count()
    }

    /// How many of the carried envelopes held a sealed payload: always [`RelayTap::frames`],
    /// since the relay can carry nothing else; the summary states it.
    pub fn sealed_frames(&self) -> usize {
        self.lock()
            .records
            .iter()
            .filter(|r| !r.withheld && r.sealed.is_some())
            .count()
    }

    /// Whether `text` appears anywhere in what the relay saw (region ids, envelope ids,
    /// sealed bytes). A message body or a notified user's id must never.
    pub fn saw_text(&self, text: &str) -> bool {
        self.lock()
            .records
            .iter()
            .any(|r| r.seen_text().contains(text))
    }

    /// How many old records were dropped to stay within [`TAP_CAPACITY`]. A test that
    /// proves an absence must check that this is 0.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Forgets everything recorded so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn record(
        &self,
        from: RegionId,
        to: RegionId,
        id: String,
        sealed: Option<SealedPayload>,
    ) {
        let withheld = sealed.is_none();
        self.lock().push(RelayRecord {
            from,
            to,
            id,
            sealed,
            withheld,
            at_ms: crate::state::now_ms(),
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log<RelayRecord>> {
        lock_log(&self.log)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_tap_filters_events_by_user_and_never_shows_payloads_in_debug() {
        let tap = RegionTap::new(RegionId::new_unchecked("eu-west"));
        let ana = UserId::new_unchecked("ana");
        tap.record(
            Some(ana.clone()),
            TapKind::Connect {
                accepted: true,
                refused_with: None,
            },
        );
        tap.record(
            Some(ana.clone()),
            TapKind::Event {
                name: "message:send".into(),
                payload: serde_json::json!({"body": "secret words"}),
                wants_ack: true,
            },
        );
        assert_eq!(tap.records().len(), 2);
        assert_eq!(tap.events_from(&ana).len(), 1);
        assert!(tap.saw_text("secret words"));
        assert!(!format!("{:?}", tap.records()).contains("secret words"));
        tap.clone().clear();
        assert!(tap.records().is_empty());
    }

    #[test]
    fn a_full_tap_drops_its_oldest_records_and_says_so() {
        let tap = RegionTap::new(RegionId::new_unchecked("eu-west"));
        for _ in 0..TAP_CAPACITY + 5 {
            tap.record(None, TapKind::Disconnect);
        }
        assert_eq!(tap.records().len(), TAP_CAPACITY);
        assert_eq!(tap.dropped(), 5);
        tap.clear();
        assert_eq!(tap.dropped(), 0);
    }
}
