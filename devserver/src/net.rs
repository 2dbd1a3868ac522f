//! Listeners and the servers behind them.
//!
//! Owns: binding 127.0.0.1 ports (rebinding the same port after a stop), remembering every
//! accepted TCP connection, and stopping a server for real: stop accepting, cut every open
//! connection (upgraded WebSockets included, which a graceful HTTP shutdown never sees) and
//! free the port. Must never bind anything but loopback.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::DevserverError;
use crate::state::lock;

/// How long a stop waits for a server to wind down before aborting it.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a bind retries a port that is still held (e.g. by a listener being dropped).
const BIND_RETRY_FOR: Duration = Duration::from_secs(3);

/// Binds `127.0.0.1:port` (0: any free port), retrying briefly while the port is in use.
pub(crate) async fn bind(what: &str, port: u16) -> Result<TcpListener, DevserverError> {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    let deadline = tokio::time::Instant::now() + BIND_RETRY_FOR;
    loop {
        match try_bind(addr) {
            Ok(l) => return Ok(l),
            Err(e)
                if port != 0
                    && e.kind() == io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(source) => {
                return Err(DevserverError::Bind {
                    what: what.into(),
                    addr: addr.to_string(),
                    source,
                });
            }
        }
    }
}

fn try_bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // On Unix, SO_REUSEADDR lets a restarted region take its port back while old
    // connections linger in TIME_WAIT. (On Windows it would mean something else.)
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Every connection a server has accepted and not yet dropped.
#[derive(Default)]
pub(crate) struct Connections {
    next: AtomicU64,
    open: Mutex<HashMap<u64, std::net::TcpStream>>,
}

impl Connections {
    /// Shuts down every open connection in both directions: peers see the close at once,
    /// and the tasks serving them see end-of-stream and wind down.
    pub fn cut_all(&self) -> usize {
        let open = std::mem::take(&mut *lock(&self.open));
        for stream in open.values() {
            // The connection may be gone already; nothing else to do about it.
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        open.len()
    }

    fn track(self: &Arc<Self>, stream: TcpStream) -> io::Result<TrackedStream> {
        // A duplicate of the socket handle, kept only to shut the connection down.
        let std = stream.into_std()?;
        let handle = std.try_clone()?;
        let stream = TcpStream::from_std(std)?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.open).insert(id, handle);
        Ok(TrackedStream {
            inner: stream,
            id,
            conns: self.clone(),
        })
    }
}

/// A listener that tracks what it accepts in [`Connections`].
pub(crate) struct TrackedListener {
    inner: TcpListener,
    conns: Arc<Connections>,
}

impl axum::serve::Listener for TrackedListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    match self.conns.track(stream) {
                        Ok(tracked) => return (tracked, addr),
                        Err(e) => tracing::warn!(error = %e, "dropping a connection"),
                    }
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection; forgets itself in [`Connections`] when dropped.
pub(crate) struct TrackedStream {
    inner: TcpStream,
    id: u64,
    conns: Arc<Connections>,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        lock(&self.conns.open).remove(&self.id);
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A running HTTP server (the directory, or one region).
pub(crate) struct Server {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    conns: Arc<Connections>,
}

impl Server {
    /// Serves `router` on `listener` until [`Server::stop`].
    pub fn spawn(what: String, listener: TcpListener, router: axum::Router) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let conns = Arc::new(Connections::default());
        let listener = TrackedListener {
            inner: listener,
            conns: conns.clone(),
        };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(server = %what, error = %e, "server ended with an error");
            }
        });
        Ok(Self {
            addr,
            shutdown: Some(tx),
            task: Some(task),
            conns,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, cuts every open connection and waits for the port to be free.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let cut = self.conns.cut_all();
        tracing::debug!(addr = %self.addr, cut, "connections cut");
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(STOP_GRACE, &mut task).await.is_err()
        {
            task.abort();
            let _ = task.await;
        }
        // Anything accepted while shutting down.
        self.conns.cut_all();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.conns.cut_all();
    }
}
