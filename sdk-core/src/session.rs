//! One region's connection as a sans-IO state machine.
//!
//! Owns: the lifecycle of the socket to one region (connect, Engine.IO handshake,
//! Socket.IO auth, heartbeat, backoff, reconnect), the subscriptions to that region's
//! spaces (rejoin with `since` after every reconnect, in-order delivery, dedup by seq), and
//! the requests in flight (ack ids, re-send after reconnect, deadlines).
//!
//! It takes inputs (transport opened / frame / closed, requests, the current time) and
//! yields [`Output`]s (open a transport, transmit a frame, close, events). It must never do
//! IO, read a clock, spawn, or decide policy: the engine that drives it does those.
//!
//! ```text
//!            request            ws open          eio open         sio connect
//!   Idle ────────────► Connecting ────► Handshaking ────► Authenticating ────► Open
//!    ▲                     ▲  │ fail        │ fail             │ fail            │ lost /
//!    │ idle timeout        │  ▼             ▼                  ▼                 │ heartbeat
//!    └──── Open        BackingOff ◄─────────┴──────────────────┴─────────────────┘ timeout
//! ```

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde_json::Value;

use crate::backoff::Backoff;
use crate::codec::{EioPacket, SioPacket, SioPacketKind};
use crate::error::{Error, Result};
use crate::json::{self, FromJson, ToJson};
use crate::model::{Message, RegionId, SendReceipt, SpaceId, SpaceLocation};
use crate::protocol::{
    self, Auth, DmCreateRequest, Empty, ErrorBody, HistoryReply, HistoryRequest, JoinReply,
    JoinRequest, LeaveRequest, PresenceEvent, PresenceRequest, Reply, SendBatchReply,
    SendBatchRequest, SendRequest, TypingEvent, event,
};
use crate::sorted::SortedMap;
use crate::time::Instant;

/// Tunables of a region session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// How long a connection attempt (socket + handshake + auth) may take.
    pub connect_timeout: Duration,
    /// Slack added to the server's ping interval + ping timeout before the link is deemed dead.
    pub heartbeat_grace: Duration,
    /// How long a request may wait for its answer, across reconnects.
    pub request_timeout: Duration,
    /// How long a connection with nothing to do stays open.
    pub idle_timeout: Duration,
    /// How long a request on the wire may go unanswered before the link is deemed sick
    /// (the region stalled, or a frame was lost): it is closed and everything re-sent.
    pub ack_timeout: Duration,
    /// How long a hole in a space's seq may stay open before the session asks the region.
    pub gap_timeout: Duration,
    /// Reconnect backoff.
    pub backoff: Backoff,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            heartbeat_grace: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(10),
            gap_timeout: Duration::from_millis(500),
            backoff: Backoff::default(),
        }
    }
}

/// The longest the ack timeout grows to on a slow link.
const MAX_ACK_TIMEOUT: Duration = Duration::from_secs(300);

/// A region that rejects renewed tokens this many times in a row is believed: the work fails.
const MAX_AUTH_REJECTIONS: u32 = 2;

/// Identifies one transport (one WebSocket) of a session; events of old transports are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Identifies an app request, chosen by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// What the app asks of a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Join a space and keep it subscribed across reconnects.
    Join(SpaceId),
    /// Leave a space.
    Leave(SpaceId),
    /// Send a message.
    Send(SendRequest),
    /// Send several messages to one space, stored in the order listed.
    SendBatch(SendBatchRequest),
    /// Read history.
    History(HistoryRequest),
    /// Set presence.
    Presence(PresenceRequest),
    /// Create a DM housed in this region.
    CreateDm(DmCreateRequest),
}

impl Request {
    /// The space this request concerns, if any (the engine's policy gate checks it).
    pub fn space(&self) -> Option<&SpaceId> {
        match self {
            Self::Join(s) | Self::Leave(s) => Some(s),
            Self::Send(r) => Some(&r.space),
            Self::SendBatch(r) => Some(&r.space),
            Self::History(r) => Some(&r.space),
            Self::Presence(_) | Self::CreateDm(_) => None,
        }
    }

    /// Sends to one space in the order to store them: `message:send` for one, a
    /// `message:send_batch` for several.
    pub fn sends(space: SpaceId, mut sends: Vec<SendRequest>) -> Self {
        match sends.pop() {
            Some(only) if sends.is_empty() => Self::Send(only),
            last => {
                sends.extend(last);
                Self::SendBatch(SendBatchRequest {
                    space,
                    messages: sends,
                })
            }
        }
    }

    /// The space of a send or a batch of sends: the session keeps one on the wire per space.
    fn sends_to(&self) -> Option<&SpaceId> {
        matches!(self, Self::Send(_) | Self::SendBatch(_))
            .then(|| self.space())
            .flatten()
    }
}

/// A request's successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Joined; the session now delivers the space's messages after `head_seq`.
    Joined {
        /// The space.
        space: SpaceId,
        /// The newest seq when joined.
        head_seq: u64,
    },
    /// Left.
    Left,
    /// Stored.
    Sent(SendReceipt),
    /// Stored, each send of a batch (its receipts in the batch's order).
    SentBatch(Vec<SendReceipt>),
    /// A page of history.
    History(Vec<Message>),
    /// Presence set.
    PresenceSet,
    /// DM created or found.
    DmCreated(SpaceLocation),
}

impl Response {
    /// What kind of answer this is, for error texts: a name, not the contents.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Joined { .. } => "joined",
            Self::Left => "left",
            Self::Sent(_) => "sent",
            Self::SentBatch(_) => "sent batch",
            Self::History(_) => "history",
            Self::PresenceSet => "presence set",
            Self::DmCreated(_) => "DM created",
        }
    }

    /// The error for an answer that is not the one its request calls for.
    pub(crate) fn unexpected(&self) -> Error {
        Error::Protocol(format!("unexpected answer: {}", self.name()))
    }

    /// The receipts of `count` sends in order, from the answer to their [`Request::Send`] or
    /// [`Request::SendBatch`]; any other answer is handed back.
    pub fn receipts(self, count: usize) -> std::result::Result<Vec<SendReceipt>, Response> {
        match self {
            Self::Sent(receipt) if count == 1 => Ok(vec![receipt]),
            Self::SentBatch(receipts) if receipts.len() == count => Ok(receipts),
            other => Err(other),
        }
    }
}

/// The public connection state of one region, as the app sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not connected, nothing to do.
    Idle,
    /// Connecting (socket, handshake, auth).
    Connecting,
    /// Connected and authenticated.
    Connected,
    /// The platform reported no network; reconnects as soon as it is back.
    Offline,
    /// Lost; retrying after a backoff.
    Reconnecting {
        /// Consecutive failed attempts.
        attempt: u32,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// Closed for good (the app disconnected, or the region refused the user).
    Closed,
}

/// Something the app should hear about.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A request finished.
    Reply {
        /// Which request.
        request: RequestId,
        /// Its outcome.
        result: Result<Response>,
    },
    /// A message, in seq order, once.
    Message(Message),
    /// A member's presence changed.
    Presence(PresenceEvent),
    /// A member is typing.
    Typing(TypingEvent),
    /// The connection state changed.
    State(ConnectionState),
    /// The region rejected the token: the engine should renew it and call
    /// [`RegionSession::set_token`]. Nothing is failed meanwhile.
    TokenRejected,
    /// A subscription could not be restored (the region refused the rejoin).
    SubscriptionLost {
        /// The space.
        space: SpaceId,
        /// Why.
        error: Error,
    },
    /// A notification for the user (mention, DM invite, contact presence).
    Notification(crate::model::Notification),
    /// Messages of a space can't be delivered: seqs `from..=to` passed the region's
    /// retention window, or (`to == None`) the region lost the space's history from `from`
    /// on and its seq numbering started over. The app should resync the space.
    ContinuityLost {
        /// The space.
        space: SpaceId,
        /// The first seq not delivered.
        from: u64,
        /// The last seq not delivered; `None` when the region's history was reset.
        to: Option<u64>,
    },
    /// The region broke the protocol or reported an error outside any request.
    Problem(Error),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Open a WebSocket to `url` and report it with `conn`.
    Connect {
        /// The transport's id.
        conn: ConnId,
        /// Where to connect.
        url: String,
    },
    /// Write one text frame.
    Transmit {
        /// On which transport.
        conn: ConnId,
        /// The frame.
        frame: String,
        /// The space the frame concerns, for the policy gate.
        space: Option<SpaceId>,
    },
    /// Close the transport.
    Close {
        /// Which one.
        conn: ConnId,
    },
    /// Tell the app.
    Event(SessionEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Connecting {
        conn: ConnId,
        since: Instant,
    },
    Handshaking {
        conn: ConnId,
        since: Instant,
    },
    Authenticating {
        conn: ConnId,
        since: Instant,
        heartbeat: Duration,
    },
    Open {
        conn: ConnId,
        heartbeat_deadline: Instant,
        heartbeat: Duration,
    },
    BackingOff {
        until: Instant,
        retry_in: Duration,
    },
    /// The platform says there is no network: wait for it rather than burn retries.
    Offline,
    /// The region rejected the token; waiting for a new one.
    AwaitingToken,
    Closed,
}

#[derive(Debug, Default)]
struct Subscription {
    /// The last seq delivered to the app; `None` until the first join is answered.
    last_seq: Option<u64>,
    /// Whether the region has confirmed the join on the current transport.
    active: bool,
    /// Ack id of the join in flight, if any.
    join_ack: Option<u64>,
    /// When that join was written.
    join_sent_at: Option<Instant>,
    /// App requests waiting for the join.
    waiters: Vec<RequestId>,
    /// Messages that arrived ahead of their turn, by seq, one per seq (the latest kept).
    /// A sorted `Vec` rather than a `BTreeMap`: it is short, filled mostly in order, and
    /// emptied from the front in one go; and a map type of its own costs the web bundle
    /// about 2 KB.
    early: Vec<Message>,
    /// When the oldest unfilled hole was noticed.
    gap_since: Option<Instant>,
    /// The region's history epoch `last_seq` belongs to.
    epoch: Option<String>,
}

#[derive(Debug)]
struct PendingRequest {
    request: Request,
    /// `None` for sends: the outbox retries them until the region answers.
    deadline: Option<Instant>,
    ack: Option<u64>,
    /// When it was last written.
    sent_at: Option<Instant>,
}

#[derive(Debug, Clone)]
enum AckFor {
    Request(RequestId),
    Join(SpaceId),
    Inbox,
}

/// Where the app is in a space's history: what a client persists to resume after a restart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// The last seq delivered to the app.
    pub last_seq: u64,
    /// The history epoch it belongs to (empty when the region doesn't say).
    pub epoch: String,
}

crate::json::struct_from_json!(Cursor { last_seq, epoch });

impl ToJson for Cursor {
    fn to_json(&self, w: &mut json::ObjectWriter<'_>) {
        w.num("last_seq", self.last_seq).str("epoch", &self.epoch);
    }
}

/// The state machine of one region's connection. See the module docs.
#[derive(Debug)]
pub struct RegionSession {
    region: RegionId,
    url: String,
    auth: Auth,
    config: SessionConfig,
    state: State,
    rng: fastrand::Rng,
    attempt: u32,
    next_conn: u64,
    next_ack: u64,
    subscriptions: SortedMap<SpaceId, Subscription>,
    requests: SortedMap<RequestId, PendingRequest>,
    acks: HashMap<u64, AckFor>,
    /// Cursors of spaces not joined yet in this run, from an earlier run.
    restored: HashMap<SpaceId, Cursor>,
    idle_since: Option<Instant>,
    online: bool,
    /// The time of the latest input: sans-IO code knows only the time it is given.
    now: Instant,
    /// The ack timeout in force: starts at the configured one, doubles each time it
    /// tears a link down (up to [`MAX_ACK_TIMEOUT`]).
    ack_timeout: Duration,
    renewable: bool,
    /// The client's key pair, to open sealed deliveries.
    keys: Option<std::sync::Arc<crate::envelope::KeyPair>>,
    /// Whether this session carries the user's notifications.
    inbox: bool,
    /// Consecutive rejections of the token since the last successful connect.
    auth_rejections: u32,
    outputs: VecDeque<Output>,
}

impl RegionSession {
    /// A session for `region` whose Socket.IO endpoint is `socket_url` (`ws://host:port`).
    /// `seed` drives the backoff jitter.
    pub fn new(
        region: RegionId,
        socket_url: &str,
        token: String,
        config: SessionConfig,
        seed: u64,
    ) -> Self {
        let base = socket_url.trim_end_matches('/');
        Self {
            region,
            url: format!("{base}/socket.io/?EIO=4&transport=websocket"),
            auth: Auth {
                token,
                protocol: protocol::PROTOCOL_VERSION,
                public_key: None,
            },
            config,
            state: State::Idle,
            rng: fastrand::Rng::with_seed(seed),
            attempt: 0,
            next_conn: 0,
            next_ack: 0,
            subscriptions: SortedMap::new(),
            requests: SortedMap::new(),
            acks: HashMap::new(),
            restored: HashMap::new(),
            idle_since: None,
            online: true,
            now: Instant::default(),
            ack_timeout: config.ack_timeout,
            renewable: false,
            keys: None,
            inbox: false,
            auth_rejections: 0,
            outputs: VecDeque::new(),
        }
    }

    /// The region this session talks to.
    pub fn region(&self) -> &RegionId {
        &self.region
    }

    /// The connection state as the app sees it.
    pub fn connection_state(&self) -> ConnectionState {
        match self.state {
            State::Idle => ConnectionState::Idle,
            State::Connecting { .. }
            | State::Handshaking { .. }
            | State::Authenticating { .. }
            | State::AwaitingToken => ConnectionState::Connecting,
            State::Open { .. } => ConnectionState::Connected,
            State::BackingOff { retry_in, .. } => ConnectionState::Reconnecting {
                attempt: self.attempt,
                retry_in,
            },
            State::Offline => ConnectionState::Offline,
            State::Closed => ConnectionState::Closed,
        }
    }

    /// The spaces this session keeps subscribed.
    pub fn subscribed(&self) -> impl Iterator<Item = &SpaceId> {
        self.subscriptions.keys()
    }

    /// The last seq delivered for `space`.
    pub fn last_seq(&self, space: &SpaceId) -> Option<u64> {
        self.subscriptions.get(space).and_then(|s| s.last_seq)
    }

    /// The cursor of every subscribed space that has one.
    pub fn cursors(&self) -> impl Iterator<Item = (&SpaceId, Cursor)> {
        self.subscriptions.iter().filter_map(|(space, sub)| {
            sub.last_seq.map(|last_seq| {
                (
                    space,
                    Cursor {
                        last_seq,
                        epoch: sub.epoch.clone().unwrap_or_default(),
                    },
                )
            })
        })
    }

    /// Remembers where an earlier run left `space`: its next join resumes from there,
    /// delivering what was missed (or reporting continuity lost) instead of starting at
    /// the head. Ignored for a space already joined in this run.
    pub fn restore_cursor(&mut self, space: SpaceId, cursor: Cursor) {
        if !self.subscriptions.contains_key(&space) {
            self.restored.insert(space, cursor);
        }
    }

    /// Whether the session has nothing to do (no subscription, no request).
    pub fn is_unused(&self) -> bool {
        self.subscriptions.is_empty() && self.requests.is_empty() && !self.inbox
    }

    /// Makes this (the home region's) session receive the user's notifications: it
    /// connects and subscribes the inbox, again after every reconnect, and never idles out.
    pub fn subscribe_inbox(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.inbox || self.state == State::Closed {
            return;
        }
        self.inbox = true;
        self.idle_since = None;
        if matches!(self.state, State::Open { .. }) {
            self.send_inbox();
        } else {
            self.ensure_connecting(now);
        }
    }

    fn send_inbox(&mut self) {
        let State::Open { conn, .. } = self.state else {
            return;
        };
        let ack = self.next_ack_id();
        self.acks.insert(ack, AckFor::Inbox);
        self.emit(conn, event::INBOX_SUBSCRIBE, "{}", Some(ack), None);
    }

    fn on_notify(&mut self, notify: protocol::Notify) {
        let notification = match (notify.notification, notify.sealed) {
            (Some(n), None) => Ok(n),
            (None, Some(sealed)) => match &self.keys {
                None => Err(Error::Integrity("a sealed notification, and no key".into())),
                Some(keys) => {
                    let inbox = SpaceId::new_unchecked(protocol::INBOX);
                    let binding = crate::envelope::Binding {
                        space: &inbox,
                        message: &notify.id,
                        region: &self.region,
                    };
                    crate::envelope::open(keys, &binding, &sealed).and_then(|bytes| {
                        crate::json::from_slice(&bytes).map_err(|e| {
                            Error::Integrity(format!("a sealed notification does not parse: {e}"))
                        })
                    })
                }
            },
            _ => Err(Error::Protocol(
                "a notification must carry exactly one of notification and sealed".into(),
            )),
        };
        match notification {
            Ok(n) => self.push_event(SessionEvent::Notification(n)),
            Err(e) => self.push_event(SessionEvent::Problem(e)),
        }
    }

    /// Replaces the token used at the next authentication.
    pub fn set_token(&mut self, token: String, now: Instant) {
        self.now = self.now.max(now);
        self.auth.token = token;
        if self.state == State::AwaitingToken {
            self.connect(now);
        }
    }

    /// Whether the session waits for a new token.
    pub fn awaits_token(&self) -> bool {
        self.state == State::AwaitingToken
    }

    /// Gives the session the client's key pair: its public half goes to the region at
    /// auth (what data-sovereignty payloads are sealed to), its private half opens them.
    pub fn set_keys(&mut self, keys: std::sync::Arc<crate::envelope::KeyPair>) {
        self.auth.public_key = Some(keys.public().clone());
        self.keys = Some(keys);
    }

    /// Says whether the engine can renew the token. When it can, a region's rejection of
    /// the token parks the session ([`SessionEvent::TokenRejected`]) until
    /// [`Self::set_token`] instead of failing its work.
    pub fn set_renewable(&mut self, renewable: bool) {
        self.renewable = renewable;
    }

    /// The next thing the driver must do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next instant at which [`Self::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let state = match self.state {
            State::Connecting { since, .. }
            | State::Handshaking { since, .. }
            | State::Authenticating { since, .. } => Some(since + self.config.connect_timeout),
            State::Open {
                heartbeat_deadline, ..
            } => Some(heartbeat_deadline),
            State::BackingOff { until, .. } => Some(until),
            State::Idle | State::Offline | State::AwaitingToken | State::Closed => None,
        };
        let request = self.requests.values().filter_map(|r| r.deadline).min();
        let unanswered = self.oldest_unanswered().map(|t| t + self.ack_timeout);
        let idle = self.idle_since.map(|t| t + self.config.idle_timeout);
        let gap = self
            .subscriptions
            .values()
            .filter(|s| s.active && s.join_ack.is_none())
            .filter_map(|s| s.gap_since)
            .min()
            .map(|t| t + self.config.gap_timeout);
        [state, request, unanswered, idle, gap]
            .into_iter()
            .flatten()
            .min()
    }

    // ----- inputs from the app (through the engine) -----

    /// Starts a request. Its answer comes as [`SessionEvent::Reply`].
    pub fn request(&mut self, id: RequestId, request: Request, now: Instant) {
        self.now = self.now.max(now);
        if self.state == State::Closed {
            self.reply(id, Err(Error::Closed));
            return;
        }
        self.idle_since = None;
        match request {
            Request::Join(space) => self.join(id, space, now),
            Request::Leave(space) => {
                // Forget the subscription at once: nothing more is delivered for it.
                if let Some(sub) = self.subscriptions.remove(&space) {
                    for w in sub.waiters {
                        self.answer(w, Err(Error::Closed));
                    }
                    if let Some(ack) = sub.join_ack {
                        self.acks.remove(&ack);
                    }
                }
                self.enqueue(id, Request::Leave(space), now);
            }
            other => self.enqueue(id, other, now),
        }
        self.ensure_connecting(now);
    }

    /// Sends a typing indicator if connected; typing is ephemeral and never queued.
    pub fn typing(&mut self, typing: TypingEvent) {
        if let State::Open { conn, .. } = self.state {
            let space = typing.space.clone();
            self.emit(
                conn,
                event::TYPING,
                &json::to_text(&typing),
                None,
                Some(space),
            );
        }
    }

    /// Closes the session for good; pending requests fail with [`Error::Closed`].
    pub fn close(&mut self) {
        // The app ended its subscriptions itself: nothing to report as lost. Joins still
        // waiting are answered `Closed` with every other request.
        self.subscriptions.clear();
        self.fail_everything(&Error::Closed);
        self.drop_transport();
        self.set_state(State::Closed);
    }

    /// Drops the connection and fails all work with `error` (the engine calls this when
    /// its policy gate refuses a frame). The session stays usable.
    pub fn abort(&mut self, error: &Error, now: Instant) {
        self.now = self.now.max(now);
        self.fail_everything(error);
        self.drop_transport();
        self.set_state(State::Idle);
        self.idle_since = Some(now);
    }

    /// The platform's network reachability changed.
    ///
    /// Offline: the socket is assumed dead (it is, or is about to be, on every platform
    /// that reports it), so it is closed and no retry runs until the network is back.
    /// Online: a network switch makes the old backoff meaningless, so the session
    /// connects at once if it has work.
    pub fn network_changed(&mut self, online: bool, now: Instant) {
        self.now = self.now.max(now);
        // A repeated "online" still counts: it is how platforms report a network switch.
        if (!online && !self.online) || self.state == State::Closed {
            return;
        }
        self.online = online;
        if !online {
            if self.state != State::Idle {
                self.drop_transport();
                self.set_state(State::Offline);
            }
        } else if matches!(self.state, State::Offline | State::BackingOff { .. }) {
            self.attempt = 0;
            // Another network: what was learned about the old one's speed no longer holds.
            self.ack_timeout = self.config.ack_timeout;
            if self.is_unused() {
                self.set_state(State::Idle);
            } else {
                self.connect(now);
            }
        }
    }

    // ----- inputs from the driver -----

    /// The transport `conn` is open.
    pub fn handle_transport_open(&mut self, conn: ConnId, now: Instant) {
        self.now = self.now.max(now);
        if let State::Connecting { conn: c, .. } = self.state
            && c == conn
        {
            self.state = State::Handshaking { conn, since: now };
        }
    }

    /// The transport `conn` closed or failed.
    pub fn handle_transport_closed(&mut self, conn: ConnId, reason: &str, now: Instant) {
        self.now = self.now.max(now);
        if self.current_conn() == Some(conn) {
            tracing::debug!(region = %self.region, reason, "transport closed");
            self.connection_lost(now);
        }
    }

    /// A text frame arrived on `conn`.
    pub fn handle_frame(&mut self, conn: ConnId, frame: &str, now: Instant) {
        self.now = self.now.max(now);
        if self.current_conn() != Some(conn) {
            return;
        }
        if let Err(e) = self.on_frame(conn, frame, now) {
            tracing::warn!(region = %self.region, error = %e, "closing the connection after a bad frame");
            self.push_event(SessionEvent::Problem(e));
            self.connection_lost(now);
        }
    }

    /// Time passed: checks every deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        match self.state {
            State::Connecting { since, .. }
            | State::Handshaking { since, .. }
            | State::Authenticating { since, .. }
                if now >= since + self.config.connect_timeout =>
            {
                tracing::debug!(region = %self.region, "connect attempt timed out");
                self.connection_lost(now);
            }
            State::Open {
                heartbeat_deadline, ..
            } if now >= heartbeat_deadline => {
                tracing::debug!(region = %self.region, "no heartbeat from the region");
                self.connection_lost(now);
            }
            State::BackingOff { until, .. } if now >= until => self.connect(now),
            State::Open { .. }
                if self
                    .oldest_unanswered()
                    .is_some_and(|t| now >= t + self.ack_timeout) =>
            {
                // Either the link is sick, or it is slower than we assumed (a large page
                // takes longer to arrive than the timeout): doubling lets a slow link make
                // progress instead of being torn down forever.
                self.ack_timeout = (self.ack_timeout * 2).min(MAX_ACK_TIMEOUT);
                tracing::debug!(region = %self.region, ack_timeout_ms = self.ack_timeout.as_millis() as u64, "a request went unanswered; reconnecting");
                self.connection_lost(now);
            }
            _ => {}
        }
        let expired: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline.is_some_and(|d| now >= d))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let error = Error::Timeout(format!("no answer from {}", self.region));
            self.answer(id, Err(error));
        }
        if let Some(t) = self.idle_since
            && now >= t + self.config.idle_timeout
        {
            self.idle_since = None;
            if self.is_unused() && matches!(self.state, State::Open { .. }) {
                tracing::debug!(region = %self.region, "closing idle connection");
                self.drop_transport();
                self.set_state(State::Idle);
            }
        }
        let gapped: Vec<SpaceId> = self
            .subscriptions
            .iter()
            .filter(|(_, s)| {
                s.active
                    && s.join_ack.is_none()
                    && s.gap_since
                        .is_some_and(|t| now >= t + self.config.gap_timeout)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for space in gapped {
            // A rejoin with `since` is the forward page: the region returns what we lack.
            self.send_join(&space);
        }
        self.check_idle(now);
    }

    // ----- internals -----

    /// When the oldest request or join still waiting for its ack was written.
    fn oldest_unanswered(&self) -> Option<Instant> {
        let requests = self
            .requests
            .values()
            .filter(|r| r.ack.is_some())
            .filter_map(|r| r.sent_at);
        let joins = self
            .subscriptions
            .values()
            .filter(|s| s.join_ack.is_some())
            .filter_map(|s| s.join_sent_at);
        requests.chain(joins).min()
    }

    fn current_conn(&self) -> Option<ConnId> {
        match self.state {
            State::Connecting { conn, .. }
            | State::Handshaking { conn, .. }
            | State::Authenticating { conn, .. }
            | State::Open { conn, .. } => Some(conn),
            _ => None,
        }
    }

    fn set_state(&mut self, state: State) {
        let before = self.connection_state();
        self.state = state;
        let after = self.connection_state();
        if before != after {
            self.push_event(SessionEvent::State(after));
        }
    }

    fn ensure_connecting(&mut self, now: Instant) {
        if matches!(self.state, State::Idle) {
            if self.online {
                self.connect(now);
            } else {
                self.set_state(State::Offline);
            }
        }
    }

    fn connect(&mut self, now: Instant) {
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        self.set_state(State::Connecting { conn, since: now });
        self.outputs.push_back(Output::Connect {
            conn,
            url: self.url.clone(),
        });
    }

    fn drop_transport(&mut self) {
        if let Some(conn) = self.current_conn() {
            self.outputs.push_back(Output::Close { conn });
        }
        self.acks.clear();
        for r in self.requests.values_mut() {
            r.ack = None;
        }
        for s in self.subscriptions.values_mut() {
            s.active = false;
            s.join_ack = None;
            // Whatever came early is after `last_seq`: the rejoin's `since` fetches it again.
            s.early.clear();
            s.gap_since = None;
        }
    }

    fn connection_lost(&mut self, now: Instant) {
        self.drop_transport();
        if self.is_unused() {
            self.set_state(State::Idle);
            return;
        }
        if !self.online {
            self.set_state(State::Offline);
            return;
        }
        self.attempt = self.attempt.saturating_add(1);
        let delay = self.config.backoff.delay(self.attempt, self.rng.f64());
        self.set_state(State::BackingOff {
            until: now + delay,
            retry_in: delay,
        });
    }

    fn fail_everything(&mut self, error: &Error) {
        // Joins waiting on a subscription are answered below, with every other request.
        for (space, sub) in std::mem::take(&mut self.subscriptions) {
            if sub.waiters.is_empty() {
                self.push_event(SessionEvent::SubscriptionLost {
                    space,
                    error: error.clone(),
                });
            }
        }
        let ids: Vec<RequestId> = self.requests.keys().copied().collect();
        for id in ids {
            self.answer(id, Err(error.clone()));
        }
        self.acks.clear();
    }

    /// Answers a pending request once: it leaves `requests` and any subscription's
    /// waiters, so no later path can answer it again.
    fn answer(&mut self, id: RequestId, result: Result<Response>) {
        let Some(pending) = self.requests.remove(&id) else {
            return;
        };
        if let Some(ack) = pending.ack {
            self.acks.remove(&ack);
        }
        if let Request::Join(space) = &pending.request
            && let Some(sub) = self.subscriptions.get_mut(space)
        {
            sub.waiters.retain(|w| *w != id);
        }
        self.reply(id, result);
    }

    /// The subscription to `space`, made (from a restored cursor, if any) when missing.
    fn subscription(&mut self, space: &SpaceId) -> &mut Subscription {
        let restored = self.restored.remove(space);
        self.subscriptions.get_or_insert_with(space.clone(), || {
            let mut sub = Subscription::default();
            if let Some(cursor) = restored {
                sub.last_seq = Some(cursor.last_seq);
                sub.epoch = Some(cursor.epoch);
            }
            sub
        })
    }

    fn join(&mut self, id: RequestId, space: SpaceId, now: Instant) {
        let sub = self.subscription(&space);
        if sub.active {
            // Already joined on this transport: answer at once.
            let head = sub.last_seq.unwrap_or(0);
            self.reply(
                id,
                Ok(Response::Joined {
                    space,
                    head_seq: head,
                }),
            );
            return;
        }
        sub.waiters.push(id);
        let in_flight = sub.join_ack.is_some();
        // Requests carry the deadline; a join waiter is bounded by the same timeout.
        self.requests.insert(
            id,
            PendingRequest {
                request: Request::Join(space.clone()),
                deadline: Some(now + self.config.request_timeout),
                ack: None,
                sent_at: None,
            },
        );
        if !in_flight && matches!(self.state, State::Open { .. }) {
            self.send_join(&space);
        }
    }

    fn enqueue(&mut self, id: RequestId, request: Request, now: Instant) {
        let deadline = match request {
            Request::Send(_) | Request::SendBatch(_) => None,
            _ => Some(now + self.config.request_timeout),
        };
        self.requests.insert(
            id,
            PendingRequest {
                request,
                deadline,
                ack: None,
                sent_at: None,
            },
        );
        self.flush_requests();
    }

    /// Sends every request not yet on the wire, keeping sends in order per space: a send
    /// waits for its space's join and for the previous send in that space to be answered,
    /// so the order the region stores is the order the app sent, whatever the region's
    /// handler scheduling.
    fn flush_requests(&mut self) {
        if !matches!(self.state, State::Open { .. }) {
            return;
        }
        // A leave not yet on the wire is superseded by a later join of its space: sent
        // after the rejoin (as a reconnect would), it would undo it.
        let superseded: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, p)| {
                p.ack.is_none()
                    && matches!(&p.request, Request::Leave(s) if self.subscriptions.contains_key(s))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in superseded {
            self.answer(id, Ok(Response::Left));
        }
        let mut busy_spaces = std::collections::HashSet::new();
        let mut ready = Vec::new();
        for (id, pending) in self.requests.iter() {
            if matches!(pending.request, Request::Join(_)) {
                continue;
            }
            match pending.request.sends_to() {
                Some(space) => {
                    let joined = self.subscriptions.get(space).is_none_or(|sub| sub.active);
                    if pending.ack.is_none() && joined && !busy_spaces.contains(space) {
                        ready.push(*id);
                    }
                    busy_spaces.insert(space.clone());
                }
                None if pending.ack.is_none() => ready.push(*id),
                None => {}
            }
        }
        for id in ready {
            self.send_request(id);
        }
    }

    fn next_ack_id(&mut self) -> u64 {
        let id = self.next_ack;
        self.next_ack = self.next_ack.wrapping_add(1) & ((1 << 53) - 1);
        id
    }

    /// Sends event `name` with its argument, `payload`, written as JSON text.
    fn emit(
        &mut self,
        conn: ConnId,
        name: &str,
        payload: &str,
        ack: Option<u64>,
        space: Option<SpaceId>,
    ) {
        let packet = SioPacket::encode_event(name, payload, ack);
        self.transmit(conn, packet, space);
    }

    /// Queues a Socket.IO packet for the wire (the engine's policy gate sees it first).
    fn transmit(&mut self, conn: ConnId, packet: String, space: Option<SpaceId>) {
        let frame = EioPacket::Message(packet).encode();
        self.outputs
            .push_back(Output::Transmit { conn, frame, space });
    }

    fn send_join(&mut self, space: &SpaceId) {
        let State::Open { conn, .. } = self.state else {
            return;
        };
        let Some(sub) = self.subscriptions.get(space) else {
            return;
        };
        // One change of a space's membership on the wire at a time: a join sent while a
        // leave of the same space is unanswered could be applied before it, by a region
        // that handles a socket's events concurrently, and the leave would win. The join
        // goes out when the leave is answered.
        let leaving = self
            .requests
            .values()
            .any(|p| p.ack.is_some() && matches!(&p.request, Request::Leave(s) if s == space));
        if leaving {
            return;
        }
        let payload = JoinRequest {
            space: space.clone(),
            since: sub.last_seq,
            epoch: sub
                .last_seq
                .and(sub.epoch.clone())
                .filter(|e| !e.is_empty()),
        };
        let ack = self.next_ack_id();
        self.acks.insert(ack, AckFor::Join(space.clone()));
        if let Some(sub) = self.subscriptions.get_mut(space) {
            sub.join_ack = Some(ack);
            sub.join_sent_at = Some(self.now);
            sub.gap_since = None;
        }
        self.emit(
            conn,
            event::SPACE_JOIN,
            &json::to_text(&payload),
            Some(ack),
            Some(space.clone()),
        );
    }

    fn send_request(&mut self, id: RequestId) {
        let State::Open { conn, .. } = self.state else {
            return;
        };
        let Some(pending) = self.requests.get(&id) else {
            return;
        };
        let leave;
        let (name, payload): (&str, &dyn ToJson) = match &pending.request {
            Request::Join(_) => return, // joins travel as subscriptions
            Request::Leave(space) => {
                leave = LeaveRequest {
                    space: space.clone(),
                };
                (event::SPACE_LEAVE, &leave)
            }
            Request::Send(r) => (event::MESSAGE_SEND, r),
            Request::SendBatch(r) => (event::MESSAGE_SEND_BATCH, r),
            Request::History(r) => (event::HISTORY, r),
            Request::Presence(r) => (event::PRESENCE_SET, r),
            Request::CreateDm(r) => (event::DM_CREATE, r),
        };
        let payload = json::to_text(payload);
        let space = pending.request.space().cloned();
        let ack = self.next_ack_id();
        self.acks.insert(ack, AckFor::Request(id));
        if let Some(p) = self.requests.get_mut(&id) {
            p.ack = Some(ack);
            p.sent_at = Some(self.now);
        }
        self.emit(conn, name, &payload, Some(ack), space);
    }

    fn on_frame(&mut self, conn: ConnId, frame: &str, now: Instant) -> Result<()> {
        let packet = EioPacket::decode(frame)?;
        match (self.state, packet) {
            (State::Handshaking { .. }, EioPacket::Open(h)) => {
                let connect = SioPacket::encode_connect(&json::to_text(&self.auth));
                // The auth frame carries the token: the engine's policy gate sees it like any other.
                self.transmit(conn, connect, None);
                let heartbeat =
                    Duration::from_millis(h.ping_interval.saturating_add(h.ping_timeout))
                        + self.config.heartbeat_grace;
                self.state = State::Authenticating {
                    conn,
                    since: now,
                    heartbeat,
                };
                Ok(())
            }
            (_, EioPacket::Ping(payload)) => {
                self.outputs.push_back(Output::Transmit {
                    conn,
                    frame: EioPacket::Pong(payload).encode(),
                    space: None,
                });
                if let State::Open { heartbeat, .. } = self.state {
                    self.state = State::Open {
                        conn,
                        heartbeat,
                        heartbeat_deadline: now + heartbeat,
                    };
                }
                Ok(())
            }
            (_, EioPacket::Close) => {
                self.connection_lost(now);
                Ok(())
            }
            (_, EioPacket::Noop | EioPacket::Pong(_)) => Ok(()),
            (State::Authenticating { .. } | State::Open { .. }, EioPacket::Message(m)) => {
                let packet = SioPacket::decode(&m)?;
                if packet.namespace != "/" {
                    return Err(Error::Protocol(format!(
                        "packet for unexpected namespace {}",
                        packet.namespace
                    )));
                }
                self.on_packet(conn, packet.kind, now)
            }
            (_, other) => Err(Error::Protocol(format!(
                "unexpected engine.io packet {} in this state",
                packet_name(&other)
            ))),
        }
    }

    fn on_packet(&mut self, conn: ConnId, kind: SioPacketKind, now: Instant) -> Result<()> {
        match (self.state, kind) {
            (State::Authenticating { heartbeat, .. }, SioPacketKind::Connect(_)) => {
                self.attempt = 0;
                self.auth_rejections = 0;
                self.set_state(State::Open {
                    conn,
                    heartbeat,
                    heartbeat_deadline: now + heartbeat,
                });
                tracing::debug!(region = %self.region, "connected");
                let spaces: Vec<SpaceId> = self.subscriptions.keys().cloned().collect();
                for space in spaces {
                    self.send_join(&space);
                }
                if self.inbox {
                    self.send_inbox();
                }
                self.flush_requests();
                self.check_idle(now);
                Ok(())
            }
            (State::Authenticating { .. }, SioPacketKind::ConnectError(data)) => {
                let error = connect_error(&data);
                tracing::info!(region = %self.region, code = %error.code(), "region refused the connection");
                if error.code() == crate::ErrorCode::Unauthorized
                    && self.renewable
                    && self.auth_rejections < MAX_AUTH_REJECTIONS
                {
                    // Keep every request and subscription: the engine fetches a new token
                    // and the session carries on with it.
                    self.auth_rejections += 1;
                    self.drop_transport();
                    self.set_state(State::AwaitingToken);
                    self.push_event(SessionEvent::TokenRejected);
                    return Ok(());
                }
                self.fail_everything(&error);
                self.drop_transport();
                self.set_state(State::Idle);
                self.idle_since = None;
                Ok(())
            }
            (State::Open { .. }, SioPacketKind::Event { name, args, .. }) => {
                self.on_event(&name, args, now);
                Ok(())
            }
            (State::Open { .. }, SioPacketKind::Ack { ack_id, args }) => {
                self.on_ack(ack_id, args, now);
                Ok(())
            }
            (State::Open { .. }, SioPacketKind::Disconnect) => {
                // The region let us go (shutdown or restart). Subscriptions still matter to
                // the app, so reconnect with backoff rather than stay away.
                self.connection_lost(now);
                Ok(())
            }
            (_, kind) => Err(Error::Protocol(format!(
                "unexpected socket.io packet {} in this state",
                sio_name(&kind)
            ))),
        }
    }

    fn on_event(&mut self, name: &str, mut args: Vec<Value>, now: Instant) {
        let arg = if args.is_empty() {
            Value::Null
        } else {
            args.swap_remove(0)
        };
        let outcome = match name {
            event::NOTIFY => decode("notification", arg).map(|n| self.on_notify(n)),
            event::MESSAGE => decode("message event", arg).map(|m| self.on_message(m, now)),
            event::PRESENCE => decode::<PresenceEvent>("presence event", arg).map(|p| {
                if self.subscriptions.contains_key(&p.space) {
                    self.push_event(SessionEvent::Presence(p));
                }
            }),
            event::TYPING_EVENT => decode::<TypingEvent>("typing event", arg).map(|t| {
                if self.subscriptions.contains_key(&t.space) {
                    self.push_event(SessionEvent::Typing(t));
                }
            }),
            event::ERROR => decode::<ErrorBody>("error event", arg)
                .map(|b| self.push_event(SessionEvent::Problem(Error::from_wire(&b)))),
            // Unknown events from a newer region are reported, not fatal.
            other => Err(Error::Protocol(format!(
                "unknown event \"{}\" from {}",
                other.escape_default(),
                self.region
            ))),
        };
        if let Err(e) = outcome {
            self.push_event(SessionEvent::Problem(e));
        }
    }

    fn on_message(&mut self, m: Message, now: Instant) {
        let Some(sub) = self.subscriptions.get_mut(&m.space) else {
            return; // left, or never joined
        };
        // Until the region answers the (re)join, the cursor may belong to an older history
        // epoch: hold everything, and let the answer decide what is a duplicate.
        if sub.active && sub.last_seq.is_some_and(|last| m.seq <= last) {
            return; // duplicate
        }
        insert_early(&mut sub.early, m.clone());
        if sub.active {
            self.drain(&m.space, now);
        }
    }

    /// Delivers every early message that is next in line, and notes a hole if one remains.
    fn drain(&mut self, space: &SpaceId, now: Instant) {
        let Some(sub) = self.subscriptions.get_mut(space) else {
            return;
        };
        let start = sub.last_seq.unwrap_or(0);
        let mut last = start;
        // The front run of duplicates and messages next in line leaves the queue at once.
        let mut taken = 0;
        for m in &sub.early {
            if m.seq == last + 1 {
                last = m.seq;
            } else if m.seq > last {
                break;
            }
            taken += 1;
        }
        let ready: Vec<Message> = sub.early.drain(..taken).filter(|m| m.seq > start).collect();
        if !ready.is_empty() {
            sub.last_seq = Some(last);
        }
        sub.gap_since = if sub.early.is_empty() {
            None
        } else {
            sub.gap_since.or(Some(now))
        };
        for m in ready {
            match self.open(m) {
                Ok(m) => self.push_event(SessionEvent::Message(m)),
                // Counted as delivered (the cursor moves on): re-fetching can't fix it.
                Err(e) => self.push_event(SessionEvent::Problem(e)),
            }
        }
    }

    /// The message with its text readable: opened when it travelled sealed. A sealed
    /// message that doesn't open (altered, sealed to another key, replayed from elsewhere)
    /// is refused, never handed out.
    fn open(&self, mut m: Message) -> Result<Message> {
        let Some(sealed) = m.sealed.take() else {
            return Ok(m);
        };
        let Some(keys) = &self.keys else {
            return Err(Error::Integrity(format!(
                "message {} of {} is sealed but this client has no key",
                m.seq, m.space
            )));
        };
        let binding = crate::envelope::Binding {
            space: &m.space,
            message: m.id.as_str(),
            region: &self.region,
        };
        let text = crate::envelope::open(keys, &binding, &sealed).map_err(|e| {
            Error::Integrity(format!("message {} of {} refused: {e}", m.seq, m.space))
        })?;
        m.body = String::from_utf8(text).map_err(|_| {
            Error::Integrity(format!("message {} of {} is not UTF-8", m.seq, m.space))
        })?;
        Ok(m)
    }

    fn on_ack(&mut self, ack_id: u64, mut args: Vec<Value>, now: Instant) {
        let Some(target) = self.acks.remove(&ack_id) else {
            return; // an answer to something we gave up on
        };
        let arg = if args.is_empty() {
            Value::Null
        } else {
            args.swap_remove(0)
        };
        match target {
            AckFor::Join(space) => self.on_join_ack(&space, arg, now),
            AckFor::Inbox => {
                if let Err(e) = decode_reply::<Empty>(arg) {
                    tracing::warn!(region = %self.region, code = %e.code(), "inbox refused");
                    self.push_event(SessionEvent::Problem(e));
                }
            }
            AckFor::Request(id) => {
                let Some(pending) = self.requests.remove(&id) else {
                    return;
                };
                let left = match &pending.request {
                    Request::Leave(space) => Some(space.clone()),
                    _ => None,
                };
                let result = match pending.request {
                    Request::Join(_) => return,
                    Request::Leave(_) => decode_reply::<Empty>(arg).map(|_| Response::Left),
                    Request::Send(_) => decode_reply::<SendReceipt>(arg).map(Response::Sent),
                    Request::SendBatch(batch) => {
                        decode_reply::<SendBatchReply>(arg).and_then(|r| {
                            if r.receipts.len() == batch.messages.len() {
                                Ok(Response::SentBatch(r.receipts))
                            } else {
                                Err(Error::Protocol(format!(
                                    "{} receipts for a batch of {} sends",
                                    r.receipts.len(),
                                    batch.messages.len()
                                )))
                            }
                        })
                    }
                    Request::History(_) => decode_reply::<HistoryReply>(arg).map(|h| {
                        let mut page = Vec::with_capacity(h.messages.len());
                        for m in h.messages {
                            match self.open(m) {
                                Ok(m) => page.push(m),
                                Err(e) => self.push_event(SessionEvent::Problem(e)),
                            }
                        }
                        Response::History(page)
                    }),
                    Request::Presence(_) => {
                        decode_reply::<Empty>(arg).map(|_| Response::PresenceSet)
                    }
                    Request::CreateDm(_) => {
                        decode_reply::<SpaceLocation>(arg).map(Response::DmCreated)
                    }
                };
                self.reply(id, result);
                // A join that waited for this leave goes out now.
                if let Some(space) = left
                    && self
                        .subscriptions
                        .get(&space)
                        .is_some_and(|s| !s.active && s.join_ack.is_none())
                {
                    self.send_join(&space);
                }
                self.flush_requests();
                self.check_idle(now);
            }
        }
    }

    fn on_join_ack(&mut self, space: &SpaceId, arg: Value, now: Instant) {
        let reply = decode_reply::<JoinReply>(arg).and_then(|r| {
            if &r.space == space {
                Ok(r)
            } else {
                Err(Error::Protocol("join answered for another space".into()))
            }
        });
        let Some(sub) = self.subscriptions.get_mut(space) else {
            return;
        };
        sub.join_ack = None;
        match reply {
            Ok(r) => {
                sub.active = true;
                let mut lost = None;
                match (sub.last_seq, &sub.epoch) {
                    // First join: the app starts at the head; history is one call away.
                    (None, _) => sub.last_seq = Some(r.head_seq),
                    // The region lost the history we were following: numbering restarts.
                    // (An empty epoch is a region that doesn't say: nothing to compare.)
                    (Some(last), Some(epoch))
                        if !epoch.is_empty() && !r.epoch.is_empty() && *epoch != r.epoch =>
                    {
                        lost = Some((last + 1, None));
                        sub.last_seq = Some(0);
                    }
                    // What we lack passed the retention window.
                    (Some(last), _) if last + 1 < r.oldest_seq => {
                        lost = Some((last + 1, Some(r.oldest_seq - 1)));
                        sub.last_seq = Some(r.oldest_seq - 1);
                    }
                    _ => {}
                }
                sub.epoch = Some(r.epoch.clone());
                for m in r.missed {
                    if m.space == *space {
                        insert_early(&mut sub.early, m);
                    }
                }
                let waiters = std::mem::take(&mut sub.waiters);
                let head = r.head_seq;
                let complete = r.complete;
                if let Some((from, to)) = lost {
                    tracing::info!(region = %self.region, %space, from, ?to, "continuity lost");
                    self.push_event(SessionEvent::ContinuityLost {
                        space: space.clone(),
                        from,
                        to,
                    });
                }
                self.drain(space, now);
                if !complete {
                    self.send_join(space);
                }
                self.flush_requests();
                for w in waiters {
                    let joined = Response::Joined {
                        space: space.clone(),
                        head_seq: head,
                    };
                    self.answer(w, Ok(joined));
                }
            }
            Err(error) => {
                let Some(sub) = self.subscriptions.remove(space) else {
                    return;
                };
                if sub.waiters.is_empty() {
                    self.push_event(SessionEvent::SubscriptionLost {
                        space: space.clone(),
                        error: error.clone(),
                    });
                }
                for w in sub.waiters {
                    self.answer(w, Err(error.clone()));
                }
                // Sends that waited for this join cannot go through either.
                let stranded: Vec<RequestId> = self
                    .requests
                    .iter()
                    .filter(|(_, p)| p.request.sends_to() == Some(space))
                    .map(|(id, _)| *id)
                    .collect();
                for id in stranded {
                    self.answer(id, Err(error.clone()));
                }
                self.check_idle(now);
            }
        }
    }

    fn check_idle(&mut self, now: Instant) {
        if self.is_unused() && matches!(self.state, State::Open { .. }) {
            self.idle_since.get_or_insert(now);
        } else {
            self.idle_since = None;
        }
    }

    fn reply(&mut self, request: RequestId, result: Result<Response>) {
        self.push_event(SessionEvent::Reply { request, result });
    }

    fn push_event(&mut self, event: SessionEvent) {
        self.outputs.push_back(Output::Event(event));
    }
}

/// Files `m` among the early messages by seq (replacing one with the same seq).
fn insert_early(early: &mut Vec<Message>, m: Message) {
    match early.binary_search_by_key(&m.seq, |e| e.seq) {
        Ok(i) => early[i] = m,
        Err(i) => early.insert(i, m),
    }
}

/// Decodes an event's argument; what doesn't decode is a protocol error worth reporting.
fn decode<T: FromJson>(what: &str, arg: Value) -> Result<T> {
    T::from_json(arg).map_err(|e| undecodable(what, e))
}

/// Decodes an ack: its `ok` as a `T`, or its `error` as the error it is.
fn decode_reply<T: FromJson>(arg: Value) -> Result<T> {
    // Reading the `{"ok": ..}` / `{"error": ..}` wrapper is the same for every T: compiled
    // once, outside this generic function.
    decode("answer", reply_value(arg)?)
}

fn reply_value(arg: Value) -> Result<Value> {
    match crate::json::from_value::<Reply<Value>>(arg) {
        Ok(Reply::Ok(v)) => Ok(v),
        Ok(Reply::Error(body)) => Err(Error::from_wire(&body)),
        Err(e) => Err(undecodable("answer", e)),
    }
}

#[cold]
fn undecodable(what: &str, error: String) -> Error {
    Error::Protocol(format!("undecodable {what}: {error}"))
}

fn connect_error(data: &Value) -> Error {
    let message = data
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("connection refused")
        .to_owned();
    let code = message.split([':', ' ']).next().unwrap_or_default();
    match crate::ErrorCode::parse(code) {
        crate::ErrorCode::PolicyViolation => Error::PolicyViolation {
            region: data
                .get("data")
                .and_then(|d| d.get("region"))
                .and_then(Value::as_str)
                .and_then(|r| RegionId::new(r).ok())
                .unwrap_or_else(|| RegionId::new_unchecked("unknown")),
            reason: message,
        },
        crate::ErrorCode::Internal => Error::Unauthorized(message),
        other => Error::from_wire(&ErrorBody {
            code: other,
            message,
            region: None,
        }),
    }
}

fn packet_name(p: &EioPacket) -> &'static str {
    match p {
        EioPacket::Open(_) => "open",
        EioPacket::Close => "close",
        EioPacket::Ping(_) => "ping",
        EioPacket::Pong(_) => "pong",
        EioPacket::Message(_) => "message",
        EioPacket::Upgrade => "upgrade",
        EioPacket::Noop => "noop",
    }
}

fn sio_name(k: &SioPacketKind) -> &'static str {
    match k {
        SioPacketKind::Connect(_) => "connect",
        SioPacketKind::Disconnect => "disconnect",
        SioPacketKind::Event { .. } => "event",
        SioPacketKind::Ack { .. } => "ack",
        SioPacketKind::ConnectError(_) => "connect_error",
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
