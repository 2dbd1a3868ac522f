//! The one API feature code calls, the same in Rust, TypeScript, Kotlin and Swift.
//!
//! Owns: turning intents (`join_space`, `send_message`, ...) into located, policy-checked
//! requests for the engine, and retrying once when a region says a space moved. Must never
//! name a region to the app or take one from it: feature code never chooses where data goes.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use futures::channel::{mpsc, oneshot};

use crate::credentials::{Credentials, Token, TokenProvider};
use crate::directory::{Directory, DirectoryConfig};
use crate::driver::{BoxFuture, Driver};
use crate::engine::{Answer, Command, Engine, EngineSetup, Namespaces, Reply};
use crate::error::{Error, Result};
use crate::model::{
    self, IdempotencyKey, Message, PresenceStatus, Region, SendReceipt, SessionInfo, SpaceId,
    SpaceLocation, UserContext, UserId,
};
use crate::outbox::{Outbox, OutboxEntry};
use crate::policy;
use crate::protocol::{DmCreateRequest, HistoryRequest, MAX_PAGE, PresenceRequest, TypingEvent};
use crate::secret;
use crate::session::{Cursor, Request, Response, SessionConfig};
use crate::store::{MemoryStore, Store};

pub use crate::engine::Event;

/// How to reach the federation, and who is asking.
#[derive(Clone)]
pub struct ClientConfig {
    /// The directory's base URL, e.g. `https://directory.example.com`.
    pub directory_url: String,
    /// The user's bearer token. May be empty when a token provider is set: the first
    /// token then comes from the provider.
    pub token: String,
    /// Renews the token before it expires and when it is rejected (see [`TokenProvider`]).
    pub token_provider: Option<Arc<dyn TokenProvider>>,
    /// Region session tunables.
    pub session: SessionConfig,
    /// Directory cache tunables.
    pub directory: DirectoryConfig,
    /// The federation's signing keys the app trusts (at least one): documents signed by
    /// anything else are refused.
    pub federation_keys: Vec<crate::model::FederationKey>,
    /// Where pending sends and delivery cursors are kept across restarts. The default,
    /// in memory, survives disconnects but not the process; native apps pass a
    /// [`crate::store::FileStore`], the web an IndexedDB store.
    pub store: Arc<dyn Store>,
}

impl ClientConfig {
    /// A configuration with default tunables.
    pub fn new(directory_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            directory_url: directory_url.into(),
            token: token.into(),
            token_provider: None,
            federation_keys: Vec::new(),
            session: SessionConfig::default(),
            directory: DirectoryConfig::default(),
            store: Arc::new(MemoryStore::new()),
        }
    }

    /// The same configuration with these federation keys pinned.
    pub fn with_federation_keys(mut self, keys: Vec<crate::model::FederationKey>) -> Self {
        self.federation_keys = keys;
        self
    }

    /// The same configuration with a token provider.
    pub fn with_token_provider(mut self, provider: Arc<dyn TokenProvider>) -> Self {
        self.token_provider = Some(provider);
        self
    }

    /// The same configuration with another store.
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = store;
        self
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("directory_url", &self.directory_url)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A space the user has joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedSpace {
    /// The space.
    pub space: SpaceId,
    /// The newest seq when joined: messages after it arrive as events.
    pub head_seq: u64,
}

/// A send the outbox has accepted and persisted. Await it (or [`Self::acked`]) for the
/// region's receipt; drop it to stop waiting: the send goes on regardless, and its outcome
/// also arrives as [`Event::MessageSent`] or [`Event::SendFailed`].
#[derive(Debug)]
pub struct PendingSend {
    entry: OutboxEntry,
    outcome: oneshot::Receiver<Result<Answer>>,
}

impl PendingSend {
    /// The send from the engine's answer to an enqueue or a retry.
    fn accepted(answer: Answer) -> Result<Self> {
        match answer {
            Answer::Accepted(accepted) => Ok(Self {
                entry: accepted.entry,
                outcome: accepted.outcome,
            }),
            other => Err(other.unexpected()),
        }
    }

    /// The send's idempotency key (to retry or cancel it).
    pub fn key(&self) -> &IdempotencyKey {
        &self.entry.key
    }

    /// The space.
    pub fn space(&self) -> &SpaceId {
        &self.entry.space
    }

    /// Waits for the region's receipt. Fails with the region's error when the send is
    /// refused for good, and with [`Error::Closed`] when the client closes first (the
    /// send stays in the outbox and goes out at the next start with the same store).
    pub async fn acked(self) -> Result<SendReceipt> {
        match answered(Ok(()), self.outcome).await? {
            Answer::Receipt(receipt) => Ok(receipt),
            other => Err(other.unexpected()),
        }
    }
}

impl IntoFuture for PendingSend {
    type Output = Result<SendReceipt>;
    #[cfg(not(target_arch = "wasm32"))]
    type IntoFuture = Pin<Box<dyn Future<Output = Result<SendReceipt>> + Send>>;
    #[cfg(target_arch = "wasm32")]
    type IntoFuture = Pin<Box<dyn Future<Output = Result<SendReceipt>>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.acked())
    }
}

struct Inner {
    directory: Arc<Directory>,
    info: SessionInfo,
    ctx: UserContext,
    commands: mpsc::UnboundedSender<Command>,
}

/// A connected Meridian client. Cheap to clone; all clones share one connection set.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user", &self.inner.info.user)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects with the native driver (tokio, tokio-tungstenite, reqwest).
    #[cfg(feature = "native")]
    pub async fn connect_native(config: ClientConfig) -> Result<Self> {
        let driver = crate::driver::native::TokioDriver::new()?;
        Self::connect(config, Arc::new(driver)).await
    }

    /// Connects: reads the federation document and the user's session from the directory,
    /// restores the outbox and delivery cursors from the store, then starts the engine.
    /// Region sockets open lazily, when a space there is first used; sends left over from
    /// an earlier run go out at once.
    #[cfg_attr(
        target_arch = "wasm32",
        allow(
            clippy::arc_with_non_send_sync,
            reason = "one thread on wasm32, where the driver and what holds it are not Send; \
                      the same Arcs are shared across threads natively"
        )
    )]
    pub async fn connect(config: ClientConfig, driver: Arc<dyn Driver>) -> Result<Self> {
        let first = match (&config.token_provider, config.token.trim().is_empty()) {
            (Some(provider), true) => provider.fetch_token().await.map_err(|e| {
                Error::Unauthorized(format!("the token provider gave no token: {e}"))
            })?,
            _ => Token {
                value: config.token.clone(),
                expires_at_ms: None,
            },
        };
        let credentials = Arc::new(Credentials::new(first, config.token_provider.clone())?);
        let trust = crate::trust::Trust::new(&config.federation_keys)?;
        let directory = Arc::new(Directory::new(
            &config.directory_url,
            credentials.clone(),
            trust,
            config.directory,
            driver.clone(),
        )?);
        let doc = directory.federation().await?;
        let info = directory.session().await?;
        let policy = doc.policy(&info.policy).cloned().ok_or_else(|| {
            Error::DirectoryUnavailable(format!(
                "the session names policy {} which the federation document lacks",
                info.policy
            ))
        })?;
        if doc.region(&info.home_region).is_none() {
            return Err(Error::DirectoryUnavailable(format!(
                "the session names home region {} which the federation document lacks",
                info.home_region
            )));
        }
        let ctx = UserContext {
            user: info.user.clone(),
            home_region: info.home_region.clone(),
            policy,
        };
        let namespaces = Namespaces::for_user(&ctx.user);
        let outbox = restore_outbox(config.store.as_ref(), &namespaces.outbox).await?;
        let cursors = restore_cursors(config.store.as_ref(), &namespaces.cursors).await?;
        let keys = Arc::new(load_or_create_keys(config.store.as_ref(), &namespaces.keys).await?);
        let (commands, rx) = mpsc::unbounded();
        directory.report_to(commands.clone());
        let engine = Engine::new(EngineSetup {
            driver: driver.clone(),
            ctx: ctx.clone(),
            credentials,
            config: config.session,
            directory: directory.clone(),
            store: config.store.clone(),
            outbox,
            cursors,
            keys,
            home: doc
                .region(&info.home_region)
                .cloned()
                .ok_or_else(|| Error::DirectoryUnavailable("no home region".into()))?,
        });
        driver.spawn(Box::pin(engine.run(rx)));
        tracing::info!(user = %info.user, home = %info.home_region, "connected to the federation");
        Ok(Self {
            inner: Arc::new(Inner {
                directory,
                info,
                ctx,
                commands,
            }),
        })
    }

    /// Who this client is.
    pub fn session(&self) -> &SessionInfo {
        &self.inner.info
    }

    /// Everything the app should hear about, from now on. Each call makes a new stream.
    /// The first stream also gets what happened before anyone listened (up to 1024
    /// events): sends restored from the store go out as soon as the client connects, and
    /// their `MessageSent` or `SendFailed` would otherwise reach nobody.
    pub fn events(&self) -> impl Stream<Item = Event> + Unpin + use<> {
        let (tx, rx) = mpsc::unbounded();
        let _ = self.inner.commands.unbounded_send(Command::Subscribe(tx));
        rx
    }

    /// Joins a space: from now on its messages arrive as [`Event::MessageReceived`], across
    /// reconnects. Refused with [`Error::PolicyViolation`] when the user's policy forbids
    /// the space's region, before anything is sent there.
    pub async fn join_space(&self, space: &SpaceId) -> Result<JoinedSpace> {
        match self
            .space_request(space, Request::Join(space.clone()))
            .await?
        {
            Response::Joined { space, head_seq } => Ok(JoinedSpace { space, head_seq }),
            other => Err(other.unexpected()),
        }
    }

    /// Leaves a space: its messages stop arriving.
    pub async fn leave_space(&self, space: &SpaceId) -> Result<()> {
        match self
            .space_request(space, Request::Leave(space.clone()))
            .await?
        {
            Response::Left => Ok(()),
            other => Err(other.unexpected()),
        }
    }

    /// Sends a message. When this returns, the send is in the outbox and persisted in the
    /// store: it will reach the region exactly once, across reconnects and restarts, or
    /// fail for good with a reason. Await the returned [`PendingSend`] for the receipt.
    ///
    /// Refused at once, with nothing stored or sent, when the text is empty or too large,
    /// the space doesn't exist, or the user's policy forbids its region. When the directory
    /// can't be reached the send is accepted and checked once it can.
    pub async fn send_message(&self, space: &SpaceId, text: &str) -> Result<PendingSend> {
        let key = IdempotencyKey::new(secret::random_hex128()?)?;
        self.send_message_with_key(space, text, key).await
    }

    /// Sends a message under a key the caller chose: what a caller that may not hear the
    /// answer (a browser tab handing its sends to another) uses to send again safely.
    /// While a send of that key is in the outbox, a second one is refused
    /// (`invalid_input`: look it up in [`Self::pending_sends`]); once the region has stored
    /// it, the region answers a second one with the first receipt and stores nothing.
    pub async fn send_message_with_key(
        &self,
        space: &SpaceId,
        text: &str,
        key: IdempotencyKey,
    ) -> Result<PendingSend> {
        model::validate_body(text)?;
        match self.locate(space).await {
            Ok((loc, _)) => policy::check_space_entry(&self.inner.ctx, &loc)
                .inspect_err(|e| self.report_refusal(e, Some(space.clone())))?,
            Err(e) if e.is_transient() => {
                tracing::debug!(%space, error = %e, "accepting a send for a space not located yet");
            }
            Err(e) => return Err(e),
        }
        let trace = traceparent()?;
        let answer = self.ask(|reply| Command::Enqueue {
            key,
            space: space.clone(),
            body: text.to_owned(),
            trace: Some(trace),
            reply,
        });
        PendingSend::accepted(answer.await?)
    }

    /// Every send not yet stored by its region (queued, in flight, or failed for good), in
    /// the order made.
    pub async fn pending_sends(&self) -> Result<Vec<OutboxEntry>> {
        match self.ask(Command::ListSends).await? {
            Answer::Sends(entries) => Ok(entries),
            other => Err(other.unexpected()),
        }
    }

    /// Puts a send that failed for good back in line (at the back of its space's line).
    pub async fn retry_send(&self, key: &IdempotencyKey) -> Result<PendingSend> {
        let answer = self.ask(|reply| Command::RetrySend {
            key: key.clone(),
            reply,
        });
        PendingSend::accepted(answer.await?)
    }

    /// Removes a send that is not on its way to the region yet (queued behind another, or
    /// failed). A send already on its way can't be cancelled: it may be stored.
    pub async fn cancel_send(&self, key: &IdempotencyKey) -> Result<()> {
        let answer = self.ask(|reply| Command::CancelSend {
            key: key.clone(),
            reply,
        });
        match answer.await? {
            Answer::Done => Ok(()),
            other => Err(other.unexpected()),
        }
    }

    /// A page of a space's history: up to `limit` messages before `before` (the newest
    /// when `None`), oldest first.
    pub async fn history(
        &self,
        space: &SpaceId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        if limit == 0 || limit as usize > MAX_PAGE {
            return Err(Error::InvalidInput(format!(
                "history limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let request = Request::History(HistoryRequest {
            space: space.clone(),
            before,
            limit,
        });
        match self.space_request(space, request).await? {
            Response::History(messages) => Ok(messages),
            other => Err(other.unexpected()),
        }
    }

    /// The newest page of a space (up to `limit` messages, oldest first): what an app
    /// rebuilds its view from after [`Event::ContinuityLost`]. Live delivery carries on
    /// after the newest of them.
    pub async fn resync(&self, space: &SpaceId, limit: u32) -> Result<Vec<Message>> {
        self.history(space, None, limit).await
    }

    /// Sets the user's presence in every region the client is connected to.
    pub async fn set_presence(&self, status: PresenceStatus) -> Result<()> {
        let regions = match self.ask(Command::ConnectedRegions).await? {
            Answer::Regions(regions) => regions,
            other => return Err(other.unexpected()),
        };
        for region in regions {
            let request = Request::Presence(PresenceRequest { status });
            match self.request(region, None, request).await? {
                Response::PresenceSet => {}
                other => return Err(other.unexpected()),
            }
        }
        Ok(())
    }

    /// Tells the space's members that the user is (or stopped) typing. Best effort:
    /// nothing is sent while the region is unreachable.
    pub async fn typing(&self, space: &SpaceId, typing: bool) -> Result<()> {
        let (loc, region) = self.locate(space).await?;
        policy::check_space_entry(&self.inner.ctx, &loc)?;
        self.command(Command::Typing {
            region: region.id,
            event: TypingEvent {
                space: space.clone(),
                user: None,
                typing,
            },
        })
    }

    /// Creates (or finds) the DM with `peer`, housed in a region both users' policies
    /// permit. Refused with [`Error::PolicyViolation`] when there is none.
    pub async fn create_dm(&self, peer: &UserId) -> Result<SpaceLocation> {
        if peer == &self.inner.info.user {
            return Err(Error::InvalidInput("a DM needs another user".into()));
        }
        let peer_loc = self.inner.directory.locate_user(peer).await?;
        let doc = self.inner.directory.federation().await?;
        let peer_policy = doc.policy(&peer_loc.policy).cloned().ok_or_else(|| {
            Error::DirectoryUnavailable(format!("unknown policy {}", peer_loc.policy))
        })?;
        let peer_ctx = UserContext {
            user: peer.clone(),
            home_region: peer_loc.home_region,
            policy: peer_policy,
        };
        let region_id = policy::dm_region(&self.inner.ctx, &peer_ctx)
            .inspect_err(|e| self.report_refusal(e, None))?;
        let region = doc
            .region(&region_id)
            .cloned()
            .ok_or_else(|| Error::DirectoryUnavailable(format!("unknown region {region_id}")))?;
        let request = Request::CreateDm(DmCreateRequest { peer: peer.clone() });
        match self.request(region, None, request).await? {
            Response::DmCreated(loc) => {
                self.inner.directory.remember_space(loc.clone());
                Ok(loc)
            }
            other => Err(other.unexpected()),
        }
    }

    /// The state of the client as a whole (see [`Event::OverallConnectionChanged`]):
    /// `Closed` once the client is disconnected.
    pub async fn connection_state(&self) -> Result<crate::ConnectionState> {
        match self.ask(Command::OverallState).await {
            Ok(Answer::State(state)) => Ok(state),
            Ok(other) => Err(other.unexpected()),
            Err(_) => Ok(crate::ConnectionState::Closed),
        }
    }

    /// Tells the client the platform's network went offline or came back (browser
    /// online/offline events, mobile reachability): recovery starts at once.
    pub fn network_changed(&self, online: bool) {
        let _ = self.command(Command::NetworkChanged(online));
    }

    /// Disconnects from every region. Pending requests fail with [`Error::Closed`].
    pub async fn disconnect(&self) {
        let _ = self.ask(Command::Shutdown).await;
    }

    // `locate`, `space_request` and `request` return boxed futures and are not generic:
    // every method that awaits them shares one compiled copy instead of having it inlined
    // in its own state machine (about 4 KB of the web bundle's raw wasm).

    fn locate<'a>(&'a self, space: &'a SpaceId) -> BoxFuture<'a, Result<(SpaceLocation, Region)>> {
        Box::pin(self.inner.directory.locate_space_region(space))
    }

    /// Locates the space, checks the policy, sends; asks the directory again once if the
    /// region answers that the space moved.
    fn space_request<'a>(
        &'a self,
        space: &'a SpaceId,
        request: Request,
    ) -> BoxFuture<'a, Result<Response>> {
        Box::pin(async move {
            let mut retried = false;
            loop {
                let (loc, region) = self.locate(space).await?;
                policy::check_space_entry(&self.inner.ctx, &loc)
                    .inspect_err(|e| self.report_refusal(e, Some(space.clone())))?;
                match self
                    .request(region, Some(loc.region.clone()), request.clone())
                    .await
                {
                    Err(Error::Moved(_)) if !retried => {
                        retried = true;
                        self.inner.directory.forget_space(space);
                    }
                    other => return other,
                }
            }
        })
    }

    fn request(
        &self,
        region: Region,
        space_region: Option<model::RegionId>,
        request: Request,
    ) -> BoxFuture<'static, Result<Response>> {
        let answer = self.ask(|reply| Command::Request {
            region,
            space_region,
            request,
            reply,
        });
        Box::pin(async move {
            match answer.await? {
                Answer::Response(response) => Ok(response),
                other => Err(other.unexpected()),
            }
        })
    }

    /// Sends the command `make` builds around a reply channel; resolves to the engine's
    /// answer, or [`Error::Closed`] when the engine is gone.
    fn ask(&self, make: impl FnOnce(Reply) -> Command) -> BoxFuture<'static, Result<Answer>> {
        let (reply, answer) = oneshot::channel();
        answered(self.command(make(reply)), answer)
    }

    fn report_refusal(&self, error: &Error, space: Option<SpaceId>) {
        if let Error::PolicyViolation { region, reason } = error {
            let _ = self.command(Command::Notify(Event::PolicyBlocked {
                region: region.clone(),
                space,
                reason: reason.clone(),
            }));
        }
    }

    fn command(&self, command: Command) -> Result<()> {
        self.inner
            .commands
            .unbounded_send(command)
            .map_err(|_| Error::Closed)
    }
}

/// Waits for the answer to a command that was `sent` (not generic: one compiled copy).
fn answered(
    sent: Result<()>,
    answer: oneshot::Receiver<Result<Answer>>,
) -> BoxFuture<'static, Result<Answer>> {
    Box::pin(async move {
        sent?;
        answer.await.map_err(|_| Error::Closed)?
    })
}

async fn restore_outbox(store: &dyn Store, namespace: &str) -> Result<Outbox> {
    let records = store.list(namespace).await?;
    let mut entries = Vec::with_capacity(records.len());
    for (key, bytes) in records {
        match OutboxEntry::decode(&bytes) {
            Ok(entry) => entries.push(entry),
            // A record that can't be read is reported and kept out of the way, not fatal.
            Err(e) => {
                tracing::error!(record = key, error = %e, "skipping an unreadable outbox record")
            }
        }
    }
    if !entries.is_empty() {
        tracing::info!(sends = entries.len(), "resuming sends from an earlier run");
    }
    Ok(Outbox::restore(entries))
}

async fn restore_cursors(store: &dyn Store, namespace: &str) -> Result<HashMap<SpaceId, Cursor>> {
    let mut cursors = HashMap::new();
    for (key, bytes) in store.list(namespace).await? {
        match (
            SpaceId::new(key.as_str()),
            crate::json::from_slice::<Cursor>(&bytes),
        ) {
            (Ok(space), Ok(cursor)) => {
                cursors.insert(space, cursor);
            }
            _ => tracing::error!(record = key, "skipping an unreadable cursor record"),
        }
    }
    Ok(cursors)
}

/// The client's key pair: made once per user and device, kept in the store. Its private
/// half never leaves the device.
async fn load_or_create_keys(
    store: &dyn Store,
    namespace: &str,
) -> Result<crate::envelope::KeyPair> {
    const RECORD: &str = "x25519";
    if let Some((_, bytes)) = store
        .list(namespace)
        .await?
        .into_iter()
        .find(|(k, _)| k == RECORD)
    {
        let bytes = zeroize::Zeroizing::new(bytes);
        match crate::envelope::KeyPair::from_private_bytes(&bytes) {
            Ok(keys) => return Ok(keys),
            Err(e) => tracing::error!(error = %e, "replacing an unreadable key pair"),
        }
    }
    let keys = crate::envelope::KeyPair::generate();
    store
        .put(namespace, RECORD, keys.private_bytes().to_vec())
        .await?;
    Ok(keys)
}

/// A fresh W3C traceparent (version 00, sampled).
fn traceparent() -> Result<String> {
    let trace = secret::random_hex128()?;
    let span = secret::random_hex64()?;
    Ok(format!("00-{trace}-{span}-01"))
}
