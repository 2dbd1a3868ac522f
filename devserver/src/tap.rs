//! The test tap: a record of everything a region received.
//!
//! Owns: an append-only, in-memory log per region of connect attempts, events (with their
//! raw JSON payload, recorded before any validation) and disconnects. Tests use it to prove
//! that nothing reached a region a policy forbids. Must never log what it records (it holds
//! message bodies) and must never influence how a region answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use meridian::ErrorCode;
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

#[derive(Default)]
struct Log {
    records: VecDeque<TapRecord>,
    dropped: u64,
}

/// A region's tap. Cheap to clone: every clone shares the same log.
#[derive(Clone)]
pub struct RegionTap {
    region: RegionId,
    log: Arc<Mutex<Log>>,
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
        let mut log = self.lock();
        log.records.clear();
        log.dropped = 0;
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

    pub(crate) fn record(&self, user: Option<UserId>, kind: TapKind) {
        let record = TapRecord {
            region: self.region.clone(),
            user,
            at_ms: crate::state::now_ms(),
            kind,
        };
        let mut log = self.lock();
        if log.records.len() >= TAP_CAPACITY {
            log.records.pop_front();
            log.dropped += 1;
        }
        log.records.push_back(record);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
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
