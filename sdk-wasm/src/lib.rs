//! Meridian for the web.
//!
//! The wasm-bindgen facade over the one [`meridian::Client`] API, and the browser driver it
//! runs on ([`driver::BrowserDriver`]: `WebSocket`, `fetch`, timers,
//! `online`/`offline` events) with an IndexedDB store ([`store::IndexedDbStore`]). Built for
//! `wasm32-unknown-unknown`, it becomes the npm package `@meridian/sdk` assembled in
//! `bindings/ts/`, whose TypeScript layer gives the API its types, its `Error` subclasses
//! and its event iterator.
//!
//! The facade converts and nothing more: values cross as JSON text (one `JSON.parse` in
//! TypeScript, no serializer in the bundle beyond the serde_json the core already has),
//! errors as `Error`s carrying the core's stable `code`. On the host this crate is empty.

#[cfg(target_arch = "wasm32")]
mod convert;
#[cfg(target_arch = "wasm32")]
pub mod driver;
#[cfg(target_arch = "wasm32")]
mod facade;
#[cfg(target_arch = "wasm32")]
pub mod store;
