//! Meridian for the web.
//!
//! This crate will hold the wasm-bindgen facade over the one `Client` API of [`meridian`],
//! and the browser driver it runs on (the browser's `WebSocket` and `fetch`, futures and
//! timers through `wasm-bindgen-futures`). Built for `wasm32-unknown-unknown`, it becomes
//! the npm package assembled in `bindings/ts/`. It converts types and errors into
//! JavaScript's idiom and holds no logic of its own: the API is defined once, in the core.
//!
//! Nothing is exported yet. Meanwhile the crate is kept building both for the host and for
//! `wasm32-unknown-unknown` (`cargo xtask test` checks the latter).
