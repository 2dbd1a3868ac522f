//! The exported `WasmClient`: the core's `Client` with JavaScript's calling conventions.
//!
//! Owns: argument parsing, Promise plumbing, and the platform's `online`/`offline` events.
//! Must never decide anything the core decides (regions, policy, retries, ordering).

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::LocalBoxFuture;
use meridian::credentials::{Token, TokenProvider};
use meridian::driver::BoxFuture;
use meridian::json::{Fields, FromJson, array_text, object_text};
use meridian::model::{FederationKey, IdempotencyKey, PresenceStatus, SpaceId, UserId};
use meridian::store::{MemoryStore, Store};
use meridian::{Client, ClientConfig, Error, PendingSend, Result};
use serde_json::Value;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use crate::convert;
use crate::driver::{BrowserDriver, js_text};
use crate::store::{IndexedDbStore, JsStore};

/// What `WasmClient.connect` takes, as JSON (the TypeScript layer builds it).
struct Options {
    directory_url: String,
    token: String,
    federation_keys: Vec<FederationKey>,
    /// `indexeddb` (the browser default) or `memory`; ignored when a store object is given.
    store: Option<String>,
    /// The IndexedDB database name.
    store_name: Option<String>,
    /// Listen to the platform's `online`/`offline` events (default: yes, where they exist).
    watch_network: bool,
}

impl FromJson for Options {
    fn from_json(value: Value) -> std::result::Result<Self, String> {
        let mut f = Fields::of(value)?;
        let options = Self {
            directory_url: f.field("directoryUrl")?,
            token: f.or_default("token")?,
            federation_keys: f
                .field::<Vec<Key>>("federationKeys")?
                .into_iter()
                .map(|k| k.0)
                .collect(),
            store: f.field("store")?,
            store_name: f.field("storeName")?,
            watch_network: f.opt("watchNetwork")?.unwrap_or(true),
        };
        f.deny_unknown()?;
        Ok(options)
    }
}

/// A federation key as the app writes it: `{id, publicKey}`.
struct Key(FederationKey);

impl FromJson for Key {
    fn from_json(value: Value) -> std::result::Result<Self, String> {
        let mut f = Fields::of(value)?;
        let key = FederationKey {
            id: f.field("id")?,
            public_key: f.field("publicKey")?,
        };
        f.deny_unknown()?;
        Ok(Self(key))
    }
}

/// A connected client. Every method that talks to the federation returns a Promise.
#[wasm_bindgen]
pub struct WasmClient {
    client: Client,
    network: RefCell<Option<NetworkWatch>>,
}

fn js_result<T>(result: Result<T>) -> std::result::Result<T, JsValue> {
    result.map_err(|e| convert::error_value(&e))
}

/// Runs `work` as a Promise resolving to the JSON text it makes.
fn promise_json(work: impl Future<Output = Result<String>> + 'static) -> js_sys::Promise {
    // Boxed before it is wrapped: the wrapper below is compiled once, not once per method.
    boxed_promise_json(Box::pin(work))
}

fn boxed_promise_json(work: LocalBoxFuture<'static, Result<String>>) -> js_sys::Promise {
    promise(Box::pin(async move { Ok(JsValue::from_str(&work.await?)) }))
}

/// The JSON text of `null`: what methods with nothing to tell resolve to.
fn null() -> Result<String> {
    Ok("null".to_owned())
}

/// Runs `work` as a Promise. Boxed: one instance of the Promise glue serves every method
/// (each instance costs about 2 KB of wasm).
fn promise(work: LocalBoxFuture<'static, Result<JsValue>>) -> js_sys::Promise {
    future_to_promise(async move { js_result(work.await) })
}

fn space_id(space: &str) -> std::result::Result<SpaceId, JsValue> {
    js_result(SpaceId::new(space))
}

fn key_id(key: &str) -> std::result::Result<IdempotencyKey, JsValue> {
    js_result(IdempotencyKey::new(key))
}

#[wasm_bindgen]
impl WasmClient {
    /// Connects. `options` is JSON (see `Options`); `token_provider` an optional
    /// `() => Promise<string | {token, expiresAtMs}>`; `store` an optional object with
    /// `put`/`delete`/`list`.
    pub async fn connect(
        options: String,
        token_provider: Option<js_sys::Function>,
        store: JsValue,
    ) -> std::result::Result<WasmClient, JsValue> {
        let options: Options = meridian::json::from_str(&options).map_err(|e| {
            convert::error_value(&Error::InvalidInput(format!("bad connect options: {e}")))
        })?;
        let store: Arc<dyn Store> = if !store.is_undefined() && !store.is_null() {
            Arc::new(js_result(JsStore::new(store))?)
        } else {
            match options.store.as_deref() {
                None | Some("indexeddb") => {
                    let name = options.store_name.as_deref().unwrap_or("meridian");
                    Arc::new(js_result(IndexedDbStore::open(name).await)?)
                }
                Some("memory") => Arc::new(MemoryStore::new()),
                Some(other) => {
                    return Err(convert::error_value(&Error::InvalidInput(format!(
                        "unknown store \"{}\": use \"indexeddb\", \"memory\" or an object",
                        other.escape_default()
                    ))));
                }
            }
        };
        let mut config = ClientConfig::new(options.directory_url, options.token)
            .with_federation_keys(options.federation_keys)
            .with_store(store);
        if let Some(function) = token_provider {
            config = config.with_token_provider(Arc::new(JsTokenProvider { function }));
        }
        let client = js_result(Client::connect(config, Arc::new(BrowserDriver::new())).await)?;
        let network = options
            .watch_network
            .then(|| NetworkWatch::start(&client))
            .flatten();
        Ok(WasmClient {
            client,
            network: RefCell::new(network),
        })
    }

    /// Who this client is (JSON).
    pub fn session(&self) -> String {
        object_text(|w| convert::session(w, self.client.session()))
    }

    /// Calls `callback` with each event (JSON text) until the client is disconnected.
    #[wasm_bindgen(js_name = onEvent)]
    pub fn on_event(&self, callback: js_sys::Function) {
        let mut events = self.client.events();
        wasm_bindgen_futures::spawn_local(async move {
            while let Some(event) = events.next().await {
                let text = JsValue::from_str(&object_text(|w| convert::event(w, &event)));
                if let Err(e) = callback.call1(&JsValue::NULL, &text) {
                    // The app's listener threw: its problem, not the stream's.
                    tracing::warn!(error = %js_text(&e), "an event listener threw");
                }
            }
        });
    }

    /// Joins a space (JSON `{space, headSeq}`).
    #[wasm_bindgen(js_name = joinSpace)]
    pub fn join_space(&self, space: &str) -> std::result::Result<js_sys::Promise, JsValue> {
        let (client, space) = (self.client.clone(), space_id(space)?);
        Ok(promise_json(async move {
            let joined = client.join_space(&space).await?;
            Ok(object_text(|w| convert::joined(w, &joined)))
        }))
    }

    /// Leaves a space.
    #[wasm_bindgen(js_name = leaveSpace)]
    pub fn leave_space(&self, space: &str) -> std::result::Result<js_sys::Promise, JsValue> {
        let (client, space) = (self.client.clone(), space_id(space)?);
        Ok(promise_json(async move {
            client.leave_space(&space).await?;
            null()
        }))
    }

    /// Sends a message; resolves once it is persisted in the outbox, to a `WasmPendingSend`.
    /// `key`, when given, is the send's idempotency key (see `send_message_with_key`).
    #[wasm_bindgen(js_name = sendMessage)]
    pub fn send_message(
        &self,
        space: &str,
        text: String,
        key: Option<String>,
    ) -> std::result::Result<js_sys::Promise, JsValue> {
        let (client, space) = (self.client.clone(), space_id(space)?);
        let key = key.as_deref().map(key_id).transpose()?;
        Ok(promise(Box::pin(async move {
            let pending = match key {
                Some(key) => client.send_message_with_key(&space, &text, key).await?,
                None => client.send_message(&space, &text).await?,
            };
            Ok(WasmPendingSend::from(pending).into())
        })))
    }

    /// Every send not yet stored by its region (JSON array).
    #[wasm_bindgen(js_name = pendingSends)]
    pub fn pending_sends(&self) -> js_sys::Promise {
        let client = self.client.clone();
        promise_json(async move {
            let entries = client.pending_sends().await?;
            Ok(array_text(&entries, convert::outbox_entry))
        })
    }

    /// Puts a failed send back in line; resolves to a `WasmPendingSend`.
    #[wasm_bindgen(js_name = retrySend)]
    pub fn retry_send(&self, key: &str) -> std::result::Result<js_sys::Promise, JsValue> {
        let (client, key) = (self.client.clone(), key_id(key)?);
        Ok(promise(Box::pin(async move {
            let pending = client.retry_send(&key).await?;
            Ok(WasmPendingSend::from(pending).into())
        })))
    }

    /// Removes a send that is not on its way yet.
    #[wasm_bindgen(js_name = cancelSend)]
    pub fn cancel_send(&self, key: &str) -> std::result::Result<js_sys::Promise, JsValue> {
        let (client, key) = (self.client.clone(), key_id(key)?);
        Ok(promise_json(async move {
            client.cancel_send(&key).await?;
            null()
        }))
    }

    /// A page of history (JSON array of messages, oldest first).
    pub fn history(
        &self,
        space: &str,
        before: Option<f64>,
        limit: u32,
    ) -> std::result::Result<js_sys::Promise, JsValue> {
        let (client, space) = (self.client.clone(), space_id(space)?);
        let before = match before {
            Some(b) if b.is_finite() && b >= 0.0 && b.fract() == 0.0 => Some(b as u64),
            Some(_) => {
                return Err(convert::error_value(&Error::InvalidInput(
                    "`before` must be a whole seq".into(),
                )));
            }
            None => None,
        };
        Ok(promise_json(async move {
            let messages = client.history(&space, before, limit).await?;
            Ok(array_text(&messages, convert::message))
        }))
    }

    /// The newest page of a space, after `continuityLost` (JSON array of messages).
    pub fn resync(&self, space: &str, limit: u32) -> std::result::Result<js_sys::Promise, JsValue> {
        self.history(space, None, limit)
    }

    /// Sets the user's presence: `online`, `away` or `offline`.
    #[wasm_bindgen(js_name = setPresence)]
    pub fn set_presence(&self, status: &str) -> std::result::Result<js_sys::Promise, JsValue> {
        let status = PresenceStatus::from_wire_name(status).ok_or_else(|| {
            convert::error_value(&Error::InvalidInput(format!(
                "unknown presence \"{}\"",
                status.escape_default()
            )))
        })?;
        let client = self.client.clone();
        Ok(promise_json(async move {
            client.set_presence(status).await?;
            null()
        }))
    }

    /// Tells a space the user is (or stopped) typing.
    pub fn typing(
        &self,
        space: &str,
        typing: bool,
    ) -> std::result::Result<js_sys::Promise, JsValue> {
        let (client, space) = (self.client.clone(), space_id(space)?);
        Ok(promise_json(async move {
            client.typing(&space, typing).await?;
            null()
        }))
    }

    /// Creates (or finds) the DM with `peer` (JSON space location).
    #[wasm_bindgen(js_name = createDm)]
    pub fn create_dm(&self, peer: &str) -> std::result::Result<js_sys::Promise, JsValue> {
        let client = self.client.clone();
        let peer = js_result(UserId::new(peer))?;
        Ok(promise_json(async move {
            let location = client.create_dm(&peer).await?;
            Ok(object_text(|w| convert::location(w, &location)))
        }))
    }

    /// The state of the client as a whole (JSON).
    #[wasm_bindgen(js_name = connectionState)]
    pub fn connection_state(&self) -> js_sys::Promise {
        let client = self.client.clone();
        promise_json(async move {
            let state = client.connection_state().await?;
            Ok(object_text(|w| convert::connection_state(w, &state)))
        })
    }

    /// Tells the client the network went away or came back.
    #[wasm_bindgen(js_name = networkChanged)]
    pub fn network_changed(&self, online: bool) {
        self.client.network_changed(online);
    }

    /// Disconnects from every region and stops listening to the platform.
    pub fn disconnect(&self) -> js_sys::Promise {
        self.network.borrow_mut().take();
        let client = self.client.clone();
        promise(Box::pin(async move {
            client.disconnect().await;
            Ok(JsValue::UNDEFINED)
        }))
    }
}

/// A send persisted in the outbox; `acked()` waits for the region's receipt.
#[wasm_bindgen]
pub struct WasmPendingSend {
    key: String,
    space: String,
    pending: RefCell<Option<PendingSend>>,
}

impl From<PendingSend> for WasmPendingSend {
    fn from(pending: PendingSend) -> Self {
        Self {
            key: pending.key().as_str().to_owned(),
            space: pending.space().as_str().to_owned(),
            pending: RefCell::new(Some(pending)),
        }
    }
}

#[wasm_bindgen]
impl WasmPendingSend {
    /// The idempotency key.
    #[wasm_bindgen(getter)]
    pub fn key(&self) -> String {
        self.key.clone()
    }

    /// The space.
    #[wasm_bindgen(getter)]
    pub fn space(&self) -> String {
        self.space.clone()
    }

    /// The receipt (JSON), once the region has stored the message. Call once.
    pub fn acked(&self) -> js_sys::Promise {
        let pending = self.pending.borrow_mut().take();
        promise_json(async move {
            let pending = pending.ok_or_else(|| {
                Error::InvalidInput("acked() was already called for this send".into())
            })?;
            let receipt = pending.acked().await?;
            Ok(object_text(|w| convert::receipt(w, &receipt)))
        })
    }
}

/// A token provider written in JavaScript.
struct JsTokenProvider {
    function: js_sys::Function,
}

impl TokenProvider for JsTokenProvider {
    fn fetch_token(&self) -> BoxFuture<'_, Result<Token>> {
        let returned = self.function.call0(&JsValue::NULL);
        Box::pin(async move {
            let returned = returned.map_err(|e| {
                Error::Unauthorized(format!("the token provider threw: {}", js_text(&e)))
            })?;
            let value = JsFuture::from(js_sys::Promise::resolve(&returned))
                .await
                .map_err(|e| {
                    Error::Unauthorized(format!("the token provider failed: {}", js_text(&e)))
                })?;
            if let Some(token) = value.as_string() {
                return Ok(Token {
                    value: token,
                    expires_at_ms: None,
                });
            }
            let field = |name: &str| js_sys::Reflect::get(&value, &JsValue::from_str(name)).ok();
            let token = field("token").and_then(|t| t.as_string()).ok_or_else(|| {
                Error::InvalidInput(
                    "the token provider must resolve to a string or {token, expiresAtMs}".into(),
                )
            })?;
            let expires_at_ms = field("expiresAtMs")
                .and_then(|e| e.as_f64())
                .filter(|e| e.is_finite() && *e >= 0.0)
                .map(|e| e as u64);
            Ok(Token {
                value: token,
                expires_at_ms,
            })
        })
    }
}

/// The platform's `online`/`offline` events, forwarded to `network_changed` while alive.
struct NetworkWatch {
    target: web_sys::EventTarget,
    online: Closure<dyn FnMut()>,
    offline: Closure<dyn FnMut()>,
}

impl NetworkWatch {
    /// Listens where the global object is an event target (windows, workers); `None` in
    /// Node, whose apps call `networkChanged` themselves.
    fn start(client: &Client) -> Option<Self> {
        let global = js_sys::global();
        let has_listener = js_sys::Reflect::get(&global, &JsValue::from_str("addEventListener"))
            .is_ok_and(|f| f.is_function());
        if !has_listener {
            return None;
        }
        let target = global.unchecked_into::<web_sys::EventTarget>();
        let (up, down) = (client.clone(), client.clone());
        let online = Closure::<dyn FnMut()>::new(move || up.network_changed(true));
        let offline = Closure::<dyn FnMut()>::new(move || down.network_changed(false));
        let listen = |name: &str, f: &Closure<dyn FnMut()>| {
            target
                .add_event_listener_with_callback(name, f.as_ref().unchecked_ref())
                .is_ok()
        };
        (listen("online", &online) && listen("offline", &offline)).then_some(Self {
            target,
            online,
            offline,
        })
    }
}

impl Drop for NetworkWatch {
    fn drop(&mut self) {
        let _ = self
            .target
            .remove_event_listener_with_callback("online", self.online.as_ref().unchecked_ref());
        let _ = self
            .target
            .remove_event_listener_with_callback("offline", self.offline.as_ref().unchecked_ref());
    }
}

// ----- logs (the debug build only: the default one compiles them out) -----

#[cfg(not(feature = "quiet"))]
thread_local! {
    static LOG_HANDLER: RefCell<Option<js_sys::Function>> = const { RefCell::new(None) };
}

/// Hands the core's log records at `level` and above to `handler`, as JSON text
/// `{level, target, message, fields: {name: value}}`; `off` (or no handler) stops them.
/// For the whole module: the last call wins.
#[cfg(not(feature = "quiet"))]
#[wasm_bindgen(js_name = setLogHandler)]
pub fn set_log_handler(
    level: &str,
    handler: Option<js_sys::Function>,
) -> std::result::Result<(), JsValue> {
    use meridian::log::{self, LogLevel};
    let level = js_result(LogLevel::parse(level))?;
    log::install(|record| {
        let text = object_text(|w| {
            w.str("level", record.level.as_str())
                .str("target", &record.target)
                .str("message", &record.message)
                .object("fields", |w| {
                    for (name, value) in &record.fields {
                        w.str(name, value);
                    }
                });
        });
        LOG_HANDLER.with(|handler| {
            if let Some(handler) = handler.borrow().as_ref() {
                // A handler that throws loses its record, nothing else.
                let _ = handler.call1(&JsValue::NULL, &JsValue::from_str(&text));
            }
        });
    });
    let on = handler.is_some();
    LOG_HANDLER.with(|slot| *slot.borrow_mut() = handler);
    log::set_level(if on { level } else { LogLevel::Off });
    Ok(())
}
