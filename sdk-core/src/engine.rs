//! The engine: one task that drives every [`RegionSession`] with real IO.
//!
//! Owns: the sessions by region, their transports, the timers, and the policy gate: every
//! transport is opened and every frame is written only after [`policy`] allows it, right
//! before the bytes leave. Must never block, and never hold a lock across an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, SinkExt, StreamExt};

use crate::driver::{BoxFuture, Driver};
use crate::error::{Error, Result};
use crate::model::{Region, RegionId, SpaceId, UserContext};
use crate::policy;
use crate::protocol::TypingEvent;
use crate::secret::{self, Secret};
use crate::session::{
    ConnId, ConnectionState, Output, RegionSession, Request, RequestId, Response, SessionConfig,
    SessionEvent,
};

/// What the app hears from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A message in a joined space: each exactly once, in seq order.
    MessageReceived(crate::model::Message),
    /// A member's presence changed.
    PresenceChanged(crate::protocol::PresenceEvent),
    /// A member started or stopped typing.
    Typing(TypingEvent),
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
        reply: oneshot::Sender<Result<Response>>,
    },
    Typing {
        region: RegionId,
        event: TypingEvent,
    },
    ConnectedRegions(oneshot::Sender<Vec<Region>>),
    Subscribe(mpsc::UnboundedSender<Event>),
    Notify(Event),
    NetworkChanged(bool),
    Shutdown(oneshot::Sender<()>),
}

enum Io {
    Opened(RegionId, ConnId),
    Frame(RegionId, ConnId, String),
    Closed(RegionId, ConnId, String),
}

pub(crate) struct Engine {
    driver: Arc<dyn Driver>,
    ctx: UserContext,
    token: Secret,
    config: SessionConfig,
    sessions: BTreeMap<RegionId, RegionSession>,
    regions: HashMap<RegionId, Region>,
    transports: HashMap<(RegionId, ConnId), mpsc::UnboundedSender<String>>,
    replies: HashMap<RequestId, oneshot::Sender<Result<Response>>>,
    subscribers: Vec<mpsc::UnboundedSender<Event>>,
    space_regions: HashMap<SpaceId, RegionId>,
    io_tx: mpsc::UnboundedSender<Io>,
    io_rx: Option<mpsc::UnboundedReceiver<Io>>,
    next_request: u64,
    rng: fastrand::Rng,
}

impl Engine {
    pub(crate) fn new(
        driver: Arc<dyn Driver>,
        ctx: UserContext,
        token: Secret,
        config: SessionConfig,
    ) -> Self {
        let (io_tx, io_rx) = mpsc::unbounded();
        Self {
            driver,
            ctx,
            token,
            config,
            sessions: BTreeMap::new(),
            regions: HashMap::new(),
            transports: HashMap::new(),
            replies: HashMap::new(),
            subscribers: Vec::new(),
            space_regions: HashMap::new(),
            io_tx,
            io_rx: Some(io_rx),
            next_request: 0,
            rng: fastrand::Rng::with_seed(secret::random_seed()),
        }
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let Some(mut io) = self.io_rx.take() else {
            return;
        };
        loop {
            self.flush();
            let now = self.driver.now();
            let next = self
                .sessions
                .values()
                .filter_map(|s| s.poll_timeout())
                .min();
            let timer: BoxFuture<'static, ()> = match next {
                Some(at) => self.driver.sleep(at.saturating_since(now)),
                None => Box::pin(futures::future::pending()),
            };
            let mut timer = timer.fuse();
            futures::select! {
                command = commands.next() => match command {
                    Some(Command::Shutdown(done)) => {
                        self.shutdown();
                        let _ = done.send(());
                        return;
                    }
                    Some(command) => self.on_command(command),
                    None => {
                        // Every handle to the client is gone.
                        self.shutdown();
                        return;
                    }
                },
                event = io.next() => if let Some(event) = event { self.on_io(event) },
                () = timer => {
                    let now = self.driver.now();
                    for session in self.sessions.values_mut() {
                        session.handle_timeout(now);
                    }
                }
            }
        }
    }

    fn shutdown(&mut self) {
        for session in self.sessions.values_mut() {
            session.close();
        }
        self.flush();
        self.transports.clear();
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
                    self.space_regions.insert(space.clone(), housing);
                }
                self.next_request += 1;
                let id = RequestId(self.next_request);
                self.replies.insert(id, reply);
                let session = self.session(&region);
                session.request(id, request, now);
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
                let _ = reply.send(regions);
            }
            Command::Subscribe(tx) => self.subscribers.push(tx),
            Command::Notify(event) => self.publish(event),
            Command::NetworkChanged(online) => {
                for session in self.sessions.values_mut() {
                    session.network_changed(online, now);
                }
            }
            Command::Shutdown(_) => {}
        }
    }

    fn session(&mut self, region: &Region) -> &mut RegionSession {
        self.regions.insert(region.id.clone(), region.clone());
        let seed = self.rng.u64(..);
        self.sessions.entry(region.id.clone()).or_insert_with(|| {
            RegionSession::new(
                region.id.clone(),
                &region.socket_url,
                self.token.expose().to_owned(),
                self.config,
                seed,
            )
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
                    Some(s) => match self.space_regions.get(s) {
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

    fn on_session_event(&mut self, region: &RegionId, event: SessionEvent) {
        match event {
            SessionEvent::Reply { request, result } => {
                if let Some(tx) = self.replies.remove(&request) {
                    let _ = tx.send(result);
                }
            }
            SessionEvent::Message(m) => self.publish(Event::MessageReceived(m)),
            SessionEvent::Presence(p) => self.publish(Event::PresenceChanged(p)),
            SessionEvent::Typing(t) => self.publish(Event::Typing(t)),
            SessionEvent::State(state) => self.publish(Event::ConnectionChanged {
                region: region.clone(),
                state,
            }),
            SessionEvent::SubscriptionLost { space, error } => {
                self.publish(Event::SubscriptionLost { space, error });
            }
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
