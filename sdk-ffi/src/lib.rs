//! Meridian for native apps: the uniffi facade over the one [`meridian::Client`] API.
//!
//! uniffi generates the Kotlin and Swift bindings (`bindings/kotlin-swift/`) and, through
//! uniffi-bindgen-react-native, the React Native module (`bindings/react-native/`) from
//! what this crate exports: [`connect`] and [`ClientBuilder`], the [`MeridianClient`] object with async methods,
//! records and enums for the domain types ([`types`]), one error enum with the core's
//! stable codes ([`MeridianError`]), and three traits the app implements in its own
//! language: [`EventListener`], [`AppStore`] (its own storage) and [`TokenSource`].
//!
//! It converts and forwards; the core decides everything. The core runs on its native
//! driver (tokio, tokio-tungstenite, rustls) in a runtime this crate owns, so that a call
//! from a Kotlin coroutine, a Swift task or a JavaScript promise needs no Rust runtime of
//! its caller.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use futures::StreamExt;
use meridian::driver::BoxFuture;
use meridian::model::{IdempotencyKey, SpaceId, UserId};
use meridian::store::{FileStore, MemoryStore, Records, Store};
use meridian::{Client, ClientConfig, Error};

pub mod types;

pub use types::*;

uniffi::setup_scaffolding!();

// ---------------------------------------------------------------------------------------
// The runtime
// ---------------------------------------------------------------------------------------

/// The tokio runtime every client of the process runs on (two worker threads: the engine
/// is one task per client and mostly waits).
fn runtime() -> Result<&'static tokio::runtime::Runtime, MeridianError> {
    static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("meridian")
                .enable_all()
                .build()
        })
        .as_ref()
        .map_err(|e| MeridianError::Internal {
            detail: format!("cannot start the SDK's runtime: {e}"),
        })
}

/// Runs `work` on the SDK's runtime; the foreign caller awaits it in its own way.
async fn on_runtime<T, F>(work: F) -> Result<T, MeridianError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, MeridianError>> + Send + 'static,
{
    runtime()?.spawn(work).await.unwrap_or_else(|e| {
        Err(MeridianError::Internal {
            detail: format!("the SDK's task failed: {e}"),
        })
    })
}

fn space_id(space: &str) -> Result<SpaceId, MeridianError> {
    Ok(SpaceId::new(space)?)
}

fn key_id(key: &str) -> Result<IdempotencyKey, MeridianError> {
    Ok(IdempotencyKey::new(key)?)
}

// ---------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------

/// Gets the SDK's log records (see [`set_log_handler`]). Called on SDK threads, as the
/// events happen: hand them to the platform's logger (Logcat, `os_log`, the console) and
/// return. A record never holds a token, a key or a message body.
#[uniffi::export(with_foreign)]
pub trait LogHandler: Send + Sync {
    /// One record.
    fn log(&self, record: LogEntry);
}

fn log_handler() -> &'static Mutex<Option<Arc<dyn LogHandler>>> {
    static HANDLER: OnceLock<Mutex<Option<Arc<dyn LogHandler>>>> = OnceLock::new();
    HANDLER.get_or_init(|| Mutex::new(None))
}

fn forward_log(record: meridian::log::LogRecord) {
    let handler = log_handler()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(handler) = handler {
        handler.log(LogEntry::from(record));
    }
}

/// Sends the SDK's log records at `level` (`off`, `error`, `warn`, `info`, `debug`,
/// `trace`) and above to `handler`, for the whole process (the last call wins; `None` or
/// `off` stops them). Where the app already installed a `tracing` subscriber of its own in
/// the process, the records go there instead.
#[uniffi::export]
pub fn set_log_handler(
    level: String,
    handler: Option<Arc<dyn LogHandler>>,
) -> Result<(), MeridianError> {
    let level = meridian::log::LogLevel::parse(&level)?;
    meridian::log::install(forward_log);
    let on = handler.is_some();
    *log_handler().lock().unwrap_or_else(PoisonError::into_inner) = handler;
    meridian::log::set_level(if on {
        level
    } else {
        meridian::log::LogLevel::Off
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Traits the app implements
// ---------------------------------------------------------------------------------------

/// Hears every event of a client (see [`MeridianClient::subscribe`]). Called on an SDK
/// thread, one event at a time, in order: hand heavy work to your own threads.
#[uniffi::export(with_foreign)]
pub trait EventListener: Send + Sync {
    /// One event.
    fn on_event(&self, event: Event);
}

/// A store of the app's (its database, its encrypted files): small records by namespace.
/// `put` must be durable when it returns. Called on SDK threads, never on the caller's.
#[uniffi::export(with_foreign)]
pub trait AppStore: Send + Sync {
    /// Writes (or replaces) a record.
    fn put(&self, namespace: String, key: String, value: Vec<u8>) -> Result<(), ForeignError>;
    /// Removes a record (missing is fine).
    fn delete(&self, namespace: String, key: String) -> Result<(), ForeignError>;
    /// Every record of a namespace.
    fn list(&self, namespace: String) -> Result<Vec<StoreRecord>, ForeignError>;
}

/// One record of an [`AppStore`].
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct StoreRecord {
    /// Its key.
    pub key: String,
    /// Its bytes.
    pub value: Vec<u8>,
}

/// Gives a fresh token: before the first connect when no token is given, ahead of expiry,
/// and whenever the directory or a region rejects the current one. Called on an SDK
/// thread; it may block (a network call to the app's auth backend).
#[uniffi::export(with_foreign)]
pub trait TokenSource: Send + Sync {
    /// A fresh token.
    fn fetch_token(&self) -> Result<Token, ForeignError>;
}

/// The app's store seen as the core's [`Store`]: each call on a blocking thread, since the
/// app's implementation may do disk IO.
struct ForeignStore(Arc<dyn AppStore>);

fn foreign_failure(what: &str, e: ForeignError) -> Error {
    Error::Internal(format!("the app's store failed to {what}: {e}"))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> meridian::Result<T> + Send + 'static,
) -> meridian::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(Error::Internal(format!("the app's code panicked: {e}"))))
}

impl Store for ForeignStore {
    fn put(
        &self,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
    ) -> BoxFuture<'_, meridian::Result<()>> {
        let (store, checked) = (self.0.clone(), meridian::store::check_names(namespace, key));
        let (namespace, key) = (namespace.to_owned(), key.to_owned());
        Box::pin(async move {
            checked?;
            blocking(move || {
                store
                    .put(namespace, key, value)
                    .map_err(|e| foreign_failure("write", e))
            })
            .await
        })
    }

    fn delete(&self, namespace: &str, key: &str) -> BoxFuture<'_, meridian::Result<()>> {
        let (store, checked) = (self.0.clone(), meridian::store::check_names(namespace, key));
        let (namespace, key) = (namespace.to_owned(), key.to_owned());
        Box::pin(async move {
            checked?;
            blocking(move || {
                store
                    .delete(namespace, key)
                    .map_err(|e| foreign_failure("delete", e))
            })
            .await
        })
    }

    fn list(&self, namespace: &str) -> BoxFuture<'_, meridian::Result<Records>> {
        let (store, checked) = (self.0.clone(), meridian::store::check_namespace(namespace));
        let namespace = namespace.to_owned();
        Box::pin(async move {
            checked?;
            let mut records: Records = blocking(move || {
                store
                    .list(namespace)
                    .map_err(|e| foreign_failure("list", e))
            })
            .await?
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect();
            records.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(records)
        })
    }
}

/// The app's token source seen as the core's [`meridian::TokenProvider`].
struct ForeignTokens(Arc<dyn TokenSource>);

impl meridian::TokenProvider for ForeignTokens {
    fn fetch_token(&self) -> BoxFuture<'_, meridian::Result<meridian::Token>> {
        let source = self.0.clone();
        Box::pin(async move {
            let token = blocking(move || {
                source
                    .fetch_token()
                    .map_err(|e| Error::Unauthorized(format!("the token source failed: {e}")))
            })
            .await?;
            Ok(meridian::Token {
                value: token.value,
                expires_at_ms: token.expires_at_ms,
            })
        })
    }
}

// ---------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------

/// Connects: reads the federation document and the user's session from the directory and
/// restores pending sends from the store (files under `options.store_dir`, else memory).
/// Region connections open when first needed. To pass a store or a token source of the
/// app's own, use [`ClientBuilder`].
#[uniffi::export]
pub async fn connect(options: ClientOptions) -> Result<Arc<MeridianClient>, MeridianError> {
    ClientBuilder::new(options).connect().await
}

/// A connect with the app's own parts: `ClientBuilder(options).store(s).tokenSource(t)`
/// then `connect()`. Each setter returns a new builder; the one it was called on is
/// unchanged.
///
/// (A builder rather than optional arguments: an optional foreign object does not cross
/// uniffi-bindgen-react-native's runtime, which lowers only a present one.)
#[derive(uniffi::Object, Clone)]
pub struct ClientBuilder {
    options: ClientOptions,
    store: Option<Arc<dyn AppStore>>,
    token_source: Option<Arc<dyn TokenSource>>,
    log: Option<(String, Arc<dyn LogHandler>)>,
}

#[uniffi::export]
impl ClientBuilder {
    /// A builder for `options`, with the store `options.store_dir` names (else memory) and
    /// no token source.
    #[uniffi::constructor]
    pub fn new(options: ClientOptions) -> Arc<Self> {
        Arc::new(Self {
            options,
            store: None,
            token_source: None,
            log: None,
        })
    }

    /// Sends the SDK's logs at `level` and above to `handler` from connect on (see
    /// [`set_log_handler`]: the handler is the process's, the last one set wins).
    pub fn log_handler(&self, level: String, handler: Arc<dyn LogHandler>) -> Arc<Self> {
        Arc::new(Self {
            log: Some((level, handler)),
            ..self.clone()
        })
    }

    /// Keeps pending sends, cursors and the device key in the app's own store instead.
    pub fn store(&self, store: Arc<dyn AppStore>) -> Arc<Self> {
        Arc::new(Self {
            store: Some(store),
            ..self.clone()
        })
    }

    /// Asks `source` for tokens: before the first connect when the options' token is empty,
    /// ahead of expiry, and when the current one is rejected.
    pub fn token_source(&self, source: Arc<dyn TokenSource>) -> Arc<Self> {
        Arc::new(Self {
            token_source: Some(source),
            ..self.clone()
        })
    }

    /// Connects, as [`connect`] does.
    pub async fn connect(&self) -> Result<Arc<MeridianClient>, MeridianError> {
        let Self {
            options,
            store,
            token_source,
            log,
        } = self.clone();
        if let Some((level, handler)) = log {
            set_log_handler(level, Some(handler))?;
        }
        on_runtime(async move {
            let store: Arc<dyn Store> = match (store, &options.store_dir) {
                (Some(app), _) => Arc::new(ForeignStore(app)),
                (None, Some(dir)) => Arc::new(FileStore::new(dir)),
                (None, None) => Arc::new(MemoryStore::new()),
            };
            let keys = options
                .federation_keys
                .into_iter()
                .map(|k| meridian::model::FederationKey {
                    id: k.id,
                    public_key: k.public_key,
                })
                .collect();
            let mut config = ClientConfig::new(options.directory_url, options.token)
                .with_federation_keys(keys)
                .with_store(store);
            if let Some(source) = token_source {
                config = config.with_token_provider(Arc::new(ForeignTokens(source)));
            }
            let client = Client::connect_native(config).await?;
            Ok(Arc::new(MeridianClient { client }))
        })
        .await
    }
}

/// A connected client. Every method that talks to the federation is async.
#[derive(uniffi::Object)]
pub struct MeridianClient {
    client: Client,
}

#[uniffi::export]
impl MeridianClient {
    /// Who this client is.
    pub fn session(&self) -> Session {
        self.client.session().into()
    }

    /// Calls `listener` with every event from now on, until the subscription is cancelled
    /// (or dropped) or the client disconnects.
    pub fn subscribe(
        &self,
        listener: Arc<dyn EventListener>,
    ) -> Result<Arc<Subscription>, MeridianError> {
        let mut events = self.client.events();
        let task = runtime()?.spawn(async move {
            while let Some(event) = events.next().await {
                listener.on_event(Event::from(&event));
            }
        });
        Ok(Arc::new(Subscription { task }))
    }

    /// Joins a space: its messages arrive as events from now on, across reconnects.
    pub async fn join_space(&self, space: String) -> Result<JoinedSpace, MeridianError> {
        let (client, space) = (self.client.clone(), space_id(&space)?);
        on_runtime(async move {
            let joined = client.join_space(&space).await?;
            Ok(JoinedSpace {
                space: joined.space.to_string(),
                head_seq: joined.head_seq,
            })
        })
        .await
    }

    /// Leaves a space.
    pub async fn leave_space(&self, space: String) -> Result<(), MeridianError> {
        let (client, space) = (self.client.clone(), space_id(&space)?);
        on_runtime(async move { Ok(client.leave_space(&space).await?) }).await
    }

    /// Sends a message; returns once the send is persisted. Refused at once when the
    /// user's policy forbids the space's region.
    pub async fn send_message(
        &self,
        space: String,
        text: String,
    ) -> Result<Arc<PendingSend>, MeridianError> {
        let (client, space) = (self.client.clone(), space_id(&space)?);
        on_runtime(async move {
            let pending = client.send_message(&space, &text).await?;
            Ok(Arc::new(PendingSend::from(pending)))
        })
        .await
    }

    /// Every send not yet stored by its region, in the order made.
    pub async fn pending_sends(&self) -> Result<Vec<OutboxEntry>, MeridianError> {
        let client = self.client.clone();
        on_runtime(async move {
            Ok(client
                .pending_sends()
                .await?
                .iter()
                .map(OutboxEntry::from)
                .collect())
        })
        .await
    }

    /// Puts a send that failed for good back in line.
    pub async fn retry_send(&self, key: String) -> Result<Arc<PendingSend>, MeridianError> {
        let (client, key) = (self.client.clone(), key_id(&key)?);
        on_runtime(async move { Ok(Arc::new(PendingSend::from(client.retry_send(&key).await?))) })
            .await
    }

    /// Removes a send that is not on its way yet.
    pub async fn cancel_send(&self, key: String) -> Result<(), MeridianError> {
        let (client, key) = (self.client.clone(), key_id(&key)?);
        on_runtime(async move { Ok(client.cancel_send(&key).await?) }).await
    }

    /// A page of history, oldest first.
    pub async fn history(
        &self,
        space: String,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Message>, MeridianError> {
        let (client, space) = (self.client.clone(), space_id(&space)?);
        on_runtime(async move {
            Ok(client
                .history(&space, before, limit)
                .await?
                .iter()
                .map(Message::from)
                .collect())
        })
        .await
    }

    /// The newest page of a space, after `ContinuityLost`.
    pub async fn resync(&self, space: String, limit: u32) -> Result<Vec<Message>, MeridianError> {
        self.history(space, None, limit).await
    }

    /// Sets the user's presence (told again after every reconnect).
    pub async fn set_presence(&self, status: PresenceStatus) -> Result<(), MeridianError> {
        let client = self.client.clone();
        on_runtime(async move { Ok(client.set_presence(status.into()).await?) }).await
    }

    /// Tells a space the user is (or stopped) typing. Best effort.
    pub async fn typing(&self, space: String, typing: bool) -> Result<(), MeridianError> {
        let (client, space) = (self.client.clone(), space_id(&space)?);
        on_runtime(async move { Ok(client.typing(&space, typing).await?) }).await
    }

    /// Creates (or finds) the DM with `peer`, in a region both users' policies permit.
    pub async fn create_dm(&self, peer: String) -> Result<SpaceLocation, MeridianError> {
        let client = self.client.clone();
        let peer = UserId::new(peer)?;
        on_runtime(async move { Ok((&client.create_dm(&peer).await?).into()) }).await
    }

    /// The state of the client as a whole.
    pub async fn connection_state(&self) -> Result<ConnectionState, MeridianError> {
        let client = self.client.clone();
        on_runtime(async move { Ok(client.connection_state().await?.into()) }).await
    }

    /// Tells the client the platform's network went away or came back (reachability).
    pub fn network_changed(&self, online: bool) {
        self.client.network_changed(online);
    }

    /// Disconnects from every region. Pending sends stay in the store.
    pub async fn disconnect(&self) -> Result<(), MeridianError> {
        let client = self.client.clone();
        on_runtime(async move {
            client.disconnect().await;
            Ok(())
        })
        .await
    }
}

/// A send the outbox accepted and persisted.
#[derive(uniffi::Object)]
pub struct PendingSend {
    key: String,
    space: String,
    pending: Mutex<Option<meridian::PendingSend>>,
}

impl From<meridian::PendingSend> for PendingSend {
    fn from(pending: meridian::PendingSend) -> Self {
        Self {
            key: pending.key().to_string(),
            space: pending.space().to_string(),
            pending: Mutex::new(Some(pending)),
        }
    }
}

#[uniffi::export]
impl PendingSend {
    /// The idempotency key (to retry or cancel the send).
    pub fn key(&self) -> String {
        self.key.clone()
    }

    /// The space.
    pub fn space(&self) -> String {
        self.space.clone()
    }

    /// The region's receipt, once it stored the message. Call it once.
    pub async fn acked(&self) -> Result<SendReceipt, MeridianError> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| MeridianError::InvalidInput {
                detail: "acked() was already called for this send".into(),
            })?;
        on_runtime(async move { Ok((&pending.acked().await?).into()) }).await
    }
}

/// A running [`MeridianClient::subscribe`]; cancelling or dropping it stops the events.
#[derive(uniffi::Object)]
pub struct Subscription {
    task: tokio::task::JoinHandle<()>,
}

#[uniffi::export]
impl Subscription {
    /// Stops the events.
    pub fn cancel(&self) {
        self.task.abort();
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}
