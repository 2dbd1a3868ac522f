//! Stores for the web: IndexedDB in browsers, and any object the app supplies.
//!
//! Owns: the [`Store`] implementations of the web build. Must never interpret records: the
//! core decides what they hold (the outbox, delivery cursors, the device key pair).

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::oneshot;
use meridian::driver::BoxFuture;
use meridian::store::{Records, Store};
use meridian::{Error, Result};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbKeyRange, IdbOpenDbRequest, IdbRequest, IdbTransactionMode};

use crate::driver::js_text;

/// The one object store: keys are `namespace/key` (neither may contain `/`, see
/// [`meridian::store`]), values `Uint8Array`s.
const OBJECT_STORE: &str = "records";
const SCHEMA_VERSION: u32 = 1;

/// A store in the browser's IndexedDB: the outbox, cursors and keys survive a reload.
///
/// A write resolves when its transaction has committed, as the [`Store`] contract asks.
#[derive(Debug)]
pub struct IndexedDbStore {
    db: IdbDatabase,
}

impl IndexedDbStore {
    /// Opens (or creates) the database `name`. Fails with `invalid_input` where the
    /// platform has no IndexedDB (Node), and `internal` when the browser refuses (private
    /// mode in some browsers, storage blocked).
    pub async fn open(name: &str) -> Result<Self> {
        let factory = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("indexedDB"))
            .ok()
            .and_then(|f| f.dyn_into::<web_sys::IdbFactory>().ok())
            .ok_or_else(|| {
                Error::InvalidInput("this platform has no IndexedDB; pass another store".into())
            })?;
        let request = factory
            .open_with_u32(name, SCHEMA_VERSION)
            .map_err(|e| storage_error("cannot open IndexedDB", &e))?;
        let upgrade = Closure::<dyn FnMut(web_sys::IdbVersionChangeEvent)>::new(
            move |event: web_sys::IdbVersionChangeEvent| {
                let db = event
                    .target()
                    .and_then(|t| t.dyn_into::<IdbOpenDbRequest>().ok())
                    .and_then(|r| r.result().ok())
                    .and_then(|r| r.dyn_into::<IdbDatabase>().ok());
                if let Some(db) = db
                    && !db.object_store_names().contains(OBJECT_STORE)
                {
                    let _ = db.create_object_store(OBJECT_STORE);
                }
            },
        );
        request.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        let result = request_done(&request).await;
        request.set_onupgradeneeded(None);
        let db = result?
            .dyn_into::<IdbDatabase>()
            .map_err(|_| Error::Internal("IndexedDB opened something else".into()))?;
        Ok(Self { db })
    }

    fn transaction(&self, mode: IdbTransactionMode) -> Result<web_sys::IdbTransaction> {
        self.db
            .transaction_with_str_and_mode(OBJECT_STORE, mode)
            .map_err(|e| storage_error("cannot start a transaction", &e))
    }

    async fn write(
        &self,
        change: impl FnOnce(&web_sys::IdbObjectStore) -> Result<()>,
    ) -> Result<()> {
        let tx = self.transaction(IdbTransactionMode::Readwrite)?;
        let done = transaction_done(&tx);
        let store = tx
            .object_store(OBJECT_STORE)
            .map_err(|e| storage_error("no object store", &e))?;
        if let Err(e) = change(&store) {
            let _ = tx.abort();
            return Err(e);
        }
        done.await
    }
}

impl Drop for IndexedDbStore {
    fn drop(&mut self) {
        self.db.close();
    }
}

fn record_key(namespace: &str, key: &str) -> Result<String> {
    meridian::store::check_names(namespace, key)?;
    Ok(format!("{namespace}/{key}"))
}

impl Store for IndexedDbStore {
    fn put(&self, namespace: &str, key: &str, value: Vec<u8>) -> BoxFuture<'_, Result<()>> {
        let id = record_key(namespace, key);
        Box::pin(async move {
            let id = id?;
            let bytes = js_sys::Uint8Array::from(value.as_slice());
            self.write(|store| {
                store
                    .put_with_key(&bytes, &JsValue::from_str(&id))
                    .map(drop)
                    .map_err(|e| storage_error("cannot write", &e))
            })
            .await
        })
    }

    fn delete(&self, namespace: &str, key: &str) -> BoxFuture<'_, Result<()>> {
        let id = record_key(namespace, key);
        Box::pin(async move {
            let id = id?;
            self.write(|store| {
                store
                    .delete(&JsValue::from_str(&id))
                    .map(drop)
                    .map_err(|e| storage_error("cannot delete", &e))
            })
            .await
        })
    }

    fn list(&self, namespace: &str) -> BoxFuture<'_, Result<Records>> {
        let checked = meridian::store::check_namespace(namespace);
        let prefix = format!("{namespace}/");
        // Every key of the namespace sorts between "ns/" and "ns0" ('0' follows '/').
        let end = format!("{namespace}0");
        Box::pin(async move {
            checked?;
            let range = IdbKeyRange::bound(&JsValue::from_str(&prefix), &JsValue::from_str(&end))
                .map_err(|e| storage_error("bad key range", &e))?;
            let tx = self.transaction(IdbTransactionMode::Readonly)?;
            let store = tx
                .object_store(OBJECT_STORE)
                .map_err(|e| storage_error("no object store", &e))?;
            let keys = store
                .get_all_keys_with_key(&range)
                .map_err(|e| storage_error("cannot list", &e))?;
            let values = store
                .get_all_with_key(&range)
                .map_err(|e| storage_error("cannot list", &e))?;
            let keys = js_sys::Array::from(&request_done(&keys).await?);
            let values = js_sys::Array::from(&request_done(&values).await?);
            let mut records = Vec::with_capacity(keys.length() as usize);
            for (key, value) in keys.iter().zip(values.iter()) {
                let (Some(key), Some(value)) =
                    (key.as_string(), value.dyn_ref::<js_sys::Uint8Array>())
                else {
                    tracing::error!("skipping an IndexedDB record of an unknown shape");
                    continue;
                };
                let key = key.strip_prefix(&prefix).unwrap_or(&key).to_owned();
                records.push((key, value.to_vec()));
            }
            Ok(records)
        })
    }
}

/// Waits for an IndexedDB request's `success` (its result) or `error`.
async fn request_done(request: &IdbRequest) -> Result<JsValue> {
    let (tx, rx) = oneshot::channel::<Result<JsValue>>();
    let tx = Rc::new(RefCell::new(Some(tx)));
    let on_success = {
        let tx = tx.clone();
        let request = request.clone();
        Closure::<dyn FnMut()>::new(move || {
            if let Some(tx) = tx.borrow_mut().take() {
                let _ = tx.send(request.result().map_err(|e| storage_error("no result", &e)));
            }
        })
    };
    let on_error = {
        let request = request.clone();
        Closure::<dyn FnMut()>::new(move || {
            if let Some(tx) = tx.borrow_mut().take() {
                let why = request
                    .error()
                    .ok()
                    .flatten()
                    .map(|e| e.message())
                    .unwrap_or_default();
                let _ = tx.send(Err(Error::Internal(format!("IndexedDB failed: {why}"))));
            }
        })
    };
    request.set_onsuccess(Some(on_success.as_ref().unchecked_ref()));
    request.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    let result = rx
        .await
        .unwrap_or_else(|_| Err(Error::Internal("IndexedDB request vanished".into())));
    request.set_onsuccess(None);
    request.set_onerror(None);
    result
}

/// Waits for a transaction to commit (`complete`), or to fail (`error`, `abort`).
fn transaction_done(tx: &web_sys::IdbTransaction) -> impl Future<Output = Result<()>> + use<> {
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        tx.set_oncomplete(Some(&resolve));
        tx.set_onerror(Some(&reject));
        tx.set_onabort(Some(&reject));
    });
    async move {
        JsFuture::from(promise)
            .await
            .map(drop)
            .map_err(|_| Error::Internal("IndexedDB did not commit the write".into()))
    }
}

fn storage_error(what: &str, error: &JsValue) -> Error {
    Error::Internal(format!("{what}: {}", js_text(error)))
}

/// A store the app implements in JavaScript: an object with `put(namespace, key, bytes)`,
/// `delete(namespace, key)` and `list(namespace)` (resolving to `[key, bytes][]` in key
/// order), each returning a Promise.
pub struct JsStore {
    object: JsValue,
}

impl std::fmt::Debug for JsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsStore")
    }
}

impl JsStore {
    /// Wraps `object`; fails unless it has the three methods.
    pub fn new(object: JsValue) -> Result<Self> {
        for method in ["put", "delete", "list"] {
            if method_of(&object, method).is_none() {
                return Err(Error::InvalidInput(format!(
                    "the store has no `{method}` method"
                )));
            }
        }
        Ok(Self { object })
    }

    async fn call(&self, method: &str, args: &[JsValue]) -> Result<JsValue> {
        let function = method_of(&self.object, method)
            .ok_or_else(|| Error::InvalidInput(format!("the store has no `{method}` method")))?;
        let array: js_sys::Array = args.iter().collect();
        let returned = function
            .apply(&self.object, &array)
            .map_err(|e| Error::Internal(format!("the store's {method} threw: {}", js_text(&e))))?;
        let promise = js_sys::Promise::resolve(&returned);
        JsFuture::from(promise)
            .await
            .map_err(|e| Error::Internal(format!("the store's {method} failed: {}", js_text(&e))))
    }
}

fn method_of(object: &JsValue, name: &str) -> Option<js_sys::Function> {
    js_sys::Reflect::get(object, &JsValue::from_str(name))
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
}

impl Store for JsStore {
    fn put(&self, namespace: &str, key: &str, value: Vec<u8>) -> BoxFuture<'_, Result<()>> {
        let checked = meridian::store::check_names(namespace, key);
        let args = [
            JsValue::from_str(namespace),
            JsValue::from_str(key),
            js_sys::Uint8Array::from(value.as_slice()).into(),
        ];
        Box::pin(async move {
            checked?;
            self.call("put", &args).await.map(drop)
        })
    }

    fn delete(&self, namespace: &str, key: &str) -> BoxFuture<'_, Result<()>> {
        let checked = meridian::store::check_names(namespace, key);
        let args = [JsValue::from_str(namespace), JsValue::from_str(key)];
        Box::pin(async move {
            checked?;
            self.call("delete", &args).await.map(drop)
        })
    }

    fn list(&self, namespace: &str) -> BoxFuture<'_, Result<Records>> {
        let checked = meridian::store::check_namespace(namespace);
        let args = [JsValue::from_str(namespace)];
        Box::pin(async move {
            checked?;
            let listed = self.call("list", &args).await?;
            let entries = listed.dyn_into::<js_sys::Array>().map_err(|_| {
                Error::InvalidInput("the store's list must resolve to an array".into())
            })?;
            let mut records = Vec::with_capacity(entries.length() as usize);
            for entry in entries.iter() {
                let pair = js_sys::Array::from(&entry);
                let key = pair.get(0).as_string();
                let value = pair.get(1).dyn_into::<js_sys::Uint8Array>().ok();
                match (key, value) {
                    (Some(key), Some(value)) => records.push((key, value.to_vec())),
                    _ => {
                        return Err(Error::InvalidInput(
                            "the store's list must resolve to [key, Uint8Array] pairs".into(),
                        ));
                    }
                }
            }
            records.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(records)
        })
    }
}
