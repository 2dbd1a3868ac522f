//! A region: a Socket.IO server (socketioxide) on its own port, with its own store.
//!
//! Owns: authenticating connections (bearer token in the CONNECT auth payload), enforcing
//! geographic policy on the server side (a user whose policy forbids this region is
//! refused at connect; a space is entered only where policy permits), the application
//! events of `meridian::protocol` (a join answers from the store's retention window and
//! history epoch), data sovereignty on the wire (a DS space takes only sealed sends and
//! delivers only sealed copies, each to its socket's client key: see `sealing`), the inbox
//! subscriptions and the events that raise notifications (see `notify`), the region's end
//! of the relay, and stopping/starting the region on the same port, with or without its
//! stored state.
//! Every event is recorded in the region's tap before anything else looks at it, and the
//! events of one socket are handled one at a time, in the order they arrived.
//! Must never panic on any input, never log a token, a key or a message body, never send
//! a DS space's text in the clear, and never answer an ack with anything but exactly one
//! `Reply`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meridian::ErrorCode;
use meridian::envelope::SealingKey;
use meridian::model::{RegionId, SpaceId, UserId, validate_body};
use meridian::policy;
use meridian::protocol::{
    Auth, DmCreateRequest, Empty, ErrorBody, HistoryReply, HistoryRequest, JoinRequest,
    LeaveRequest, MAX_BATCH, MAX_PAGE, PROTOCOL_VERSION, PresenceEvent, PresenceRequest, Reply,
    SendBatchReply, SendBatchRequest, SendRequest, TypingEvent, event,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use socketioxide::SocketIo;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts, MessageHandler, Value};
use socketioxide::socket::{DisconnectReason, Socket};
use tokio::sync::mpsc;

use crate::DevserverError;
use crate::net::{self, Server};
use crate::notify::{self, Inboxes};
use crate::relay::{Relay, RelayEndpoint, RelayEnvelope};
use crate::sealing::{self, ClientKey};
use crate::state::{Member, Shared, SpaceRecord, lock};
use crate::store::{Append, RegionStore};
use crate::tap::{RegionTap, TapKind};

/// How long a stop lets socketioxide close its sockets gracefully before cutting them.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Everything a region's handlers share; survives restarts.
pub(crate) struct RegionCtx {
    pub id: RegionId,
    pub shared: Arc<Shared>,
    pub store: Arc<RegionStore>,
    pub tap: RegionTap,
    /// The relay to the other regions.
    pub relay: Arc<Relay>,
    /// The sockets that are their user's inbox here.
    pub inboxes: Inboxes,
    /// Storing + broadcasting a message, and a join's catch-up + room entry, happen under
    /// this lock, so members see messages in seq order and a joiner misses nothing
    /// between its catch-up page and the live stream.
    order: tokio::sync::Mutex<()>,
}

impl RelayEndpoint for RegionCtx {
    fn receive(&self, envelope: RelayEnvelope) {
        notify::receive(self, envelope);
    }
}

/// One region's server, stoppable and restartable on the same port.
pub(crate) struct RegionServer {
    ctx: Arc<RegionCtx>,
    port: Mutex<u16>,
    running: tokio::sync::Mutex<Option<Running>>,
}

struct Running {
    io: SocketIo,
    server: Server,
}

impl RegionServer {
    /// A stopped region, attached to `relay` (it receives what the relay carries to it
    /// even while stopped: with no inbox socket, that is dropped).
    pub fn new(
        id: RegionId,
        shared: Arc<Shared>,
        store: Arc<RegionStore>,
        tap: RegionTap,
        port: u16,
        relay: Arc<Relay>,
    ) -> Self {
        let ctx = Arc::new(RegionCtx {
            id,
            shared,
            store,
            tap,
            relay,
            inboxes: Inboxes::default(),
            order: tokio::sync::Mutex::new(()),
        });
        let endpoint: Arc<dyn RelayEndpoint> = ctx.clone();
        ctx.relay.attach(ctx.id.clone(), Arc::downgrade(&endpoint));
        Self {
            ctx,
            port: Mutex::new(port),
            running: tokio::sync::Mutex::new(None),
        }
    }

    pub fn id(&self) -> &RegionId {
        &self.ctx.id
    }

    pub fn tap(&self) -> &RegionTap {
        &self.ctx.tap
    }

    /// The port (known once the region has been started).
    pub fn port(&self) -> u16 {
        *lock(&self.port)
    }

    pub async fn is_running(&self) -> bool {
        self.running.lock().await.is_some()
    }

    /// Binds the region's port (the same one as before, after a stop) and serves it.
    /// Starting a running region does nothing.
    pub async fn start(&self) -> Result<(), DevserverError> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Ok(());
        }
        let what = format!("region {}", self.ctx.id);
        let listener = net::bind(&what, self.port()).await?;
        let addr = listener
            .local_addr()
            .map_err(|source| DevserverError::Bind {
                what: what.clone(),
                addr: format!("127.0.0.1:{}", self.port()),
                source,
            })?;
        *lock(&self.port) = addr.port();
        self.ctx
            .shared
            .set_socket_url(&self.ctx.id, format!("ws://{addr}"));

        let (layer, io) = SocketIo::builder().build_layer();
        let ctx = self.ctx.clone();
        let authorize = move |s: SocketRef, TryData(auth): TryData<serde_json::Value>| {
            let ctx = ctx.clone();
            async move { authorize(&ctx, &s, auth.ok()) }
        };
        io.ns("/", on_connect.with(authorize));
        let router = axum::Router::new().layer(layer);
        let server = Server::spawn(what.clone(), listener, router).map_err(|source| {
            DevserverError::Bind {
                what,
                addr: addr.to_string(),
                source,
            }
        })?;
        tracing::info!(region = %self.ctx.id, %addr, "region up");
        *running = Some(Running { io, server });
        Ok(())
    }

    /// Stops the region, wipes its store (a new epoch, no messages, no keys: a region
    /// that lost its data) and starts it again on the same port.
    pub async fn restart_without_state(&self) -> Result<(), DevserverError> {
        self.stop().await;
        let wiped = self.ctx.shared.wipe_region(&self.ctx.id);
        // Serving again either way: a failed wipe leaves the old history, not a dead region.
        self.start().await?;
        wiped
    }

    /// The store's retention window (applies at each space's next store).
    pub fn set_retention(&self, retention: Option<usize>) {
        self.ctx.store.set_retention(retention);
    }

    /// Disconnects every socket, closes the listener and frees the port. The store, the
    /// tap and the DMs created here are kept. Stopping a stopped region does nothing.
    pub async fn stop(&self) {
        let Some(Running { io, server }) = self.running.lock().await.take() else {
            return;
        };
        // Gracefully first: every socket leaves the namespace (clients get a DISCONNECT,
        // disconnect handlers run, per-socket workers end), then the transports close.
        // (`io.close()` alone leaves the sockets referenced by their namespace.)
        let ns = io.of("/");
        if let Some(ns) = ns.clone() {
            let _ = tokio::time::timeout(CLOSE_GRACE, ns.disconnect()).await;
        }
        if tokio::time::timeout(CLOSE_GRACE, io.close()).await.is_err() {
            tracing::debug!(region = %self.ctx.id, "graceful close timed out");
        }
        server.stop().await;
        // A socket whose CONNECT was being authorized meanwhile: no transport is left.
        if let Some(ns) = ns {
            let _ = tokio::time::timeout(CLOSE_GRACE, ns.disconnect()).await;
        }
        tracing::info!(region = %self.ctx.id, "region down");
    }
}

async fn on_connect(s: SocketRef) {
    tracing::debug!(sid = %s.id, "socket connected");
}

/// The connect middleware: decides whether a socket may connect, and wires it up if so.
/// The `Err` text becomes the `connect_error` message: it starts with the error code.
fn authorize(
    ctx: &Arc<RegionCtx>,
    s: &SocketRef,
    auth: Option<serde_json::Value>,
) -> Result<(), String> {
    let refuse = |user: Option<UserId>, code: ErrorCode, why: String| {
        ctx.tap.record(
            user.clone(),
            TapKind::Connect {
                accepted: false,
                refused_with: Some(code),
            },
        );
        tracing::info!(region = %ctx.id, user = ?user.as_ref().map(UserId::as_str), %code, "connection refused");
        Err(format!("{code}: {why}"))
    };
    // The key is read apart, so that a bad key is told apart from a bad token.
    let (auth, key) = match auth {
        Some(serde_json::Value::Object(mut fields)) => {
            let key = fields.remove("public_key");
            let auth = serde_json::from_value::<Auth>(serde_json::Value::Object(fields)).ok();
            (auth, key)
        }
        _ => (None, None),
    };
    let Some(auth) = auth else {
        return refuse(
            None,
            ErrorCode::Unauthorized,
            "the auth payload must be {\"token\": string, \"protocol\": number, \"public_key\"?: string}".into(),
        );
    };
    let member = match ctx.shared.member_by_token(&auth.token) {
        Ok(member) => member,
        Err(refusal) => return refuse(None, ErrorCode::Unauthorized, refusal.why().into()),
    };
    let user = member.id().clone();
    if auth.protocol != PROTOCOL_VERSION {
        return refuse(
            Some(user),
            ErrorCode::InvalidInput,
            format!(
                "protocol version {} is not supported, this region speaks {PROTOCOL_VERSION}",
                auth.protocol
            ),
        );
    }
    let key = match key {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(text)) => match SealingKey::from_base64(&text) {
            Ok(key) => Some(key),
            Err(_) => {
                return refuse(
                    Some(user),
                    ErrorCode::InvalidInput,
                    "public_key is not an X25519 public key in base64".into(),
                );
            }
        },
        Some(_) => {
            return refuse(
                Some(user),
                ErrorCode::InvalidInput,
                "public_key must be a string (base64)".into(),
            );
        }
    };
    if let Err(e) = policy::check_region(&member.ctx, &ctx.id) {
        let why = match e {
            meridian::Error::PolicyViolation { reason, .. } => reason,
            other => other.to_string(),
        };
        return refuse(Some(user), ErrorCode::PolicyViolation, why);
    }
    ctx.tap.record(
        Some(user.clone()),
        TapKind::Connect {
            accepted: true,
            refused_with: None,
        },
    );
    tracing::info!(region = %ctx.id, user = %user, sid = %s.id, "connection accepted");

    // Wired up here, before the CONNECT answer leaves, so that no event sent right after
    // it can arrive before its handler exists.
    s.extensions.insert(user.clone());
    if let Some(key) = &key {
        s.extensions.insert(ClientKey(key.clone()));
    }
    let conn = Arc::new(Conn {
        member,
        key,
        joined: Mutex::default(),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(worker(ctx.clone(), conn.clone(), rx));
    s.on_fallback(Inbox {
        ctx: ctx.clone(),
        user,
        tx,
    });
    let ctx = ctx.clone();
    s.on_disconnect(move |s: SocketRef, reason: DisconnectReason| {
        let ctx = ctx.clone();
        let conn = conn.clone();
        async move { on_disconnect(&ctx, &conn, &s, reason).await }
    });
    Ok(())
}

/// One connected socket's user, its client's sealing key, and the spaces it has joined.
struct Conn {
    member: Member,
    key: Option<SealingKey>,
    joined: Mutex<HashSet<SpaceId>>,
}

impl Conn {
    fn user(&self) -> &UserId {
        self.member.id()
    }

    fn has_joined(&self, space: &SpaceId) -> bool {
        lock(&self.joined).contains(space)
    }

    fn joined(&self) -> Vec<SpaceId> {
        lock(&self.joined).iter().cloned().collect()
    }
}

fn room(space: &SpaceId) -> String {
    format!("space/{space}")
}

/// One received event, queued for the socket's worker.
struct Job {
    socket: SocketRef,
    ack: AckSender,
    wants_ack: bool,
    name: String,
    args: Result<Vec<serde_json::Value>, String>,
}

/// Receives every event of one socket, in order: records it in the tap, queues it.
struct Inbox {
    ctx: Arc<RegionCtx>,
    user: UserId,
    tx: mpsc::UnboundedSender<Job>,
}

/// Marker for the [`MessageHandler`] impl of [`Inbox`].
struct InOrder;

impl MessageHandler<LocalAdapter, InOrder> for Inbox {
    fn call(&self, s: Arc<Socket>, mut v: Value, ack_id: Option<i64>) {
        let (name, args) = split_event(&v);
        let payload = match &args {
            Ok(a) if a.len() == 1 => a[0].clone(),
            Ok(a) => serde_json::Value::Array(a.clone()),
            Err(_) => serde_json::Value::Null,
        };
        self.ctx.tap.record(
            Some(self.user.clone()),
            TapKind::Event {
                name: name.clone(),
                payload,
                wants_ack: ack_id.is_some(),
            },
        );
        let Ok(ack) = AckSender::from_message_parts(&s, &mut v, &ack_id);
        let job = Job {
            socket: SocketRef::from(s),
            ack,
            wants_ack: ack_id.is_some(),
            name,
            args,
        };
        if self.tx.send(job).is_err() {
            tracing::debug!(region = %self.ctx.id, "event after the socket's worker ended");
        }
    }
}

/// `["name", args...]` as received (binary attachments are not part of the protocol).
fn split_event(v: &Value) -> (String, Result<Vec<serde_json::Value>, String>) {
    let (text, binary) = match v {
        Value::Str(text, bins) => (text.as_str(), bins.as_ref().is_some_and(|b| !b.is_empty())),
        Value::Bytes(_) => ("", true),
    };
    let mut items = match serde_json::from_str::<Vec<serde_json::Value>>(text) {
        Ok(items) => items,
        Err(_) => return (String::new(), Err("the event is not a JSON array".into())),
    };
    let name = match items.first() {
        Some(serde_json::Value::String(name)) => name.clone(),
        _ => String::new(),
    };
    if !items.is_empty() {
        items.remove(0);
    }
    if binary {
        return (name, Err("binary attachments are not supported".into()));
    }
    (name, Ok(items))
}

async fn worker(ctx: Arc<RegionCtx>, conn: Arc<Conn>, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = rx.recv().await {
        handle(&ctx, &conn, job).await;
    }
}

/// Answers a request: one ack argument (`{"ok": ..}` or `{"error": ..}`) when the client
/// asked for an ack; otherwise errors go out as an `error` event and successes silently.
struct Responder {
    socket: SocketRef,
    ack: AckSender,
    wants_ack: bool,
    event: String,
    region: RegionId,
}

impl Responder {
    fn ok<T: Serialize>(self, value: T) {
        if self.wants_ack
            && let Err(e) = self.ack.send(&Reply::Ok(value))
        {
            tracing::debug!(region = %self.region, event = %self.event, error = %e, "ack not sent");
        }
    }

    fn err(self, body: ErrorBody) {
        tracing::debug!(region = %self.region, event = %self.event, code = %body.code, "request refused");
        let sent = if self.wants_ack {
            self.ack
                .send(&Reply::<Empty>::Error(body))
                .map_err(|e| e.to_string())
        } else {
            self.socket
                .emit(event::ERROR, &body)
                .map_err(|e| e.to_string())
        };
        if let Err(e) = sent {
            tracing::debug!(region = %self.region, event = %self.event, error = %e, "error not sent");
        }
    }

    fn done<T: Serialize>(self, result: Result<T, ErrorBody>) {
        match result {
            Ok(v) => self.ok(v),
            Err(e) => self.err(e),
        }
    }
}

fn error(code: ErrorCode, message: String) -> ErrorBody {
    ErrorBody {
        code,
        message: format!("{code}: {message}"),
        region: None,
    }
}

fn invalid(message: impl Into<String>) -> ErrorBody {
    error(ErrorCode::InvalidInput, message.into())
}

/// The single argument of an event, typed.
fn arg<T: DeserializeOwned>(
    name: &str,
    args: Result<Vec<serde_json::Value>, String>,
) -> Result<T, ErrorBody> {
    let mut args = args.map_err(invalid)?;
    if args.len() != 1 {
        return Err(invalid(format!(
            "{name} takes exactly one argument, got {}",
            args.len()
        )));
    }
    serde_json::from_value(args.remove(0))
        .map_err(|e| invalid(format!("malformed {name} payload: {e}")))
}

async fn handle(ctx: &Arc<RegionCtx>, conn: &Conn, job: Job) {
    let Job {
        socket,
        ack,
        wants_ack,
        name,
        args,
    } = job;
    tracing::debug!(region = %ctx.id, user = %conn.user(), event = %name, "event");
    let r = Responder {
        socket: socket.clone(),
        ack,
        wants_ack,
        event: name.clone(),
        region: ctx.id.clone(),
    };
    match name.as_str() {
        event::SPACE_JOIN => match arg::<JoinRequest>(&name, args) {
            Ok(req) => join(ctx, conn, &socket, req, r).await,
            Err(e) => r.err(e),
        },
        event::SPACE_LEAVE => r.done(arg::<LeaveRequest>(&name, args).map(|req| {
            socket.leave(room(&req.space));
            lock(&conn.joined).remove(&req.space);
            Empty {}
        })),
        event::MESSAGE_SEND => match arg::<SendRequest>(&name, args) {
            Ok(req) => send(ctx, conn, &socket, req, r).await,
            Err(e) => r.err(e),
        },
        event::MESSAGE_SEND_BATCH => match arg::<SendBatchRequest>(&name, args) {
            Ok(req) => send_batch(ctx, conn, &socket, req, r).await,
            Err(e) => r.err(e),
        },
        event::HISTORY => {
            r.done(arg::<HistoryRequest>(&name, args).and_then(|req| history(ctx, conn, req)))
        }
        event::PRESENCE_SET => match arg::<PresenceRequest>(&name, args) {
            Ok(req) => {
                for space in conn.joined() {
                    let ev = PresenceEvent {
                        user: conn.user().clone(),
                        status: req.status,
                        space: space.clone(),
                    };
                    let _ = socket.to(room(&space)).emit(event::PRESENCE, &ev).await;
                }
                r.ok(Empty {});
                notify::presence_set(ctx, &conn.member, req.status);
            }
            Err(e) => r.err(e),
        },
        event::TYPING => match arg::<TypingEvent>(&name, args) {
            Ok(req) if !conn.has_joined(&req.space) => {
                r.err(invalid(format!("join the space {} first", req.space)));
            }
            Ok(req) => {
                let ev = TypingEvent {
                    user: Some(conn.user().clone()),
                    ..req
                };
                let _ = socket
                    .to(room(&ev.space))
                    .emit(event::TYPING_EVENT, &ev)
                    .await;
                r.ok(Empty {});
            }
            Err(e) => r.err(e),
        },
        event::DM_CREATE => {
            r.done(arg::<DmCreateRequest>(&name, args).and_then(|req| dm_create(ctx, conn, req)))
        }
        event::INBOX_SUBSCRIBE => {
            r.done(arg::<Empty>(&name, args).and_then(|_| inbox_subscribe(ctx, conn, &socket)))
        }
        _ => r.err(invalid(format!("unknown event {name:?}"))),
    }
}

/// Whether this user may read `space` here: it exists, their policy permits the region
/// that houses it, they take part in it (DMs), and it is housed in this region.
fn access(ctx: &RegionCtx, conn: &Conn, space: &SpaceId) -> Result<SpaceRecord, ErrorBody> {
    let record = ctx
        .shared
        .space(space)
        .ok_or_else(|| error(ErrorCode::NotFound, format!("space {space}")))?;
    policy::check_space_entry(&conn.member.ctx, &record.location)
        .map_err(|e| ErrorBody::from(&e))?;
    if !record.admits(conn.user()) {
        return Err(error(
            ErrorCode::Unauthorized,
            format!("user {} does not take part in {space}", conn.user()),
        ));
    }
    if record.location.region != ctx.id {
        return Err(moved(space, &record.location.region, &ctx.id));
    }
    Ok(record)
}

fn moved(space: &SpaceId, housing: &RegionId, here: &RegionId) -> ErrorBody {
    ErrorBody {
        region: Some(housing.clone()),
        ..error(
            ErrorCode::Moved,
            format!("{space} is housed in region {housing}, not in {here}"),
        )
    }
}

/// Whether deliveries of this space travel sealed (DS), and the refusal of a socket that
/// could not receive them (no client key).
fn sealed_for(ctx: &RegionCtx, conn: &Conn, record: &SpaceRecord) -> Result<bool, ErrorBody> {
    let seal = policy::must_seal_in_transit(record.location.residency);
    if seal && conn.key.is_none() {
        return Err(sealing::key_required(&ctx.id));
    }
    Ok(seal)
}

async fn join(ctx: &RegionCtx, conn: &Conn, socket: &SocketRef, req: JoinRequest, r: Responder) {
    let seal = match access(ctx, conn, &req.space).and_then(|record| sealed_for(ctx, conn, &record))
    {
        Ok(seal) => seal,
        Err(e) => return r.err(e),
    };
    let _order = ctx.order.lock().await;
    // The catch-up page, the head, the oldest seq held and the epoch, in one snapshot.
    let mut reply = ctx.store.join(&req, MAX_PAGE);
    reply.missed = match sealing::page(&ctx.id, conn.key.as_ref(), seal, reply.missed) {
        Ok(missed) => missed,
        Err(e) => return r.err(e),
    };
    socket.join(room(&req.space));
    lock(&conn.joined).insert(req.space.clone());
    // Acked under the lock: any message stored after this catch-up is broadcast after it.
    r.ok(reply);
}

/// A send checked and opened: what to store, where, and whether deliveries are sealed.
struct Prepared {
    req: SendRequest,
    record: SpaceRecord,
    seal: bool,
}

/// Checks a send (its text, and the same access as joining) and opens a sealed one.
fn prepare(ctx: &RegionCtx, conn: &Conn, req: SendRequest) -> Result<Prepared, ErrorBody> {
    // Exactly one of `body` and `sealed` carries the text.
    if req.sealed.is_some() && !req.body.is_empty() {
        return Err(invalid(
            "a send carries its text in `body` or in `sealed`, never both",
        ));
    }
    if req.sealed.is_none() {
        validate_body(&req.body).map_err(|e| ErrorBody::from(&e))?;
    }
    // Sending needs the same access as joining (not_found, policy_violation, moved,
    // unauthorized for a DM of others), not a subscription: an app may post to a space
    // whose messages it doesn't follow, and a send restored after a restart must not
    // make its client follow a space it left.
    let record = access(ctx, conn, &req.space)?;
    let seal = policy::must_seal_in_transit(record.location.residency);
    let req = match &req.sealed {
        None if seal => return Err(sealing::plaintext_refused(&ctx.id)),
        None => req,
        Some(sealed) => {
            let key = ctx.store.key_pair();
            let text = sealing::open_send(&ctx.id, &key, &req.space, req.key.as_str(), sealed)?;
            validate_body(&text).map_err(|e| ErrorBody::from(&e))?;
            // Stored in the clear: at rest inside the region that houses the space.
            SendRequest {
                body: text,
                sealed: None,
                ..req
            }
        }
    };
    Ok(Prepared { req, record, seal })
}

/// Stores a prepared send (or finds it stored under its key): its receipt, and the message
/// when it is new (to broadcast).
fn store(
    ctx: &RegionCtx,
    conn: &Conn,
    p: &Prepared,
) -> Result<
    (
        meridian::model::SendReceipt,
        Option<meridian::model::Message>,
    ),
    ErrorBody,
> {
    match ctx.store.append(&p.req, conn.user()) {
        Append::Failed(why) => Err(error(ErrorCode::Internal, why)),
        Append::Duplicate(receipt) => {
            tracing::debug!(region = %ctx.id, space = %p.req.space, key = %p.req.key, "duplicate send");
            Ok((receipt, None))
        }
        Append::Stored(message, receipt) => {
            tracing::debug!(
                region = %ctx.id, space = %p.req.space, seq = message.seq,
                trace = p.req.trace.as_deref().unwrap_or(""), "message stored"
            );
            Ok((receipt, Some(*message)))
        }
    }
}

async fn send(ctx: &RegionCtx, conn: &Conn, socket: &SocketRef, req: SendRequest, r: Responder) {
    let prepared = match prepare(ctx, conn, req) {
        Ok(p) => p,
        Err(e) => return r.err(e),
    };
    let _order = ctx.order.lock().await;
    match store(ctx, conn, &prepared) {
        Err(e) => r.err(e),
        Ok((receipt, None)) => r.ok(receipt),
        Ok((receipt, Some(message))) => {
            r.ok(receipt);
            broadcast(ctx, socket, &message, prepared.seal).await;
            notify::message_stored(ctx, &prepared.record, &message);
        }
    }
}

/// `message:send_batch`: every send checked (and opened) before any is stored, then all
/// stored in the order listed, acked together, and broadcast in that order.
async fn send_batch(
    ctx: &RegionCtx,
    conn: &Conn,
    socket: &SocketRef,
    batch: SendBatchRequest,
    r: Responder,
) {
    if batch.messages.is_empty() || batch.messages.len() > MAX_BATCH {
        return r.err(invalid(format!(
            "a batch holds 1 to {MAX_BATCH} sends, not {}",
            batch.messages.len()
        )));
    }
    let mut prepared = Vec::with_capacity(batch.messages.len());
    for req in batch.messages {
        if req.space != batch.space {
            return r.err(invalid(format!(
                "a send to {} in a batch for {}",
                req.space, batch.space
            )));
        }
        match prepare(ctx, conn, req) {
            Ok(p) => prepared.push(p),
            Err(e) => return r.err(e),
        }
    }
    let _order = ctx.order.lock().await;
    let mut receipts = Vec::with_capacity(prepared.len());
    let mut stored = Vec::new();
    for p in &prepared {
        match store(ctx, conn, p) {
            // Those before it are stored: sent again with the same keys, they are found.
            Err(e) => return r.err(e),
            Ok((receipt, message)) => {
                receipts.push(receipt);
                stored.extend(message.map(|m| (m, p)));
            }
        }
    }
    r.ok(SendBatchReply { receipts });
    for (message, p) in stored {
        broadcast(ctx, socket, &message, p.seal).await;
        notify::message_stored(ctx, &p.record, &message);
    }
}

/// Marks a socket that missed a message and is being disconnected.
#[derive(Clone, Copy)]
struct Lagging;

/// Sends a stored message to the whole room, sender included: every member's stream sees
/// every message. In a DS space each socket gets its own copy, sealed to its client key.
async fn broadcast(
    ctx: &RegionCtx,
    socket: &SocketRef,
    message: &meridian::model::Message,
    seal: bool,
) {
    // One socket at a time, so a socket that can't take the message (its buffer is full:
    // a frozen or slow link) is known, and disconnected: its client reconnects and catches
    // up from its cursor, instead of silently missing the newest messages.
    for member in socket.within(room(&message.space)).sockets() {
        let sent = if seal {
            // A socket without a key can't have joined a DS space; never send it the text.
            let Some(ClientKey(key)) = member.extensions.get::<ClientKey>() else {
                continue;
            };
            match sealing::seal_message(&ctx.id, &key, message) {
                Ok(sealed) => member.emit(event::MESSAGE, &sealed),
                Err(e) => {
                    tracing::warn!(region = %ctx.id, error = %e, "a message could not be sealed: not sent");
                    continue;
                }
            }
        } else {
            member.emit(event::MESSAGE, message)
        };
        if let Err(e) = sent
            && member.extensions.get::<Lagging>().is_none()
        {
            tracing::info!(region = %ctx.id, error = %e, "a member could not take a message: disconnecting it");
            member.extensions.insert(Lagging);
            // A full buffer refuses the disconnect packet too: retry until the link drains
            // (or the heartbeat ends it), so the client comes back through a rejoin.
            tokio::spawn(async move {
                for _ in 0..600 {
                    if member.clone().disconnect().is_ok() {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            });
        }
    }
}

fn history(ctx: &RegionCtx, conn: &Conn, req: HistoryRequest) -> Result<HistoryReply, ErrorBody> {
    if req.limit == 0 {
        return Err(invalid("history limit must be 1 or more"));
    }
    let record = access(ctx, conn, &req.space)?;
    let seal = sealed_for(ctx, conn, &record)?;
    let limit = usize::try_from(req.limit).unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let messages = ctx.store.before(&req.space, req.before, limit);
    Ok(HistoryReply {
        messages: sealing::page(&ctx.id, conn.key.as_ref(), seal, messages)?,
    })
}

fn dm_create(
    ctx: &RegionCtx,
    conn: &Conn,
    req: DmCreateRequest,
) -> Result<meridian::model::SpaceLocation, ErrorBody> {
    let peer = ctx
        .shared
        .member(&req.peer)
        .ok_or_else(|| error(ErrorCode::NotFound, format!("user {}", req.peer)))?;
    if peer.id() == conn.user() {
        return Err(invalid("a DM needs two different users"));
    }
    let (record, created) = ctx.shared.find_or_create_dm(
        &conn.member,
        &peer,
        || {
            let region =
                policy::dm_region(&conn.member.ctx, &peer.ctx).map_err(|e| ErrorBody::from(&e))?;
            if region != ctx.id {
                let space = crate::state::dm_space_id(conn.user(), peer.id());
                return Err(moved(&space, &region, &ctx.id));
            }
            Ok(region)
        },
        // Journaled before anyone learns of it.
        |record| {
            ctx.store
                .record_dm(record)
                .map_err(|why| error(ErrorCode::Internal, why))
        },
    )?;
    if created {
        tracing::info!(region = %ctx.id, space = %record.location.space, "DM created");
        notify::dm_created(ctx, &record, conn.user(), &peer);
    }
    Ok(record.location)
}

/// Makes this socket an inbox of its user: only in the user's home region (`moved`
/// otherwise, with the home region), and only with a client key for a user under DS.
fn inbox_subscribe(ctx: &RegionCtx, conn: &Conn, socket: &SocketRef) -> Result<Empty, ErrorBody> {
    let home = &conn.member.ctx.home_region;
    if *home != ctx.id {
        return Err(ErrorBody {
            region: Some(home.clone()),
            ..error(
                ErrorCode::Moved,
                format!(
                    "the inbox of {} is in their home region {home}, not in {}",
                    conn.user(),
                    ctx.id
                ),
            )
        });
    }
    if policy::must_seal_in_transit(conn.member.ctx.policy.residency) && conn.key.is_none() {
        return Err(ErrorBody::from(&meridian::Error::PolicyViolation {
            region: ctx.id.clone(),
            reason: "a sealing key is required for the notifications of a user under data sovereignty: connect with a public_key".into(),
        }));
    }
    ctx.inboxes
        .subscribe(conn.user(), socket.clone(), conn.key.clone());
    Ok(Empty {})
}

async fn on_disconnect(ctx: &RegionCtx, conn: &Conn, s: &SocketRef, reason: DisconnectReason) {
    let user = conn.user();
    ctx.tap.record(Some(user.clone()), TapKind::Disconnect);
    ctx.inboxes.unsubscribe(user, s.id);
    tracing::info!(region = %ctx.id, user = %user, sid = %s.id, %reason, "socket disconnected");
    // Offline only when this was the user's last socket in the region.
    let still_here =
        s.broadcast().sockets().iter().any(|other| {
            other.id != s.id && other.extensions.get::<UserId>().as_ref() == Some(user)
        });
    if still_here {
        return;
    }
    for space in conn.joined() {
        let ev = PresenceEvent {
            user: user.clone(),
            status: meridian::model::PresenceStatus::Offline,
            space: space.clone(),
        };
        let _ = s.to(room(&space)).emit(event::PRESENCE, &ev).await;
    }
}
