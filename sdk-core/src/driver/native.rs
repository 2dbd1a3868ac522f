//! The native driver: tokio for tasks and timers, tokio-tungstenite for sockets, reqwest for HTTP.
//!
//! Owns: turning the [`Driver`] calls into tokio IO. Must never hold protocol state.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage, protocol::WebSocketConfig};

use super::{BoxFuture, Driver, FrameSink, FrameStream, HttpMethod, HttpRequest, HttpResponse};
use crate::error::{Error, Result};
use crate::time::Instant;

/// Largest inbound WebSocket frame accepted (bytes): a bound on what a peer can make us buffer.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// The native driver. Must be created inside a tokio runtime.
#[derive(Debug, Clone)]
pub struct TokioDriver {
    origin: tokio::time::Instant,
    http: reqwest::Client,
    handle: tokio::runtime::Handle,
}

impl TokioDriver {
    /// A driver on the current tokio runtime.
    pub fn new() -> Result<Self> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::InvalidInput("the native driver needs a tokio runtime".into()))?;
        let builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(10));
        // The same roots as the sockets (tokio-tungstenite's webpki roots): Mozilla's, built
        // in. The platform verifier would need a system store (absent in minimal containers)
        // and, on Android, an initialisation through JNI before the first request.
        #[cfg(feature = "tls")]
        let builder = builder.tls_certs_only(
            webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .filter_map(|der| reqwest::Certificate::from_der(der).ok()),
        );
        let http = builder
            .build()
            .map_err(|e| Error::Transport(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            origin: tokio::time::Instant::now(),
            http,
            handle,
        })
    }
}

impl Driver for TokioDriver {
    fn now(&self) -> Instant {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        Instant::from_millis(ms)
    }

    fn unix_time_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.handle.spawn(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }

    fn connect(&self, url: String) -> BoxFuture<'static, Result<(FrameSink, FrameStream)>> {
        Box::pin(async move {
            let config = WebSocketConfig::default()
                .max_message_size(Some(MAX_FRAME_BYTES))
                .max_frame_size(Some(MAX_FRAME_BYTES));
            let (ws, _) =
                tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true)
                    .await
                    .map_err(|e| Error::Transport(format!("cannot open the socket: {e}")))?;
            let (sink, stream) = ws.split();
            let sink: FrameSink = Box::pin(
                sink.sink_map_err(|e| Error::Transport(e.to_string()))
                    .with(|frame: String| async move { Ok::<_, Error>(WsMessage::text(frame)) }),
            );
            let stream: FrameStream = Box::pin(stream.filter_map(|item| async move {
                match item {
                    Ok(WsMessage::Text(text)) => Some(Ok(text.as_str().to_owned())),
                    Ok(WsMessage::Binary(_)) => Some(Err(Error::Protocol(
                        "binary frames are not part of the protocol".into(),
                    ))),
                    Ok(WsMessage::Close(_)) => None,
                    Ok(_) => None, // ping/pong frames of the WebSocket layer itself
                    Err(tungstenite::Error::ConnectionClosed) => None,
                    Err(e) => Some(Err(Error::Transport(e.to_string()))),
                }
            }));
            Ok((sink, stream))
        })
    }

    fn http(&self, request: HttpRequest) -> BoxFuture<'static, Result<HttpResponse>> {
        let client = self.http.clone();
        Box::pin(async move {
            let mut builder = match request.method {
                HttpMethod::Get => client.get(&request.url),
                HttpMethod::Post => client.post(&request.url),
            };
            if let Some(token) = &request.bearer {
                builder = builder.bearer_auth(token);
            }
            let response = builder.send().await.map_err(|e| {
                Error::DirectoryUnavailable(format!("no answer: {}", e.without_url()))
            })?;
            let status = response.status().as_u16();
            let body = response
                .bytes()
                .await
                .map_err(|e| {
                    Error::DirectoryUnavailable(format!("answer cut short: {}", e.without_url()))
                })?
                .to_vec();
            Ok(HttpResponse { status, body })
        })
    }
}
