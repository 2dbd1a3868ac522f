//! A simulated client: one `RegionSession` and one `Outbox`, driven the way the real
//! Client drives them, plus what its app keeps (in memory, and persisted across restarts).

use std::collections::{BTreeMap, BTreeSet};

use meridian::model::{IdempotencyKey, SpaceId};
use meridian::outbox::{Outbox, OutboxEntry};
use meridian::session::{ConnId, Cursor, RegionSession, RequestId};

use super::check::Track;
use super::net::NetId;

/// What an app request in the session is for.
#[derive(Debug, Clone)]
pub enum Pending {
    /// The app joined a space.
    Join(SpaceId),
    /// The outbox submitted the entries at these orders (a batch of one space's, in order).
    Send(Vec<u64>),
    /// The app left a space.
    Leave(SpaceId),
}

/// What the app persisted: cursors (as read from `session.cursors()`, so they may lag)
/// and its own view of each space as it was at that moment.
#[derive(Debug, Clone, Default)]
pub struct Saved {
    /// The cursors.
    pub cursors: BTreeMap<SpaceId, Cursor>,
    /// The app's view of each space, consistent with the cursors.
    pub tracks: BTreeMap<SpaceId, Track>,
}

/// One client device.
#[derive(Debug)]
pub struct Client {
    /// Its bearer token.
    pub token: String,
    /// Incarnation: bumped at each (re)start of the process.
    pub inc: u32,
    /// Whether the process runs.
    pub up: bool,
    /// Whether the platform reports a network.
    pub online: bool,
    /// The session (none while the process is down).
    pub session: Option<RegionSession>,
    /// This incarnation's transports.
    pub conns: BTreeMap<ConnId, NetId>,
    /// The send queue (in memory; rebuilt from `persisted` at a restart).
    pub outbox: Outbox,
    /// The outbox changed since sends were last taken from it.
    pub outbox_changed: bool,
    /// The outbox entries in the store.
    pub persisted: BTreeMap<u64, OutboxEntry>,
    /// The requests the session still owes an answer.
    pub pending: BTreeMap<RequestId, Pending>,
    /// The next request id.
    pub next_request: u64,
    /// What the app has seen of each space (in memory).
    pub tracks: BTreeMap<SpaceId, Track>,
    /// What the app persisted.
    pub saved: Saved,
    /// Spaces the app has left (and not joined again): persisted app state.
    pub left: BTreeSet<SpaceId>,
    /// Messages the app had seen but lost with its process, as (space, epoch, seq).
    pub rolled_back: BTreeSet<(SpaceId, u32, u64)>,
    /// Every send the app made, per space, in the order made (the test's record).
    pub sends: BTreeMap<SpaceId, Vec<IdempotencyKey>>,
    /// Sends the app wanted to make while its process was down: made at the next start.
    pub deferred: Vec<SpaceId>,
    /// Counts inputs to the session, to tell which outputs belong together.
    pub batch: u64,
    /// The app wants to persist its cursors once the current input is handled.
    pub save_due: bool,
    /// The earliest time the session's timer may fire again (guards against a timer that
    /// stays in the past after `handle_timeout`).
    pub wake_floor: u64,
    /// The session's `poll_timeout()`, as of the end of its latest input.
    pub deadline: Option<u64>,
    /// Until when the process is frozen (see `Fault::Suspend`).
    pub suspended_until: u64,
    /// When the session's timer last fired, and how many times in a row at that instant.
    pub wake_at: u64,
    /// See `wake_at`.
    pub wakes_at_once: u32,
}

impl Client {
    /// A client that has not started yet.
    pub fn new(index: usize, spaces: &[SpaceId]) -> Self {
        Self {
            token: format!("tok-c{index}"),
            inc: 0,
            up: false,
            online: true,
            session: None,
            conns: BTreeMap::new(),
            outbox: Outbox::new(),
            outbox_changed: false,
            persisted: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_request: 0,
            tracks: spaces
                .iter()
                .map(|s| (s.clone(), Track::default()))
                .collect(),
            saved: Saved::default(),
            left: BTreeSet::new(),
            rolled_back: BTreeSet::new(),
            sends: spaces.iter().map(|s| (s.clone(), Vec::new())).collect(),
            deferred: Vec::new(),
            batch: 0,
            save_due: false,
            wake_floor: 0,
            deadline: None,
            suspended_until: 0,
            wake_at: 0,
            wakes_at_once: 0,
        }
    }

    /// A fresh request id.
    pub fn request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }
}
