//! A fault-injecting TCP proxy on loopback, to put between clients and a region.
//!
//! Owns: accepting on `127.0.0.1:0`, forwarding every connection to one target, and the
//! faults a test turns on and off at runtime:
//!
//! - [`FaultProxy::cut`]: every open connection is reset on both sides at once (RST, not a
//!   polite FIN), the way a NAT box or a dying load balancer drops flows.
//! - [`FaultProxy::stall`]: nothing is forwarded in either direction, but every socket stays
//!   open (connections made meanwhile too): a half-open link that only heartbeats and
//!   ack timeouts can notice. The proxy stops reading (at most the chunk it was reading
//!   is held), so TCP windows close and senders feel back-pressure, as with a peer that
//!   vanished; when the link heals everything flows again in order, end-of-stream
//!   included, like a link that came back after TCP retransmits.
//! - [`FaultProxy::slow`]: latency added to every chunk (pipelined: a chunk leaves `latency`
//!   after it arrived) and an optional bandwidth cap per connection and direction (applied
//!   when reading, in pieces of 1/20 s worth, so the sender feels the back-pressure and a
//!   large write trickles through).
//! - [`FaultProxy::refuse`]: new connections are reset as soon as they are accepted; open
//!   ones carry on.
//! - [`FaultProxy::heal`]: all of the above off (a cut is instantaneous: nothing to heal).
//!
//! It counts connections and bytes ([`ProxyStats`]) and lets a test wait for a condition on
//! them ([`FaultProxy::wait_for`]) instead of sleeping. [`ProxyOptions::socket_buffer`]
//! shrinks the kernel buffers of its sockets, so that back-pressure reaches the peers after
//! kilobytes rather than megabytes. Must never bind or connect anything
//! but loopback, and must leave no task behind once dropped.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

/// The faults in force. [`Faults::default`] is a healthy link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Nothing is forwarded; sockets stay open; data is held until healed.
    pub stalled: bool,
    /// New connections are reset at once.
    pub refusing: bool,
    /// Added to every chunk, each way.
    pub latency: Duration,
    /// Bytes per second, per connection and direction; `None`: unlimited.
    pub bandwidth: Option<u64>,
}

/// How a proxy is built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyOptions {
    /// `SO_RCVBUF` and `SO_SNDBUF` of every socket the proxy opens or accepts (the kernel
    /// may round it); `None`: the system's defaults (megabytes on loopback).
    pub socket_buffer: Option<u32>,
}

/// What the proxy has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted and forwarded.
    pub accepted: u64,
    /// Connections reset at accept because the proxy was refusing.
    pub refused: u64,
    /// Connections reset by [`FaultProxy::cut`].
    pub cut: u64,
    /// Connections whose target could not be reached (reset at once).
    pub unreachable: u64,
    /// Connections open now.
    pub open: u64,
    /// Bytes delivered from clients to the target.
    pub bytes_up: u64,
    /// Bytes delivered from the target to clients.
    pub bytes_down: u64,
    /// Bytes read from clients and not delivered yet (stalled or delayed).
    pub held_up: u64,
    /// Bytes read from the target and not delivered yet.
    pub held_down: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    cut: AtomicU64,
    unreachable: AtomicU64,
    open: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    held_up: AtomicU64,
    held_down: AtomicU64,
}

struct Shared {
    target: SocketAddr,
    options: ProxyOptions,
    faults: watch::Sender<Faults>,
    /// Bumped by every cut; each connection ends when it changes.
    cuts: watch::Sender<u64>,
    counters: Counters,
    /// Woken at every change of the counters.
    changed: Notify,
    /// Running connection tasks, aborted when the proxy is dropped.
    tasks: Mutex<HashMap<u64, AbortHandle>>,
    next_task: AtomicU64,
}

impl Shared {
    fn bump(&self, counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn drop_by(&self, counter: &AtomicU64, by: u64) {
        counter.fetch_sub(by, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        ProxyStats {
            accepted: get(&c.accepted),
            refused: get(&c.refused),
            cut: get(&c.cut),
            unreachable: get(&c.unreachable),
            open: get(&c.open),
            bytes_up: get(&c.bytes_up),
            bytes_down: get(&c.bytes_down),
            held_up: get(&c.held_up),
            held_down: get(&c.held_down),
        }
    }

    fn faults(&self) -> Faults {
        *self.faults.borrow()
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<u64, AbortHandle>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fault-injecting TCP proxy on loopback. Dropping it resets every connection it
/// carries and stops listening.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("target", &self.shared.target)
            .field("faults", &self.faults())
            .field("stats", &self.stats())
            .finish()
    }
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `target`, which must be
    /// a loopback address. Must be called inside a tokio runtime.
    pub async fn start(target: SocketAddr) -> io::Result<FaultProxy> {
        Self::start_with(target, ProxyOptions::default()).await
    }

    /// [`Self::start`] with options.
    pub async fn start_with(target: SocketAddr, options: ProxyOptions) -> io::Result<FaultProxy> {
        if !target.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the fault proxy only forwards to loopback, not {target}"),
            ));
        }
        let socket = TcpSocket::new_v4()?;
        if let Some(size) = options.socket_buffer {
            // Accepted sockets inherit these.
            socket.set_recv_buffer_size(size)?;
            socket.set_send_buffer_size(size)?;
        }
        socket.bind((Ipv4Addr::LOCALHOST, 0).into())?;
        let listener = socket.listen(1024)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            options,
            faults: watch::Sender::new(Faults::default()),
            cuts: watch::Sender::new(0),
            counters: Counters::default(),
            changed: Notify::new(),
            tasks: Mutex::new(HashMap::new()),
            next_task: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(FaultProxy {
            addr,
            shared,
            accept,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT`: what a federation document advertises for the proxied region.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Where connections are forwarded.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Resets every open connection on both sides; returns how many were open.
    pub fn cut(&self) -> u64 {
        let open = self.shared.counters.open.load(Ordering::SeqCst);
        self.shared.cuts.send_modify(|generation| *generation += 1);
        open
    }

    /// Stops forwarding in both directions, keeping every socket open.
    pub fn stall(&self) {
        self.shared.faults.send_modify(|f| f.stalled = true);
    }

    /// Adds `latency` to every chunk and caps each connection's bandwidth per direction
    /// (`None`: no cap).
    pub fn slow(&self, latency: Duration, bandwidth: Option<u64>) {
        self.shared.faults.send_modify(|f| {
            f.latency = latency;
            f.bandwidth = bandwidth;
        });
    }

    /// Resets new connections as soon as they are accepted (open ones carry on).
    pub fn refuse(&self) {
        self.shared.faults.send_modify(|f| f.refusing = true);
    }

    /// Turns every fault off: held data flows again, new connections are accepted.
    pub fn heal(&self) {
        self.shared.faults.send_replace(Faults::default());
    }

    /// Sets the faults in force all at once.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.faults.send_replace(faults);
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// The counters now.
    pub fn stats(&self) -> ProxyStats {
        self.shared.stats()
    }

    /// Waits until `condition` holds of the counters, for at most `timeout`. Gives the
    /// counters it ended with either way.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        condition: impl Fn(&ProxyStats) -> bool,
    ) -> Result<ProxyStats, ProxyStats> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let stats = self.stats();
            if condition(&stats) {
                return Ok(stats);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let stats = self.stats();
                return if condition(&stats) {
                    Ok(stats)
                } else {
                    Err(stats)
                };
            }
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.cuts.send_modify(|generation| *generation += 1);
        for (_, task) in self.shared.tasks().drain() {
            task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(_) => {
                // Out of descriptors and the like: back off rather than spin.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if shared.faults().refusing {
            reset(client);
            shared.bump(&shared.counters.refused, 1);
            continue;
        }
        // Subscribed now, so that a cut made while the target is being dialled counts.
        let cuts = shared.cuts.subscribe();
        let id = shared.next_task.fetch_add(1, Ordering::SeqCst);
        let task = tokio::spawn(serve(shared.clone(), client, cuts, id));
        let mut tasks = shared.tasks();
        tasks.retain(|_, t| !t.is_finished());
        tasks.insert(id, task.abort_handle());
    }
}

async fn dial(target: SocketAddr, options: ProxyOptions) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = options.socket_buffer {
        socket.set_recv_buffer_size(size)?;
        socket.set_send_buffer_size(size)?;
    }
    socket.connect(target).await
}

/// Closes with a reset (SO_LINGER 0), not a FIN.
fn reset(stream: TcpStream) {
    // Only fails on a socket that is already gone.
    let _ = stream.set_zero_linger();
    drop(stream);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Both directions reached end-of-stream and were delivered.
    Closed,
    /// A read or write failed (the peer reset): the other side is reset too.
    Failed,
    /// [`FaultProxy::cut`].
    Cut,
}

async fn serve(
    shared: Arc<Shared>,
    mut client: TcpStream,
    mut cuts: watch::Receiver<u64>,
    id: u64,
) {
    let mut upstream = match dial(shared.target, shared.options).await {
        Ok(upstream) => upstream,
        Err(_) => {
            reset(client);
            shared.bump(&shared.counters.unreachable, 1);
            shared.tasks().remove(&id);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    shared.bump(&shared.counters.accepted, 1);
    shared.bump(&shared.counters.open, 1);
    // Bytes read but not delivered, per direction: given back to the counters at the end.
    let held = [AtomicU64::new(0), AtomicU64::new(0)];
    let ended = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let both = async {
            tokio::try_join!(
                pump(
                    &shared,
                    Direction::Up,
                    client_read,
                    upstream_write,
                    &held[0]
                ),
                pump(
                    &shared,
                    Direction::Down,
                    upstream_read,
                    client_write,
                    &held[1]
                ),
            )
        };
        tokio::select! {
            result = both => if result.is_ok() { Ended::Closed } else { Ended::Failed },
            _ = cuts.changed() => Ended::Cut,
        }
    };
    if ended != Ended::Closed {
        reset(client);
        reset(upstream);
    }
    if ended == Ended::Cut {
        shared.bump(&shared.counters.cut, 1);
    }
    shared.drop_by(&shared.counters.held_up, held[0].load(Ordering::SeqCst));
    shared.drop_by(&shared.counters.held_down, held[1].load(Ordering::SeqCst));
    shared.drop_by(&shared.counters.open, 1);
    shared.tasks().remove(&id);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to target.
    Up,
    /// Target to client.
    Down,
}

/// One direction of one connection: a reader that timestamps chunks, a writer that
/// delivers each when its latency has passed and the link is not stalled.
async fn pump(
    shared: &Shared,
    direction: Direction,
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    held: &AtomicU64,
) -> io::Result<()> {
    let (held_total, delivered_total) = match direction {
        Direction::Up => (&shared.counters.held_up, &shared.counters.bytes_up),
        Direction::Down => (&shared.counters.held_down, &shared.counters.bytes_down),
    };
    // `None` is end-of-stream, delivered in its turn like data.
    let (chunks, mut queue) = mpsc::unbounded_channel::<(Option<Vec<u8>>, Instant)>();
    let reading = async move {
        let mut faults = shared.faults.subscribe();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // A stalled link reads nothing more: the peer's writes back up in the kernel.
            // (Only fails when the proxy is gone, and then this task is aborted too.)
            let _ = faults.wait_for(|f| !f.stalled).await;
            let n = from.read(&mut buf).await?;
            let now = shared.faults();
            if n == 0 {
                let _ = chunks.send((None, Instant::now() + now.latency));
                return Ok::<(), io::Error>(());
            }
            held.fetch_add(n as u64, Ordering::SeqCst);
            shared.bump(held_total, n as u64);
            match now.bandwidth.filter(|r| *r > 0) {
                None => {
                    let _ = chunks.send((Some(buf[..n].to_vec()), Instant::now() + now.latency));
                }
                // Under a cap, pieces of 1/20 s worth, each paid for before the next: a
                // large write trickles through, and reading stops meanwhile (back-pressure).
                Some(rate) => {
                    let piece = usize::try_from(rate / 20).unwrap_or(usize::MAX).max(1);
                    for part in buf[..n].chunks(piece) {
                        let due = Instant::now() + shared.faults().latency;
                        let _ = chunks.send((Some(part.to_vec()), due));
                        let pause = Duration::from_secs_f64(part.len() as f64 / rate as f64);
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        }
    };
    let writing = async move {
        let mut faults = shared.faults.subscribe();
        while let Some((chunk, due)) = queue.recv().await {
            tokio::time::sleep_until(due).await;
            // Only fails when the proxy is gone, and then this task is aborted too.
            let _ = faults.wait_for(|f| !f.stalled).await;
            match chunk {
                Some(bytes) => {
                    to.write_all(&bytes).await?;
                    let n = bytes.len() as u64;
                    held.fetch_sub(n, Ordering::SeqCst);
                    shared.drop_by(held_total, n);
                    shared.bump(delivered_total, n);
                }
                None => {
                    to.shutdown().await?;
                    return Ok(());
                }
            }
        }
        Ok::<(), io::Error>(())
    };
    tokio::try_join!(reading, writing).map(|_| ())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An echo server on loopback; reports each connection it saw end.
    async fn echo() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ended, ends) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let ended = ended.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = ended.send(());
                });
            }
        });
        (addr, ends)
    }

    /// Waits for `n` connections to end at the echo server.
    async fn target_saw_end(closed: &mut mpsc::UnboundedReceiver<()>, n: usize) {
        for _ in 0..n {
            tokio::time::timeout(SOON, closed.recv())
                .await
                .expect("the target side was closed")
                .unwrap();
        }
    }

    async fn read_exactly(s: &mut TcpStream, n: usize, within: Duration) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        tokio::time::timeout(within, s.read_exact(&mut buf))
            .await
            .expect("the bytes arrive in time")
            .unwrap();
        buf
    }

    /// Whether the socket ends (EOF or reset) within `within`.
    async fn ends(s: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(within, s.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    const SOON: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn a_healthy_proxy_forwards_both_ways_and_counts() {
        let (target, _) = echo().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"hello").await.unwrap();
        assert_eq!(read_exactly(&mut s, 5, SOON).await, b"hello");
        let stats = proxy.wait_for(SOON, |s| s.bytes_down == 5).await.unwrap();
        assert_eq!(
            (stats.accepted, stats.open, stats.bytes_up),
            (1, 1, 5),
            "{stats:?}"
        );
        drop(s);
        proxy.wait_for(SOON, |s| s.open == 0).await.unwrap();
    }

    #[tokio::test]
    async fn a_cut_resets_both_sides_and_later_connections_work() {
        let (target, mut closed) = echo().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
        for s in [&mut a, &mut b] {
            s.write_all(b"x").await.unwrap();
            read_exactly(s, 1, SOON).await;
        }
        assert_eq!(proxy.cut(), 2);
        assert!(ends(&mut a, SOON).await, "the client side was closed");
        assert!(ends(&mut b, SOON).await, "the client side was closed");
        let stats = proxy
            .wait_for(SOON, |s| s.cut == 2 && s.open == 0)
            .await
            .unwrap();
        assert_eq!(stats.cut, 2);
        // The target side saw its connections end too.
        target_saw_end(&mut closed, 2).await;
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(b"again").await.unwrap();
        assert_eq!(read_exactly(&mut c, 5, SOON).await, b"again");
    }

    #[tokio::test]
    async fn a_stall_holds_everything_without_closing_and_a_heal_delivers_it_in_order() {
        let (target, _) = echo().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"a").await.unwrap();
        read_exactly(&mut s, 1, SOON).await;
        proxy.stall();
        s.write_all(b"bc").await.unwrap();
        // The chunk being read when the stall began is held; the rest waits in the kernel.
        proxy.wait_for(SOON, |s| s.held_up >= 2).await.unwrap();
        s.write_all(b"de").await.unwrap();
        let mut buf = [0u8; 8];
        let quiet = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
        assert!(quiet.is_err(), "nothing may come back while stalled");
        // A connection made during the stall is accepted but stalled too.
        let mut late = TcpStream::connect(proxy.addr()).await.unwrap();
        late.write_all(b"z").await.unwrap();
        proxy.wait_for(SOON, |s| s.open == 2).await.unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(200), late.read(&mut buf)).await;
        assert!(quiet.is_err(), "nothing may come back while stalled");
        proxy.heal();
        assert_eq!(read_exactly(&mut s, 4, SOON).await, b"bcde");
        assert_eq!(read_exactly(&mut late, 1, SOON).await, b"z");
        let stats = proxy
            .wait_for(SOON, |s| s.held_up == 0 && s.held_down == 0)
            .await
            .unwrap();
        assert_eq!(stats.bytes_up, 6);
    }

    #[tokio::test]
    async fn a_stall_pushes_back_on_the_sender_once_the_small_buffers_are_full() {
        let (target, _) = echo().await;
        let options = ProxyOptions {
            socket_buffer: Some(4096),
        };
        let proxy = FaultProxy::start_with(target, options).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"x").await.unwrap();
        read_exactly(&mut s, 1, SOON).await;
        proxy.stall();
        let payload = vec![1u8; 4 * 1024 * 1024];
        let (mut r, mut w) = s.split();
        let blocked = tokio::time::timeout(Duration::from_millis(500), w.write_all(&payload)).await;
        assert!(
            blocked.is_err(),
            "4 MiB can't all be written into a stalled link"
        );
        proxy.heal();
        // Once healed, the rest goes through (echoed back, read as it comes).
        let mut back = vec![0u8; payload.len()];
        let (written, echoed) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(10), w.write_all(&payload)),
            tokio::time::timeout(Duration::from_secs(10), r.read_exact(&mut back)),
        );
        written.expect("the writer went on").unwrap();
        echoed.expect("the echo came back").unwrap();
    }

    #[tokio::test]
    async fn an_end_of_stream_sent_during_a_stall_is_delivered_after_the_data() {
        let (target, mut closed) = echo().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"x").await.unwrap();
        read_exactly(&mut s, 1, SOON).await;
        proxy.stall();
        s.write_all(b"last words").await.unwrap();
        s.shutdown().await.unwrap();
        proxy.wait_for(SOON, |s| s.held_up == 10).await.unwrap();
        let early = tokio::time::timeout(Duration::from_millis(100), closed.recv()).await;
        assert!(early.is_err(), "the target still sees it open");
        proxy.heal();
        // The echo answers what it got, then sees the end and closes: half-close works.
        assert_eq!(read_exactly(&mut s, 10, SOON).await, b"last words");
        assert!(ends(&mut s, SOON).await);
        target_saw_end(&mut closed, 1).await;
        proxy.wait_for(SOON, |s| s.open == 0).await.unwrap();
    }

    #[tokio::test]
    async fn slow_adds_latency_per_chunk_and_caps_bandwidth() {
        let (target, _) = echo().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.slow(Duration::from_millis(150), None);
        let t = std::time::Instant::now();
        s.write_all(b"ping").await.unwrap();
        read_exactly(&mut s, 4, SOON).await;
        let rtt = t.elapsed();
        assert!(
            rtt >= Duration::from_millis(300),
            "both directions delayed: {rtt:?}"
        );
        // 40 KiB at 100 KiB/s, paid 5 KiB at a time before the next piece leaves: at least
        // (40 - 5) KiB / 100 KiB/s = 0.35 s. Bounded below, not above.
        proxy.slow(Duration::ZERO, Some(100 * 1024));
        let payload = vec![7u8; 40 * 1024];
        let t = std::time::Instant::now();
        let (mut r, mut w) = s.split();
        let (_, echoed) = tokio::join!(w.write_all(&payload), async {
            let mut buf = vec![0u8; payload.len()];
            tokio::time::timeout(Duration::from_secs(5), r.read_exact(&mut buf))
                .await
                .expect("the capped transfer ends")
                .unwrap();
            buf
        });
        assert_eq!(echoed, payload);
        assert!(
            t.elapsed() >= Duration::from_millis(340),
            "the cap held: {:?}",
            t.elapsed()
        );
        proxy.heal();
        assert_eq!(proxy.faults(), Faults::default());
    }

    #[tokio::test]
    async fn refusing_resets_new_connections_and_spares_open_ones() {
        let (target, _) = echo().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        open.write_all(b"1").await.unwrap();
        read_exactly(&mut open, 1, SOON).await;
        proxy.refuse();
        let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(ends(&mut refused, SOON).await, "a new connection is reset");
        assert_eq!(proxy.stats().refused, 1);
        open.write_all(b"2").await.unwrap();
        assert_eq!(read_exactly(&mut open, 1, SOON).await, b"2");
        proxy.heal();
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        again.write_all(b"3").await.unwrap();
        assert_eq!(read_exactly(&mut again, 1, SOON).await, b"3");
    }

    #[tokio::test]
    async fn an_unreachable_target_resets_the_client() {
        // A port nobody listens on: bind, note it, close.
        let gone = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let target = gone.local_addr().unwrap();
        drop(gone);
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(ends(&mut s, SOON).await);
        proxy.wait_for(SOON, |s| s.unreachable == 1).await.unwrap();
    }

    #[tokio::test]
    async fn only_loopback_targets_are_accepted() {
        let err = FaultProxy::start("192.0.2.1:80".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_what_it_carried() {
        let (target, _) = echo().await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"x").await.unwrap();
        read_exactly(&mut s, 1, SOON).await;
        let addr = proxy.addr();
        drop(proxy);
        assert!(ends(&mut s, SOON).await);
        // Nothing listens there any more (connect fails, or is reset at once).
        if let Ok(mut again) = TcpStream::connect(addr).await {
            assert!(ends(&mut again, SOON).await);
        }
    }
}
