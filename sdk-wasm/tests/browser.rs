//! The web build's own pieces in a real browser: the IndexedDB store and the browser
//! driver. Run by `cargo xtask test` in headless Chromium (`webdriver.json` here keeps it
//! headless and off the network).

#![cfg(target_arch = "wasm32")]
#![allow(
    clippy::unwrap_used,
    reason = "tests: a failure should stop the test where it happened"
)]

use std::time::Duration;

use meridian::driver::{Driver, HttpMethod, HttpRequest};
use meridian::store::Store;
use meridian::{Error, ErrorCode};
use meridian_wasm::driver::BrowserDriver;
use meridian_wasm::store::{IndexedDbStore, JsStore};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// A database name no other test (or earlier run) uses.
fn fresh_name(what: &str) -> String {
    format!("meridian-test-{what}-{}", js_sys::Math::random().to_bits())
}

#[wasm_bindgen_test]
async fn indexeddb_keeps_records_per_namespace_in_key_order() {
    let store = IndexedDbStore::open(&fresh_name("order")).await.unwrap();
    store.put("outbox", "0002", b"two".to_vec()).await.unwrap();
    store.put("outbox", "0001", b"one".to_vec()).await.unwrap();
    store
        .put("outbox0", "x", b"next namespace".to_vec())
        .await
        .unwrap();
    store
        .put("cursors", "acme:general", b"{}".to_vec())
        .await
        .unwrap();
    // A namespace that sorts right after "outbox/" must not leak into its listing.
    assert_eq!(
        store.list("outbox").await.unwrap(),
        vec![
            ("0001".to_owned(), b"one".to_vec()),
            ("0002".to_owned(), b"two".to_vec())
        ]
    );
    store
        .put("outbox", "0001", b"one again".to_vec())
        .await
        .unwrap();
    store.delete("outbox", "0002").await.unwrap();
    store.delete("outbox", "never-there").await.unwrap();
    assert_eq!(
        store.list("outbox").await.unwrap(),
        vec![("0001".to_owned(), b"one again".to_vec())]
    );
    assert_eq!(store.list("cursors").await.unwrap().len(), 1);
    assert!(store.list("empty").await.unwrap().is_empty());
}

#[wasm_bindgen_test]
async fn indexeddb_records_survive_reopening_the_database() {
    let name = fresh_name("reopen");
    {
        let store = IndexedDbStore::open(&name).await.unwrap();
        store.put("keys", "x25519", vec![7; 32]).await.unwrap();
    }
    let again = IndexedDbStore::open(&name).await.unwrap();
    assert_eq!(
        again.list("keys").await.unwrap(),
        vec![("x25519".to_owned(), vec![7; 32])]
    );
}

#[wasm_bindgen_test]
async fn indexeddb_refuses_names_outside_the_store_rules() {
    let store = IndexedDbStore::open(&fresh_name("names")).await.unwrap();
    for (namespace, key) in [
        ("out/box", "k"),
        ("outbox", "a/b"),
        ("", "k"),
        ("outbox", ".."),
    ] {
        let error = store.put(namespace, key, vec![1]).await.unwrap_err();
        assert_eq!(
            error.code(),
            ErrorCode::InvalidInput,
            "{namespace:?} {key:?}"
        );
    }
    assert!(store.list("out/box").await.is_err());
}

#[wasm_bindgen_test]
fn an_app_store_without_its_methods_is_refused() {
    let error = JsStore::new(js_sys::Object::new().into()).unwrap_err();
    assert_eq!(error.code(), ErrorCode::InvalidInput);
    assert!(JsStore::new(JsValue::NULL).is_err());
}

#[wasm_bindgen_test]
async fn the_driver_sleeps_on_the_monotonic_clock() {
    let driver = BrowserDriver::new();
    let before = driver.now();
    driver.sleep(Duration::from_millis(30)).await;
    let slept = driver.now().saturating_since(before);
    assert!(slept >= Duration::from_millis(25), "{slept:?}");
    assert!(driver.unix_time_ms() > 1_700_000_000_000);
}

#[wasm_bindgen_test]
async fn a_socket_that_cannot_open_is_a_transport_error() {
    let driver = BrowserDriver::new();
    let Err(error) = driver.connect("ws://127.0.0.1:9/socket.io/".into()).await else {
        panic!("connected to the discard port");
    };
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    let Err(error) = driver.connect("not a url".into()).await else {
        panic!("connected to nothing");
    };
    assert_eq!(error.code(), ErrorCode::Transport);
}

#[wasm_bindgen_test]
async fn a_directory_that_does_not_answer_is_unavailable() {
    let driver = BrowserDriver::new();
    let error = driver
        .http(HttpRequest {
            method: HttpMethod::Get,
            url: "http://127.0.0.1:9/v1/federation".into(),
            bearer: Some("secret".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), ErrorCode::DirectoryUnavailable);
    assert!(!error.to_string().contains("secret"));
}
