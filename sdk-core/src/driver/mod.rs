//! What the core needs from a platform: a clock, a spawner, timers, WebSockets and HTTP.
//!
//! Owns: the [`Driver`] trait, the one seam between the sans-IO core and real IO. Native
//! apps use [`native::TokioDriver`]; the web uses the browser driver in `meridian-wasm`;
//! tests may supply their own. Must never contain protocol or policy logic.

#[cfg(feature = "native")]
pub mod native;

use std::pin::Pin;
use std::time::Duration;

use futures::{Sink, Stream};

use crate::error::Result;
use crate::time::Instant;

/// A boxed future: `Send` natively, local on wasm32 (browser futures are not `Send`).
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture<'a, T> = futures::future::BoxFuture<'a, T>;
/// A boxed future: `Send` natively, local on wasm32 (browser futures are not `Send`).
#[cfg(target_arch = "wasm32")]
pub type BoxFuture<'a, T> = futures::future::LocalBoxFuture<'a, T>;

/// `Send` where threads exist, nothing on wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send + Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + Sync + ?Sized> MaybeSend for T {}
/// `Send` where threads exist, nothing on wasm32.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// Frames arriving on a WebSocket: text, or the reason it ended.
#[cfg(not(target_arch = "wasm32"))]
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<String>> + Send>>;
/// Frames leaving on a WebSocket.
#[cfg(not(target_arch = "wasm32"))]
pub type FrameSink = Pin<Box<dyn Sink<String, Error = crate::Error> + Send>>;
/// Frames arriving on a WebSocket: text, or the reason it ended.
#[cfg(target_arch = "wasm32")]
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<String>>>>;
/// Frames leaving on a WebSocket.
#[cfg(target_arch = "wasm32")]
pub type FrameSink = Pin<Box<dyn Sink<String, Error = crate::Error>>>;

/// An HTTP method the directory uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// GET
    Get,
    /// POST (empty body)
    Post,
}

/// An HTTP request to the directory.
#[derive(Clone)]
pub struct HttpRequest {
    /// Method.
    pub method: HttpMethod,
    /// Absolute URL.
    pub url: String,
    /// Bearer token, sent as `Authorization: Bearer ...` (never logged).
    pub bearer: Option<String>,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// The platform under the core.
pub trait Driver: MaybeSend + 'static {
    /// Now, on a monotonic clock.
    fn now(&self) -> Instant;
    /// Now, on the wall clock (ms since the Unix epoch): only to tell when a token expires.
    fn unix_time_ms(&self) -> u64;
    /// Runs a future in the background.
    fn spawn(&self, task: BoxFuture<'static, ()>);
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
    /// Opens a WebSocket. Fails with [`crate::Error::Transport`] when it can't.
    fn connect(&self, url: String) -> BoxFuture<'static, Result<(FrameSink, FrameStream)>>;
    /// Performs an HTTP request. Fails with [`crate::Error::DirectoryUnavailable`] when
    /// no answer came (any status, 500 included, is an answer).
    fn http(&self, request: HttpRequest) -> BoxFuture<'static, Result<HttpResponse>>;
}
