//! The browser driver: the platform's `WebSocket`, `fetch`, timers and
//! clocks, for the core's [`Driver`] seam.
//!
//! Owns: turning driver calls into Web APIs that exist in browsers, workers and Node 20+
//! (Node's entry installs a `WebSocket` where the runtime lacks one). Must never hold
//! protocol state.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::{Sink, Stream};
use meridian::driver::{
    BoxFuture, Driver, FrameSink, FrameStream, HttpMethod, HttpRequest, HttpResponse,
};
use meridian::time::Instant;
use meridian::{Error, Result};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &js_sys::Function, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(handle: &JsValue);
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(url: &str, init: &js_sys::Object) -> js_sys::Promise;
}

/// The driver for browsers, workers and Node.
#[derive(Debug, Clone, Default)]
pub struct BrowserDriver;

impl BrowserDriver {
    /// A driver on the platform's Web APIs.
    pub fn new() -> Self {
        Self
    }
}

impl Driver for BrowserDriver {
    fn now(&self) -> Instant {
        // `performance.now()` is monotonic, in ms, with sub-ms precision we don't need.
        Instant::from_millis(performance_now().max(0.0) as u64)
    }

    fn unix_time_ms(&self) -> u64 {
        js_sys::Date::now().max(0.0) as u64
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        wasm_bindgen_futures::spawn_local(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(Sleep::new(duration))
    }

    fn connect(&self, url: String) -> BoxFuture<'static, Result<(FrameSink, FrameStream)>> {
        Box::pin(open_socket(url))
    }

    fn http(&self, request: HttpRequest) -> BoxFuture<'static, Result<HttpResponse>> {
        Box::pin(fetch(request))
    }
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// How long a directory request may take, as natively.
const HTTP_TIMEOUT_MS: u32 = 15_000;

/// One request through the platform's `fetch`.
///
/// Called directly rather than through reqwest's wasm client: reqwest brings `url`, `http`
/// and `idna` with ICU's normalization tables, about 60 KB of the gzipped bundle, for a
/// GET or POST with one header.
async fn fetch(request: HttpRequest) -> Result<HttpResponse> {
    let unavailable =
        |what: &str, e: &JsValue| Error::DirectoryUnavailable(format!("{what}: {}", js_text(e)));
    let init = js_sys::Object::new();
    let set = |key: &str, value: &JsValue| {
        js_sys::Reflect::set(&init, &JsValue::from_str(key), value).map(drop)
    };
    let method = match request.method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
    };
    let headers = js_sys::Object::new();
    if let Some(token) = &request.bearer {
        js_sys::Reflect::set(
            &headers,
            &JsValue::from_str("authorization"),
            &JsValue::from_str(&format!("Bearer {token}")),
        )
        .map_err(|e| unavailable("cannot build the request", &e))?;
    }
    set("method", &JsValue::from_str(method))
        .and_then(|()| set("headers", &headers))
        .and_then(|()| {
            set(
                "signal",
                &web_sys::AbortSignal::timeout_with_u32(HTTP_TIMEOUT_MS),
            )
        })
        .map_err(|e| unavailable("cannot build the request", &e))?;
    // The URL is not in the error texts: it is the app's configuration, not news.
    let response = JsFuture::from(global_fetch(&request.url, &init))
        .await
        .map_err(|e| unavailable("no answer", &e))?
        .dyn_into::<web_sys::Response>()
        .map_err(|e| unavailable("fetch answered something else", &e))?;
    let status = response.status();
    let buffer = response
        .array_buffer()
        .map_err(|e| unavailable("answer cut short", &e))?;
    let buffer = JsFuture::from(buffer)
        .await
        .map_err(|e| unavailable("answer cut short", &e))?;
    Ok(HttpResponse {
        status,
        body: js_sys::Uint8Array::new(&buffer).to_vec(),
    })
}

// ---------------------------------------------------------------------------------------
// Timers
// ---------------------------------------------------------------------------------------

/// The largest delay `setTimeout` honours (2^31 - 1 ms); longer ones fire at once.
const MAX_TIMEOUT_MS: u128 = i32::MAX as u128;

#[derive(Default)]
struct SleepState {
    fired: bool,
    waker: Option<Waker>,
}

/// A `setTimeout` as a future. Dropping it clears the timer, so that a stopped client leaves
/// nothing that keeps Node's event loop alive.
struct Sleep {
    state: Rc<RefCell<SleepState>>,
    handle: JsValue,
    _callback: Closure<dyn FnMut()>,
}

impl Sleep {
    fn new(duration: Duration) -> Self {
        let state = Rc::new(RefCell::new(SleepState::default()));
        let shared = state.clone();
        let callback = Closure::<dyn FnMut()>::new(move || {
            let waker = {
                let mut state = shared.borrow_mut();
                state.fired = true;
                state.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        });
        let ms = duration.as_millis().min(MAX_TIMEOUT_MS) as i32;
        let handle = set_timeout(callback.as_ref().unchecked_ref(), ms);
        Self {
            state,
            handle,
            _callback: callback,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state.borrow_mut();
        if state.fired {
            Poll::Ready(())
        } else {
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        clear_timeout(&self.handle);
    }
}

// ---------------------------------------------------------------------------------------
// WebSockets
// ---------------------------------------------------------------------------------------

/// Owns a socket and its handlers. Dropped when both halves (or a connect that never
/// finished) are gone: it detaches the handlers before the closures they call are freed,
/// and closes the socket.
struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut()>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

thread_local! {
    /// A handler that ignores its event, made once and kept for the life of the module.
    static IGNORE: JsValue = Closure::<dyn FnMut()>::new(|| {}).into_js_value();
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        // Not None: Node's `ws` raises an `error` nobody listens to (closing a socket
        // that is still connecting) as an uncaught exception.
        IGNORE.with(|ignore| self.ws.set_onerror(Some(ignore.unchecked_ref())));
        // Closing a socket that is already closing or closed is a no-op.
        let _ = self.ws.close();
    }
}

type OpenSignal = Rc<RefCell<Option<oneshot::Sender<Result<()>>>>>;

async fn open_socket(url: String) -> Result<(FrameSink, FrameStream)> {
    let ws = WebSocket::new(&url)
        .map_err(|e| Error::Transport(format!("cannot open the socket: {}", js_text(&e))))?;
    let (frames_tx, frames_rx) = mpsc::unbounded::<Result<String>>();
    let (open_tx, open_rx) = oneshot::channel::<Result<()>>();
    let open: OpenSignal = Rc::new(RefCell::new(Some(open_tx)));

    let on_open = {
        let open = open.clone();
        Closure::<dyn FnMut()>::new(move || {
            if let Some(tx) = open.borrow_mut().take() {
                let _ = tx.send(Ok(()));
            }
        })
    };
    let on_message = {
        let frames = frames_tx.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let frame = event.data().as_string().ok_or_else(|| {
                Error::Protocol("binary frames are not part of the protocol".into())
            });
            let _ = frames.unbounded_send(frame);
        })
    };
    let on_error = {
        let open = open.clone();
        let frames = frames_tx.clone();
        Closure::<dyn FnMut()>::new(move || {
            // The browser hides why (by design); the close event follows.
            let error = Error::Transport("the socket failed".into());
            match open.borrow_mut().take() {
                Some(tx) => {
                    let _ = tx.send(Err(error));
                }
                None => {
                    let _ = frames.unbounded_send(Err(error));
                }
            }
        })
    };
    let on_close = {
        let open = open.clone();
        Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            if let Some(tx) = open.borrow_mut().take() {
                let _ = tx.send(Err(Error::Transport(format!(
                    "the socket closed before it opened (code {})",
                    event.code()
                ))));
            }
            frames_tx.close_channel();
        })
    };
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let socket = Rc::new(Socket {
        ws,
        _on_open: on_open,
        _on_message: on_message,
        _on_error: on_error,
        _on_close: on_close,
    });

    // If this future is dropped here (a connect timeout), `socket` goes with it and closes.
    open_rx
        .await
        .map_err(|_| Error::Transport("the socket went away while opening".into()))??;
    let sink: FrameSink = Box::pin(SocketSink {
        socket: socket.clone(),
    });
    let stream: FrameStream = Box::pin(SocketStream {
        frames: frames_rx,
        _socket: socket,
    });
    Ok((sink, stream))
}

struct SocketSink {
    socket: Rc<Socket>,
}

impl SocketSink {
    fn check_open(&self) -> Result<()> {
        if self.socket.ws.ready_state() == WebSocket::OPEN {
            Ok(())
        } else {
            Err(Error::Transport("the socket is closed".into()))
        }
    }
}

impl Sink<String> for SocketSink {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(self.check_open())
    }

    fn start_send(self: Pin<&mut Self>, frame: String) -> Result<()> {
        self.check_open()?;
        self.socket
            .ws
            .send_with_str(&frame)
            .map_err(|e| Error::Transport(format!("cannot send: {}", js_text(&e))))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<()>> {
        // The browser buffers; there is nothing to wait for.
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<()>> {
        let _ = self.socket.ws.close();
        Poll::Ready(Ok(()))
    }
}

struct SocketStream {
    frames: mpsc::UnboundedReceiver<Result<String>>,
    _socket: Rc<Socket>,
}

impl Stream for SocketStream {
    type Item = Result<String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<String>>> {
        Pin::new(&mut self.frames).poll_next(cx)
    }
}

/// The text of a thrown JavaScript value, for error messages.
pub(crate) fn js_text(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value
        .as_string()
        .unwrap_or_else(|| "unknown JavaScript error".into())
}
