//! The engine: one task that drives every [`RegionSession`] with real IO.
//!
//! Owns: the sessions by region, their transports, the timers, the outbox (locating each
//! send's space, submitting it, settling it, persisting every change through one ordered
//! store writer), the cursors of joined spaces (persisted at most once a second and at
//! shutdown), and the policy gate: every transport is opened and every frame is written
//! only after [`policy`] allows it, right before the bytes leave. Must never block, and
//! never hold a lock across an await.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, SinkExt, StreamExt};

use crate::credentials::Credentials;
use crate::directory::Directory;
use crate::driver::{BoxFuture, Driver};
use crate::error::{Error, Result};
use crate::model::{
    IdempotencyKey, PresenceStatus, Region, RegionId, SendReceipt, SpaceId, SpaceLocation,
    UserContext,
};
use crate::outbox::{Outbox, OutboxEntry, Settled};
use crate::policy;
use crate::protocol::{MAX_BATCH, TypingEvent};
use crate::secret::{self, Secret};
use crate::session::{
    ConnId, ConnectionState, Cursor, Output, RegionSession, Request, RequestId, Response,
    SessionConfig, SessionEvent,
};
use crate::sorted::SortedMap;
use crate::store::Store;
use crate::time::Instant;

/// How long the engine waits before asking the directory again for a send's space.
const LOCATE_RETRY: Duration = Duration::from_secs(1);
/// How often, at most, delivery cursors are written to the store.
const CURSOR_FLUSH: Duration = Duration::from_secs(1);

/// Store namespaces of one user's records.
pub(crate) struct Namespaces {
    pub(crate) outbox: String,
    pub(crate) cursors: String,
    pub(crate) keys: String,
}

impl Namespaces {
    pub(crate) fn for_user(user: &crate::model::UserId) -> Self {
        Self {
            outbox: format!("{}.{user}", crate::outbox::NAMESPACE),
            cursors: format!("cursors.{user}"),
            keys: format!("keys.{user}"),
        }
    }
}

/// What the app hears from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A message in a joined space: each exactly once, in seq order.
    MessageReceived(crate::model::Message),
    /// A member's presence changed.
    PresenceChanged(crate::protocol::PresenceEvent),
    /// A member started or stopped typing.
    Typing(TypingEvent),
    /// The state of the client as a whole changed (see [`aggregate`]): what an app shows
    /// in its status bar.
    OverallConnectionChanged(ConnectionState),
    /// The connection to a region changed state.
    ConnectionChanged {
        /// The region.
        region: RegionId,
        /// Its new state.
        state: ConnectionState,
    },
    /// The policy stopped something before it left the device.
    PolicyBlocked {
        /// The region it would have gone to.
        region: RegionId,
        /// The space concerned, if any.
        space: Option<SpaceId>,
        /// Why.
        reason: String,
    },
    /// A joined space could not be restored after a reconnect.
    SubscriptionLost {
        /// The space.
        space: SpaceId,
        /// Why.
        error: Error,
    },
    /// Messages of a space can't be delivered (see [`SessionEvent::ContinuityLost`]):
    /// the app should call [`crate::Client::resync`] and rebuild its view of the space.
    ContinuityLost {
        /// The space.
        space: SpaceId,
        /// The first seq not delivered.
        from: u64,
        /// The last seq not delivered; `None` when the region's history was reset.
        to: Option<u64>,
    },
    /// A send was stored by its region (also for sends left over from an earlier run).
    MessageSent {
        /// The send's idempotency key.
        key: IdempotencyKey,
        /// The space.
        space: SpaceId,
        /// The region's receipt.
        receipt: SendReceipt,
    },
    /// A send was refused for good; it stays in the outbox until retried or cancelled.
    SendFailed {
        /// The send's idempotency key.
        key: IdempotencyKey,
        /// The space.
        space: SpaceId,
        /// Why.
        error: Error,
    },
    /// The directory served a federation document the client refused (bad signature,
    /// unknown key, expired, rolled back); the last good document stays in use.
    FederationDocumentRefused {
        /// Why.
        error: Error,
    },
    /// Something the user's home region tells them (a mention, a DM invite, a contact's
    /// presence), wherever in the federation it happened.
    Notification(crate::model::Notification),
    /// A region broke the protocol or reported an error outside any request.
    RegionProblem {
        /// The region.
        region: RegionId,
        /// What happened.
        error: Error,
    },
}

/// Commands from the facade to the engine.
pub(crate) enum Command {
    Request {
        region: Region,
        /// The region housing the space the request concerns, for the policy gate.
        space_region: Option<RegionId>,
        request: Request,
        reply: Reply,
    },
    Typing {
        region: RegionId,
        event: TypingEvent,
    },
    ConnectedRegions(Reply),
    OverallState(Reply),
    Subscribe(mpsc::UnboundedSender<Event>),
    Notify(Event),
    NetworkChanged(bool),
    /// Add a send to the outbox; answered once it is persisted.
    Enqueue {
        key: IdempotencyKey,
        space: SpaceId,
        body: String,
        trace: Option<String>,
        reply: Reply,
    },
    ListSends(Reply),
    RetrySend {
        key: IdempotencyKey,
        reply: Reply,
    },
    CancelSend {
        key: IdempotencyKey,
        reply: Reply,
    },
    Shutdown(Reply),
}

/// How the engine answers a command (and the store writer a barrier, and a send its
/// waiters): one channel type for all of them, since each distinct type of channel
/// compiles to about 1 KB of the web bundle.
pub(crate) type Reply = oneshot::Sender<Result<Answer>>;

/// What comes back through a [`Reply`].
pub(crate) enum Answer {
    /// A region's answer to a request.
    Response(Response),
    /// The regions connected now.
    Regions(Vec<Region>),
    /// The state of the client as a whole.
    State(ConnectionState),
    /// A send the outbox accepted and persisted.
    Accepted(Accepted),
    /// The sends in the outbox.
    Sends(Vec<OutboxEntry>),
    /// A send's receipt: the region stored it.
    Receipt(SendReceipt),
    /// Done, with nothing to tell.
    Done,
}

impl Answer {
    /// The error for an answer that is not the one its command calls for.
    pub(crate) fn unexpected(self) -> Error {
        match self {
            Self::Response(response) => response.unexpected(),
            _ => Error::Internal("the engine answered another command".into()),
        }
    }
}

/// A send the outbox accepted (and persisted), with the way to its outcome.
pub(crate) struct Accepted {
    pub(crate) entry: OutboxEntry,
    /// Answered with [`Answer::Receipt`] or the error that settled the send.
    pub(crate) outcome: oneshot::Receiver<Result<Answer>>,
}

enum Io {
    Opened(RegionId, ConnId),
    Frame(RegionId, ConnId, String),
    Closed(RegionId, ConnId, String),
    /// An outbox entry's write finished.
    Persisted(u64, Result<()>),
    /// The token provider answered.
    TokenRenewed(Result<Secret>),
    /// The directory answered where a send's space is.
    Located(u64, Result<(SpaceLocation, Region)>),
}

/// A write for the store writer: writes are carried out one at a time, in order.
enum StoreOp {
    Put {
        namespace: String,
        key: String,
        value: Vec<u8>,
        /// The outbox entry whose durability the engine waits for.
        notify: Option<u64>,
    },
    Delete {
        namespace: String,
        key: String,
    },
    /// Answered when every earlier write is done.
    Barrier(Reply),
}

pub(crate) struct Engine {
    driver: Arc<dyn Driver>,
    ctx: UserContext,
    credentials: Arc<Credentials>,
    config: SessionConfig,
    sessions: SortedMap<RegionId, RegionSession>,
    regions: HashMap<RegionId, Region>,
    /// The presence the app set last: told again to each region whenever its connection
    /// is (re)established, since a region forgets it when the socket drops.
    presence: Option<PresenceStatus>,
    transports: HashMap<(RegionId, ConnId), mpsc::UnboundedSender<String>>,
    /// Who waits for each request the engine submitted.
    waiting: HashMap<RequestId, Waiting>,
    subscribers: Vec<mpsc::UnboundedSender<Event>>,
    /// Events from before anyone listened (the outcome of sends restored from the store
    /// goes out as soon as the client connects, before the app can call `events()`): kept
    /// for the first listener, up to [`UNHEARD_LIMIT`].
    unheard: std::collections::VecDeque<Event>,
    /// What the engine knows of each space it was asked about or sent to.
    spaces: HashMap<SpaceId, SpaceInfo>,
    io_tx: mpsc::UnboundedSender<Io>,
    io_rx: Option<mpsc::UnboundedReceiver<Io>>,
    next_request: u64,
    rng: fastrand::Rng,
    directory: Arc<Directory>,
    namespaces: Namespaces,
    writer: mpsc::UnboundedSender<StoreOp>,
    outbox: Outbox,
    /// Entries added but not durable yet, with who waits for that.
    unpersisted: HashMap<u64, Option<Reply>>,
    /// Entries handed out by the outbox while still unpersisted.
    parked: SortedMap<u64, OutboxEntry>,
    /// Who waits for each entry's outcome.
    send_waiters: HashMap<u64, Vec<Reply>>,
    /// Batches whose space could not be located yet (a few at most: a `Vec`, not a map,
    /// which would be one more map type in the web build).
    unlocated: Vec<Vec<OutboxEntry>>,
    locate_retry_at: Option<crate::time::Instant>,
    /// Cursors from an earlier run, applied when their space is first used.
    restored_cursors: HashMap<SpaceId, Cursor>,
    saved_cursors: HashMap<SpaceId, Cursor>,
    cursor_flush_at: Option<crate::time::Instant>,
    /// The client's key pair (sealed deliveries are sealed to its public half).
    keys: Arc<crate::envelope::KeyPair>,
    home: Region,
    /// Whether a token renewal is under way.
    renewing: bool,
    /// When to renew the token before it expires.
    token_refresh_at: Option<Instant>,
    overall: ConnectionState,
}

/// Who waits for a request's answer.
enum Waiting {
    /// The app, through the client.
    App(Reply),
    /// The outbox: the request carries these entries (one, or a batch of one space's, in
    /// order).
    Sends(Vec<u64>),
}

/// What the engine knows of a space.
#[derive(Default)]
struct SpaceInfo {
    /// The region housing it: frames about the space may go there only.
    housing: Option<RegionId>,
    /// Where its sends go, as last located (`None` until located, and after "moved").
    located: Option<(SpaceLocation, Region)>,
    /// Its content must travel sealed (data sovereignty).
    sealed: bool,
}

/// What an engine starts from.
pub(crate) struct EngineSetup {
    pub(crate) driver: Arc<dyn Driver>,
    pub(crate) ctx: UserContext,
    pub(crate) credentials: Arc<Credentials>,
    pub(crate) config: SessionConfig,
    pub(crate) directory: Arc<Directory>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) outbox: Outbox,
    pub(crate) cursors: HashMap<SpaceId, Cursor>,
    pub(crate) keys: Arc<crate::envelope::KeyPair>,
    /// The user's home region: its session carries the notifications.
    pub(crate) home: Region,
}

impl Engine {
    pub(crate) fn new(setup: EngineSetup) -> Self {
        let EngineSetup {
            driver,
            ctx,
            credentials,
            config,
            directory,
            store,
            outbox,
            cursors,
            keys,
            home,
        } = setup;
        let (io_tx, io_rx) = mpsc::unbounded();
        let (writer, ops) = mpsc::unbounded();
        driver.spawn(Box::pin(store_writer(store, ops, io_tx.clone())));
        Self {
            namespaces: Namespaces::for_user(&ctx.user),
            driver,
            ctx,
            credentials,
            config,
            sessions: SortedMap::new(),
            regions: HashMap::new(),
            presence: None,
            transports: HashMap::new(),
            waiting: HashMap::new(),
            subscribers: Vec::new(),
            unheard: std::collections::VecDeque::new(),
            spaces: HashMap::new(),
            io_tx,
            io_rx: Some(io_rx),
            next_request: 0,
            rng: fastrand::Rng::with_seed(secret::random_seed()),
            directory,
            writer,
            outbox,
            unpersisted: HashMap::new(),
            parked: SortedMap::new(),
            send_waiters: HashMap::new(),
            unlocated: Vec::new(),
            locate_retry_at: None,
            saved_cursors: cursors.clone(),
            restored_cursors: cursors,
            cursor_flush_at: None,
            keys,
            home,
            renewing: false,
            token_refresh_at: None,
            overall: ConnectionState::Idle,
        }
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let Some(mut io) = self.io_rx.take() else {
            return;
        };
        // Sends left over from an earlier run go out first.
        self.pump();
        let (home, now) = (self.home.clone(), self.driver.now());
        self.session(&home).subscribe_inbox(now);
        self.schedule_token_refresh();
        loop {
            self.flush();
            let now = self.driver.now();
            let next = self
                .sessions
                .values()
                .filter_map(|s| s.poll_timeout())
                .chain(self.locate_retry_at)
                .chain(self.cursor_flush_at)
                .chain(self.token_refresh_at)
                .min();
            let timer: BoxFuture<'static, ()> = match next {
                Some(at) => self.driver.sleep(at.saturating_since(now)),
                None => Box::pin(futures::future::pending()),
            };
            let mut timer = timer.fuse();
            futures::select! {
                command = commands.next() => match command {
                    Some(Command::Shutdown(done)) => {
                        self.shutdown().await;
                        let _ = done.send(Ok(Answer::Done));
                        return;
                    }
                    Some(command) => self.on_command(command),
                    None => {
                        // Every handle to the client is gone.
                        self.shutdown().await;
                        return;
                    }
                },
                event = io.next() => if let Some(event) = event { self.on_io(event) },
                () = timer => {
                    let now = self.driver.now();
                    for session in self.sessions.values_mut() {
                        session.handle_timeout(now);
                    }
                    if self.locate_retry_at.is_some_and(|t| now >= t) {
                        self.locate_retry_at = None;
                        for batch in std::mem::take(&mut self.unlocated) {
                            self.dispatch(batch);
                        }
                    }
                    if self.cursor_flush_at.is_some_and(|t| now >= t) {
                        self.flush_cursors();
                    }
                    if self.token_refresh_at.is_some_and(|t| now >= t) {
                        self.token_refresh_at = None;
                        self.renew_token();
                    }
                }
            }
        }
    }

    async fn shutdown(&mut self) {
        self.flush_cursors();
        for session in self.sessions.values_mut() {
            session.close();
        }
        self.flush();
        self.transports.clear();
        // The regions' own Closed states don't count toward the whole (see `aggregate`):
        // the client as a whole says it is closed for good.
        if self.overall != ConnectionState::Closed {
            self.overall = ConnectionState::Closed;
            self.publish(Event::OverallConnectionChanged(ConnectionState::Closed));
        }
        // Wait until every write (cursors, settled sends) is on disk.
        let (tx, rx) = oneshot::channel();
        if self.writer.unbounded_send(StoreOp::Barrier(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// What the engine knows of `space`, made empty when it knew nothing.
    fn space(&mut self, space: &SpaceId) -> &mut SpaceInfo {
        self.spaces.entry(space.clone()).or_default()
    }

    fn on_command(&mut self, command: Command) {
        let now = self.driver.now();
        match command {
            Command::Request {
                region,
                space_region,
                request,
                reply,
            } => {
                if let (Some(space), Some(housing)) = (request.space(), space_region) {
                    self.space(space).housing = Some(housing);
                }
                if let Request::Presence(set) = &request {
                    self.presence = Some(set.status);
                }
                let id = self.submit(&region, request, now);
                self.waiting.insert(id, Waiting::App(reply));
            }
            Command::Enqueue {
                key,
                space,
                body,
                trace,
                reply,
            } => match self.outbox.add(key, space, body, trace) {
                Ok(entry) => {
                    self.unpersisted.insert(entry.order, Some(reply));
                    self.persist(&entry, true);
                    self.pump();
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::ListSends(reply) => {
                let _ = reply.send(Ok(Answer::Sends(self.outbox.list())));
            }
            Command::RetrySend { key, reply } => {
                let old = self.outbox.find(&key).cloned();
                match self.outbox.retry(&key) {
                    Ok(entry) => {
                        // Written at its new place first, then the old record goes: a
                        // crash in between leaves both, and restoring keeps the newer.
                        self.unpersisted.insert(entry.order, Some(reply));
                        self.persist(&entry, true);
                        if let Some(old) = old {
                            self.delete_record(&old);
                        }
                        self.pump();
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::CancelSend { key, reply } => {
                let result = self.outbox.cancel(&key).map(|entry| {
                    self.delete_record(&entry);
                    for waiter in self.send_waiters.remove(&entry.order).unwrap_or_default() {
                        let _ = waiter.send(Err(Error::InvalidInput(format!(
                            "send {key} was cancelled"
                        ))));
                    }
                });
                let _ = reply.send(result.map(|()| Answer::Done));
            }
            Command::Typing { region, event } => {
                if let Some(session) = self.sessions.get_mut(&region) {
                    session.typing(event);
                }
            }
            Command::ConnectedRegions(reply) => {
                let regions = self
                    .sessions
                    .values()
                    .filter(|s| s.connection_state() == ConnectionState::Connected)
                    .filter_map(|s| self.regions.get(s.region()).cloned())
                    .collect();
                let _ = reply.send(Ok(Answer::Regions(regions)));
            }
            Command::OverallState(reply) => {
                let _ = reply.send(Ok(Answer::State(self.overall)));
            }
            Command::Subscribe(tx) => {
                for event in self.unheard.drain(..) {
                    let _ = tx.unbounded_send(event);
                }
                self.subscribers.push(tx);
            }
            Command::Notify(event) => self.publish(event),
            Command::NetworkChanged(online) => {
                for session in self.sessions.values_mut() {
                    session.network_changed(online, now);
                }
            }
            Command::Shutdown(_) => {}
        }
    }

    /// Hands a request to the session of `region`, restoring the cursor of its space from
    /// an earlier run first.
    fn submit(
        &mut self,
        region: &Region,
        request: Request,
        now: crate::time::Instant,
    ) -> RequestId {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        let cursor = request
            .space()
            .and_then(|space| self.restored_cursors.remove_entry(space));
        let session = self.session(region);
        if let Some((space, cursor)) = cursor {
            session.restore_cursor(space, cursor);
        }
        session.request(id, request, now);
        id
    }

    fn session(&mut self, region: &Region) -> &mut RegionSession {
        self.regions.insert(region.id.clone(), region.clone());
        let seed = self.rng.u64(..);
        let credentials = &self.credentials;
        let keys = &self.keys;
        self.sessions.get_or_insert_with(region.id.clone(), || {
            let mut session = RegionSession::new(
                region.id.clone(),
                &region.socket_url,
                credentials.current().0.expose().to_owned(),
                self.config,
                seed,
            );
            session.set_renewable(credentials.renewable());
            session.set_keys(keys.clone());
            session
        })
    }

    fn on_io(&mut self, event: Io) {
        let now = self.driver.now();
        match event {
            Io::Opened(region, conn) => {
                if let Some(s) = self.sessions.get_mut(&region) {
                    s.handle_transport_open(conn, now);
                }
            }
            Io::Frame(region, conn, frame) => {
                if let Some(s) = self.sessions.get_mut(&region) {
                    s.handle_frame(conn, &frame, now);
                }
            }
            Io::Closed(region, conn, reason) => {
                self.transports.remove(&(region.clone(), conn));
                if let Some(s) = self.sessions.get_mut(&region) {
                    s.handle_transport_closed(conn, &reason, now);
                }
            }
            Io::Persisted(order, result) => self.on_persisted(order, result),
            Io::TokenRenewed(result) => self.on_token_renewed(result),
            Io::Located(order, result) => self.on_located(order, result),
        }
    }

    // ----- the outbox -----

    fn persist(&mut self, entry: &OutboxEntry, notify: bool) {
        let _ = self.writer.unbounded_send(StoreOp::Put {
            namespace: self.namespaces.outbox.clone(),
            key: entry.store_key(),
            value: entry.encode(),
            notify: notify.then_some(entry.order),
        });
    }

    fn delete_record(&mut self, entry: &OutboxEntry) {
        let _ = self.writer.unbounded_send(StoreOp::Delete {
            namespace: self.namespaces.outbox.clone(),
            key: entry.store_key(),
        });
    }

    fn on_persisted(&mut self, order: u64, result: Result<()>) {
        let Some(waiter) = self.unpersisted.remove(&order) else {
            return;
        };
        match result {
            Ok(()) => {
                let entry = self.outbox.get(order).cloned();
                if let (Some(waiter), Some(entry)) = (waiter, entry) {
                    let (tx, rx) = oneshot::channel();
                    self.send_waiters.entry(order).or_default().push(tx);
                    let _ = waiter.send(Ok(Answer::Accepted(Accepted { entry, outcome: rx })));
                }
                if let Some(entry) = self.parked.remove(&order) {
                    self.dispatch(vec![entry]);
                }
            }
            Err(e) => {
                // Not durable: the app is told, and the send never leaves.
                self.outbox.forget(order);
                self.parked.remove(&order);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(Err(e));
                }
            }
        }
    }

    /// Submits every send whose turn has come: per space, the sends waiting go together
    /// (up to [`MAX_BATCH`]), so that one round trip carries them in order.
    fn pump(&mut self) {
        let unpersisted = &self.unpersisted;
        let batches = self
            .outbox
            .take_ready(MAX_BATCH, |order| !unpersisted.contains_key(&order));
        for batch in batches {
            match batch.as_slice() {
                // Not durable yet: it leaves once it is.
                [entry] if self.unpersisted.contains_key(&entry.order) => {
                    self.parked.insert(entry.order, entry.clone());
                }
                _ => self.dispatch(batch),
            }
        }
    }

    /// Sends a batch (one space's sends, in order) to the space's region, locating the
    /// space first if needed.
    fn dispatch(&mut self, batch: Vec<OutboxEntry>) {
        let Some(first) = batch.first() else {
            return;
        };
        let (order, space) = (first.order, first.space.clone());
        let located = self.spaces.get(&space).and_then(|s| s.located.clone());
        let Some((loc, region)) = located else {
            let directory = self.directory.clone();
            let io = self.io_tx.clone();
            self.unlocated.push(batch);
            self.driver.spawn(Box::pin(async move {
                let result = directory.locate_space_region(&space).await;
                let _ = io.unbounded_send(Io::Located(order, result));
            }));
            return;
        };
        let decision = match policy::decide(&self.ctx, policy::Target::Space(&loc)) {
            Ok(decision) => decision,
            Err(e) => {
                self.publish(Event::PolicyBlocked {
                    region: loc.region.clone(),
                    space: Some(space),
                    reason: e.to_string(),
                });
                self.settle_all(&batch, &e);
                return;
            }
        };
        if decision.seal {
            // Marked before anything is sealed: from now on the gate refuses its content
            // in the clear.
            self.space(&space).sealed = true;
        }
        let mut requests = Vec::with_capacity(batch.len());
        for entry in &batch {
            let mut request = entry.request();
            if decision.seal {
                match seal_for(&region, entry) {
                    Ok(sealed) => {
                        request.body = String::new();
                        request.sealed = Some(sealed);
                    }
                    Err(e) => {
                        self.settle_all(&batch, &e);
                        return;
                    }
                }
            }
            requests.push(request);
        }
        self.space(&space).housing = Some(loc.region.clone());
        for entry in &batch {
            tracing::debug!(trace = trace_of(entry), %space, region = %loc.region, "send submitted");
        }
        let now = self.driver.now();
        let id = self.submit(&region, Request::sends(space, requests), now);
        let orders = batch.iter().map(|e| e.order).collect();
        self.waiting.insert(id, Waiting::Sends(orders));
    }

    /// Settles every entry of a batch with the same error, in order.
    fn settle_all(&mut self, batch: &[OutboxEntry], error: &Error) {
        for entry in batch {
            self.settle(entry.order, Err(error.clone()));
        }
    }

    fn on_located(&mut self, order: u64, result: Result<(SpaceLocation, Region)>) {
        let Some(at) = self
            .unlocated
            .iter()
            .position(|b| b.first().is_some_and(|e| e.order == order))
        else {
            return;
        };
        let batch = self.unlocated.swap_remove(at);
        let Some(space) = batch.first().map(|e| e.space.clone()) else {
            return;
        };
        match result {
            Ok(located) => {
                self.space(&space).located = Some(located);
                self.dispatch(batch);
            }
            Err(e) if e.is_transient() => {
                tracing::debug!(space = %space, error = %e, "cannot locate a send's space yet");
                self.unlocated.push(batch);
                let at = self.driver.now() + LOCATE_RETRY;
                self.locate_retry_at.get_or_insert(at);
            }
            Err(e) => self.settle_all(&batch, &e),
        }
    }

    fn on_send_reply(&mut self, orders: Vec<u64>, result: Result<Response>) {
        let count = orders.len();
        let results: Vec<Result<SendReceipt>> = match result.map(|r| r.receipts(count)) {
            Ok(Ok(receipts)) => receipts.into_iter().map(Ok).collect(),
            Ok(Err(other)) => vec![Err(other.unexpected()); count],
            Err(e) => vec![Err(e); count],
        };
        if results.iter().any(|r| matches!(r, Err(Error::Moved(_)))) {
            // Ask the directory again; the entries stay in flight meanwhile.
            let batch: Vec<OutboxEntry> = orders
                .iter()
                .filter_map(|o| self.outbox.get(*o).cloned())
                .collect();
            if let Some(first) = batch.first() {
                if let Some(info) = self.spaces.get_mut(&first.space) {
                    info.located = None;
                }
                self.directory.forget_space(&first.space);
                self.dispatch(batch);
                return;
            }
        }
        for (order, result) in orders.into_iter().zip(results) {
            self.settle(order, result);
        }
    }

    fn settle(&mut self, order: u64, result: Result<SendReceipt>) {
        match self.outbox.settle(order, result) {
            Some(Settled::Delivered(entry, receipt)) => {
                tracing::debug!(trace = trace_of(&entry), space = %entry.space, seq = receipt.seq, "send stored");
                self.delete_record(&entry);
                for waiter in self.send_waiters.remove(&order).unwrap_or_default() {
                    let _ = waiter.send(Ok(Answer::Receipt(receipt.clone())));
                }
                self.publish(Event::MessageSent {
                    key: entry.key,
                    space: entry.space,
                    receipt,
                });
            }
            Some(Settled::Failed(entry, error)) => {
                tracing::warn!(trace = trace_of(&entry), space = %entry.space, code = %error.code(), "send failed for good");
                self.persist(&entry, false);
                for waiter in self.send_waiters.remove(&order).unwrap_or_default() {
                    let _ = waiter.send(Err(error.clone()));
                }
                self.publish(Event::SendFailed {
                    key: entry.key,
                    space: entry.space,
                    error,
                });
            }
            // Closing, or the region could not be reached: it stays queued for next time.
            Some(Settled::Retry(_)) | None => return,
        }
        self.pump();
    }

    // ----- the token -----

    fn renew_token(&mut self) {
        if self.renewing || !self.credentials.renewable() {
            return;
        }
        self.renewing = true;
        let credentials = self.credentials.clone();
        let io = self.io_tx.clone();
        let (_, generation) = credentials.current();
        self.driver.spawn(Box::pin(async move {
            let result = credentials.renew(generation).await;
            let _ = io.unbounded_send(Io::TokenRenewed(result));
        }));
    }

    fn on_token_renewed(&mut self, result: Result<Secret>) {
        self.renewing = false;
        let now = self.driver.now();
        match result {
            Ok(token) => {
                for session in self.sessions.values_mut() {
                    session.set_token(token.expose().to_owned(), now);
                }
                self.schedule_token_refresh();
            }
            Err(e) => {
                tracing::warn!(code = %e.code(), "token renewal failed");
                for session in self.sessions.values_mut() {
                    if session.awaits_token() {
                        session.abort(&e, now);
                    }
                }
            }
        }
    }

    /// Renews ahead of expiry: a fifth of the remaining lifetime early, at most a minute.
    fn schedule_token_refresh(&mut self) {
        self.token_refresh_at = None;
        let Some(expires) = self.credentials.expires_at_ms() else {
            return;
        };
        if !self.credentials.renewable() {
            return;
        }
        let remaining = expires.saturating_sub(self.driver.unix_time_ms());
        let margin = (remaining / 5).min(60_000);
        self.token_refresh_at = Some(self.driver.now() + Duration::from_millis(remaining - margin));
    }

    // ----- cursors -----

    fn flush_cursors(&mut self) {
        self.cursor_flush_at = None;
        let current: Vec<(SpaceId, Cursor)> = self
            .sessions
            .values()
            .flat_map(|s| s.cursors().map(|(space, c)| (space.clone(), c)))
            .collect();
        for (space, cursor) in current {
            if self.saved_cursors.get(&space) != Some(&cursor) {
                let value = crate::json::to_text(&cursor).into_bytes();
                let _ = self.writer.unbounded_send(StoreOp::Put {
                    namespace: self.namespaces.cursors.clone(),
                    key: space.to_string(),
                    value,
                    notify: None,
                });
                self.saved_cursors.insert(space, cursor);
            }
        }
    }

    /// Carries out everything the sessions asked for.
    fn flush(&mut self) {
        let regions: Vec<RegionId> = self.sessions.keys().cloned().collect();
        for region in regions {
            while let Some(output) = self.sessions.get_mut(&region).and_then(|s| s.poll_output()) {
                self.carry_out(&region, output);
            }
        }
    }

    fn carry_out(&mut self, region: &RegionId, output: Output) {
        match output {
            Output::Connect { conn, url } => {
                if let Err(e) = policy::check_region(&self.ctx, region) {
                    self.refuse(region, None, e);
                    return;
                }
                let (tx, rx) = mpsc::unbounded();
                self.transports.insert((region.clone(), conn), tx);
                let task = transport(
                    self.driver.clone(),
                    url,
                    region.clone(),
                    conn,
                    self.io_tx.clone(),
                    rx,
                );
                self.driver.spawn(Box::pin(task));
            }
            Output::Transmit { conn, frame, space } => {
                // The last step before bytes leave: the frame's region must be permitted,
                // and a frame about a space may only go to the region housing it. A space
                // of unknown housing fails closed.
                let housing = match &space {
                    Some(s) => match self.spaces.get(s).and_then(|i| i.housing.as_ref()) {
                        Some(r) => Some(r.clone()),
                        None => {
                            let e = Error::PolicyViolation {
                                region: region.clone(),
                                reason: format!("space {s} has no known housing region"),
                            };
                            self.refuse(region, space, e);
                            return;
                        }
                    },
                    None => None,
                };
                if let Err(e) = policy::check_outbound(&self.ctx, region, housing.as_ref()) {
                    self.refuse(region, space, e);
                    return;
                }
                // Content of a data-sovereignty space never leaves in the clear, whatever
                // the code before this line did.
                if let Some(s) = &space
                    && self.spaces.get(s).is_some_and(|i| i.sealed)
                    && carries_plaintext(&frame)
                {
                    let e = Error::PolicyViolation {
                        region: region.clone(),
                        reason: format!("plaintext content for data-sovereignty space {s}"),
                    };
                    self.refuse(region, space, e);
                    return;
                }
                if let Some(tx) = self.transports.get(&(region.clone(), conn)) {
                    let _ = tx.unbounded_send(frame);
                }
            }
            Output::Close { conn } => {
                // Dropping the sender ends the transport task, which closes the socket.
                self.transports.remove(&(region.clone(), conn));
            }
            Output::Event(event) => self.on_session_event(region, event),
        }
    }

    fn refuse(&mut self, region: &RegionId, space: Option<SpaceId>, error: Error) {
        tracing::warn!(%region, code = %error.code(), "policy gate refused an outbound frame");
        self.publish(Event::PolicyBlocked {
            region: region.clone(),
            space,
            reason: error.to_string(),
        });
        let now = self.driver.now();
        if let Some(s) = self.sessions.get_mut(region) {
            s.abort(&error, now);
        }
    }

    /// Tells a region that just (re)connected the presence the app set last. Nobody waits
    /// for the answer: a refusal is the region's to report.
    fn announce_presence(&mut self, region: &RegionId) {
        if let (Some(status), Some(target)) = (self.presence, self.regions.get(region).cloned()) {
            let now = self.driver.now();
            self.submit(
                &target,
                Request::Presence(crate::protocol::PresenceRequest { status }),
                now,
            );
        }
    }

    fn on_session_event(&mut self, region: &RegionId, event: SessionEvent) {
        match event {
            SessionEvent::Reply { request, result } => match self.waiting.remove(&request) {
                Some(Waiting::Sends(orders)) => self.on_send_reply(orders, result),
                Some(Waiting::App(reply)) => {
                    let _ = reply.send(result.map(Answer::Response));
                }
                None => {}
            },
            SessionEvent::Message(m) => {
                if self.cursor_flush_at.is_none() {
                    self.cursor_flush_at = Some(self.driver.now() + CURSOR_FLUSH);
                }
                self.publish(Event::MessageReceived(m));
            }
            SessionEvent::Presence(p) => self.publish(Event::PresenceChanged(p)),
            SessionEvent::Typing(t) => self.publish(Event::Typing(t)),
            SessionEvent::State(state) => {
                if state == ConnectionState::Connected {
                    self.announce_presence(region);
                }
                self.publish(Event::ConnectionChanged {
                    region: region.clone(),
                    state,
                });
                let overall = aggregate(self.sessions.values().map(|s| s.connection_state()));
                if overall != self.overall {
                    self.overall = overall;
                    self.publish(Event::OverallConnectionChanged(overall));
                }
            }
            SessionEvent::SubscriptionLost { space, error } => {
                self.publish(Event::SubscriptionLost { space, error });
            }
            SessionEvent::TokenRejected => self.renew_token(),
            SessionEvent::Notification(n) => self.publish(Event::Notification(n)),
            SessionEvent::ContinuityLost { space, from, to } => {
                self.publish(Event::ContinuityLost { space, from, to });
            }
            SessionEvent::Problem(error) => self.publish(Event::RegionProblem {
                region: region.clone(),
                error,
            }),
        }
    }

    fn publish(&mut self, event: Event) {
        self.subscribers
            .retain(|tx| tx.unbounded_send(event.clone()).is_ok());
        if self.subscribers.is_empty() {
            if self.unheard.len() == UNHEARD_LIMIT {
                self.unheard.pop_front();
            }
            self.unheard.push_back(event);
        }
    }
}

/// The trace id a send's log events carry (the one its `traceparent` gives the region).
fn trace_of(entry: &OutboxEntry) -> &str {
    entry.trace.as_deref().map_or("", crate::log::trace_id)
}

/// How many events are kept for a first listener that has not subscribed yet.
const UNHEARD_LIMIT: usize = 1024;

/// The state of the client as a whole, from the states of its regions: `Idle` when no
/// region is in use; `Offline` when the platform reported no network; `Connected` when
/// every region in use is; `Reconnecting` when any region is (with the largest attempt
/// count and the soonest retry); `Connecting` otherwise.
pub fn aggregate(states: impl IntoIterator<Item = ConnectionState>) -> ConnectionState {
    let in_use: Vec<ConnectionState> = states
        .into_iter()
        .filter(|s| !matches!(s, ConnectionState::Idle | ConnectionState::Closed))
        .collect();
    if in_use.is_empty() {
        return ConnectionState::Idle;
    }
    if in_use.contains(&ConnectionState::Offline) {
        return ConnectionState::Offline;
    }
    if in_use.iter().all(|s| *s == ConnectionState::Connected) {
        return ConnectionState::Connected;
    }
    let reconnecting = in_use.iter().filter_map(|s| match s {
        ConnectionState::Reconnecting { attempt, retry_in } => Some((*attempt, *retry_in)),
        _ => None,
    });
    let worst = reconnecting.fold(None, |acc: Option<(u32, Duration)>, (a, r)| {
        Some(acc.map_or((a, r), |(aa, rr)| (aa.max(a), rr.min(r))))
    });
    match worst {
        Some((attempt, retry_in)) => ConnectionState::Reconnecting { attempt, retry_in },
        None => ConnectionState::Connecting,
    }
}

/// Seals a send's text to the housing region's published key, bound to the space, the
/// send's idempotency key and the region.
fn seal_for(region: &Region, entry: &OutboxEntry) -> Result<crate::envelope::SealedPayload> {
    let key = region.public_key.as_deref().ok_or_else(|| Error::PolicyViolation {
        region: region.id.clone(),
        reason: format!(
            "region {} publishes no sealing key, and data-sovereignty content can't travel in the clear",
            region.id
        ),
    })?;
    let key = crate::envelope::SealingKey::from_base64(key)?;
    let binding = crate::envelope::Binding {
        space: &entry.space,
        message: entry.key.as_str(),
        region: &region.id,
    };
    crate::envelope::seal(&key, &binding, entry.body.as_bytes())
}

/// Whether a frame is a send (or a batch of sends) with text in the clear.
fn carries_plaintext(frame: &str) -> bool {
    use crate::codec::{EioPacket, SioPacket, SioPacketKind};
    let Ok(EioPacket::Message(m)) = EioPacket::decode(frame) else {
        return false;
    };
    let Ok(SioPacket {
        kind: SioPacketKind::Event { name, args, .. },
        ..
    }) = SioPacket::decode(&m)
    else {
        return false;
    };
    let in_clear = |send: &serde_json::Value| {
        send.get("body")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|body| !body.is_empty())
    };
    let Some(arg) = args.first() else {
        return false;
    };
    match name.as_str() {
        crate::protocol::event::MESSAGE_SEND => in_clear(arg),
        crate::protocol::event::MESSAGE_SEND_BATCH => arg
            .get("messages")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|sends| sends.iter().any(in_clear)),
        _ => false,
    }
}

/// Carries out store writes one at a time, in the order they were asked for.
async fn store_writer(
    store: Arc<dyn Store>,
    mut ops: mpsc::UnboundedReceiver<StoreOp>,
    io: mpsc::UnboundedSender<Io>,
) {
    while let Some(op) = ops.next().await {
        match op {
            StoreOp::Put {
                namespace,
                key,
                value,
                notify,
            } => {
                let result = store.put(&namespace, &key, value).await;
                if let Err(e) = &result {
                    tracing::error!(error = %e, namespace, "store write failed");
                }
                if let Some(order) = notify {
                    let _ = io.unbounded_send(Io::Persisted(order, result));
                }
            }
            StoreOp::Delete { namespace, key } => {
                if let Err(e) = store.delete(&namespace, &key).await {
                    tracing::error!(error = %e, namespace, "store delete failed");
                }
            }
            StoreOp::Barrier(done) => {
                let _ = done.send(Ok(Answer::Done));
            }
        }
    }
}

/// One WebSocket: forwards frames both ways until either side ends.
async fn transport(
    driver: Arc<dyn Driver>,
    url: String,
    region: RegionId,
    conn: ConnId,
    io: mpsc::UnboundedSender<Io>,
    mut outgoing: mpsc::UnboundedReceiver<String>,
) {
    let closed = |reason: String| Io::Closed(region.clone(), conn, reason);
    let mut connecting = driver.connect(url).fuse();
    let (mut sink, mut stream) = futures::select! {
        result = connecting => match result {
            Ok(pair) => pair,
            Err(e) => {
                let _ = io.unbounded_send(closed(e.to_string()));
                return;
            }
        },
        // The session gave up on this attempt (timeout, close) before it opened.
        _ = outgoing.next() => return,
    };
    let _ = io.unbounded_send(Io::Opened(region.clone(), conn));
    let mut stream = stream.by_ref().fuse();
    loop {
        futures::select! {
            frame = outgoing.next() => match frame {
                Some(frame) => {
                    if let Err(e) = sink.send(frame).await {
                        let _ = io.unbounded_send(closed(e.to_string()));
                        return;
                    }
                }
                None => {
                    let _ = sink.close().await;
                    return;
                }
            },
            incoming = stream.next() => match incoming {
                Some(Ok(frame)) => {
                    let _ = io.unbounded_send(Io::Frame(region.clone(), conn, frame));
                }
                Some(Err(e)) => {
                    let _ = io.unbounded_send(closed(e.to_string()));
                    return;
                }
                None => {
                    let _ = io.unbounded_send(closed("closed by the region".into()));
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_test_macros::meridian_test;

    #[meridian_test]
    fn the_overall_state_is_the_worst_of_the_regions_in_use() {
        use ConnectionState::*;
        let retry = |attempt, ms| Reconnecting {
            attempt,
            retry_in: Duration::from_millis(ms),
        };
        let cases = [
            (vec![], Idle),
            (vec![Idle, Closed], Idle),
            (vec![Connected, Idle], Connected),
            (vec![Connected, Connecting], Connecting),
            (vec![Connected, retry(2, 500), retry(4, 900)], retry(4, 500)),
            (vec![retry(1, 100), Offline], Offline),
        ];
        for (regions, expected) in cases {
            assert_eq!(aggregate(regions.clone()), expected, "{regions:?}");
        }
    }

    #[meridian_test]
    fn the_last_guard_sees_text_in_the_clear_in_a_send_and_in_a_batch() {
        let frame = |name: &str, arg: serde_json::Value| {
            let packet = crate::codec::SioPacket::event(name, vec![arg], Some(7));
            crate::codec::EioPacket::Message(packet.encode()).encode()
        };
        let sealed = serde_json::json!({"space": "s", "key": "k", "body": "", "sealed": {}});
        let clear = serde_json::json!({"space": "s", "key": "k", "body": "hello"});
        let send = crate::protocol::event::MESSAGE_SEND;
        let batch = crate::protocol::event::MESSAGE_SEND_BATCH;
        assert!(carries_plaintext(&frame(send, clear.clone())));
        assert!(!carries_plaintext(&frame(send, sealed.clone())));
        let both = serde_json::json!({"space": "s", "messages": [sealed.clone(), clear]});
        assert!(carries_plaintext(&frame(batch, both)));
        let none = serde_json::json!({"space": "s", "messages": [sealed.clone(), sealed]});
        assert!(!carries_plaintext(&frame(batch, none)));
        assert!(!carries_plaintext(&frame(
            "history",
            serde_json::json!({"body": "x"})
        )));
    }
}
