//! A raw Engine.IO / Socket.IO client over tokio-tungstenite, speaking the wire through
//! `meridian::codec`, and helpers to start a federation.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use devserver::{Federation, FederationConfig};
use futures::{SinkExt, StreamExt};
use meridian::codec::{EioPacket, SioPacket, SioPacketKind};
use meridian::envelope::{self, Binding, KeyPair, SealedPayload, SealingKey};
use meridian::model::{RegionId, SpaceId};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub const TIMEOUT: Duration = Duration::from_secs(5);

pub fn region(id: &str) -> RegionId {
    RegionId::new(id).unwrap()
}

pub fn token(user: &str) -> String {
    format!("{user}-token")
}

pub async fn federation() -> Federation {
    Federation::start(FederationConfig::default_three_regions())
        .await
        .unwrap()
}

/// A fresh, empty directory under cargo's per-target temp dir (removed by the caller when
/// the test passes; left behind for inspection when it fails).
pub fn scratch_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "devserver-{name}-{}-{n}-{nanos}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Forwards every TCP connection it accepts to `target`; counts them.
pub struct TcpProxy {
    pub addr: std::net::SocketAddr,
    pub accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: std::net::SocketAddr) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        TcpProxy {
            addr,
            accepted,
            task,
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the reader task hands over.
#[derive(Debug)]
enum Incoming {
    Packet(SioPacket),
    Closed,
}

/// A connected Socket.IO client on the main namespace.
pub struct RawClient {
    out: mpsc::UnboundedSender<String>,
    inbox: mpsc::UnboundedReceiver<Incoming>,
    pending: VecDeque<SioPacket>,
    next_ack: u64,
    closed: bool,
}

/// Opens the WebSocket and sends CONNECT; `Err` carries the connect_error message.
pub async fn connect(socket_url: &str, token: &str) -> Result<RawClient, String> {
    connect_with_auth(socket_url, Some(json!({"token": token, "protocol": 1}))).await
}

/// Connects with the client's sealing key in the auth payload (what a region seals
/// data-sovereignty deliveries to).
pub async fn connect_with_key(
    socket_url: &str,
    token: &str,
    key: &KeyPair,
) -> Result<RawClient, String> {
    connect_with_auth(
        socket_url,
        Some(json!({"token": token, "protocol": 1, "public_key": key.public().to_base64()})),
    )
    .await
}

/// `text` sealed to `to`, bound to (space, message, region), as JSON for a request.
pub fn seal_text(to: &SealingKey, space: &str, message: &str, region: &str, text: &str) -> Value {
    let space = SpaceId::new(space).unwrap();
    let region = RegionId::new(region).unwrap();
    let binding = Binding {
        space: &space,
        message,
        region: &region,
    };
    serde_json::to_value(envelope::seal(to, &binding, text.as_bytes()).unwrap()).unwrap()
}

/// Opens a sealed payload (JSON) with `key`, bound to (space, message, region).
pub fn open_text(
    key: &KeyPair,
    space: &str,
    message: &str,
    region: &str,
    sealed: &Value,
) -> meridian::Result<String> {
    let space = SpaceId::new(space).unwrap();
    let region = RegionId::new(region).unwrap();
    let sealed: SealedPayload = serde_json::from_value(sealed.clone()).unwrap();
    let binding = Binding {
        space: &space,
        message,
        region: &region,
    };
    envelope::open(key, &binding, &sealed).map(|bytes| String::from_utf8(bytes).unwrap())
}

pub async fn connect_with_auth(socket_url: &str, auth: Option<Value>) -> Result<RawClient, String> {
    let url = format!("{socket_url}/socket.io/?EIO=4&transport=websocket");
    let (ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| "timed out opening the websocket".to_string())?
        .map_err(|e| format!("transport: {e}"))?;
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let (in_tx, inbox) = mpsc::unbounded_channel::<Incoming>();
    tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if sink.send(WsMessage::text(frame)).await.is_err() {
                break;
            }
        }
    });
    let pong = out_tx.clone();
    tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            let Ok(WsMessage::Text(text)) = msg else {
                if matches!(msg, Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) {
                    continue;
                }
                break;
            };
            match EioPacket::decode(text.as_str()) {
                Ok(EioPacket::Ping(p)) => {
                    let _ = pong.send(EioPacket::Pong(p).encode());
                }
                Ok(EioPacket::Message(m)) => match SioPacket::decode(&m) {
                    Ok(p) => {
                        let _ = in_tx.send(Incoming::Packet(p));
                    }
                    Err(e) => panic!("the region sent a malformed socket.io packet {m:?}: {e}"),
                },
                Ok(EioPacket::Close) => break,
                Ok(_) => {}
                Err(e) => panic!("the region sent a malformed engine.io frame: {e}"),
            }
        }
        let _ = in_tx.send(Incoming::Closed);
    });
    let mut client = RawClient {
        out: out_tx,
        inbox,
        pending: VecDeque::new(),
        next_ack: 0,
        closed: false,
    };
    client.send_sio(SioPacket::main(SioPacketKind::Connect(auth)));
    match client.recv().await {
        Some(SioPacket {
            kind: SioPacketKind::Connect(_),
            ..
        }) => Ok(client),
        Some(SioPacket {
            kind: SioPacketKind::ConnectError(v),
            ..
        }) => Err(v["message"].as_str().unwrap_or_default().to_string()),
        Some(other) => panic!("unexpected packet before CONNECT: {other:?}"),
        None => Err("closed before CONNECT".into()),
    }
}

impl RawClient {
    fn send_sio(&self, p: SioPacket) {
        let _ = self.out.send(EioPacket::Message(p.encode()).encode());
    }

    /// Sends a raw engine.io frame.
    pub fn send_frame(&self, frame: &str) {
        let _ = self.out.send(frame.to_string());
    }

    async fn recv(&mut self) -> Option<SioPacket> {
        if self.closed {
            return None;
        }
        match tokio::time::timeout(TIMEOUT, self.inbox.recv()).await {
            Ok(Some(Incoming::Packet(p))) => Some(p),
            Ok(Some(Incoming::Closed) | None) => {
                self.closed = true;
                None
            }
            Err(_) => panic!("nothing received within {TIMEOUT:?}"),
        }
    }

    /// Emits an event without asking for an ack.
    pub fn emit(&self, name: &str, payload: Value) {
        self.send_sio(SioPacket::event(name, vec![payload], None));
    }

    /// Emits an event with an ack id; returns the id.
    pub fn emit_with_ack(&mut self, name: &str, args: Vec<Value>) -> u64 {
        self.next_ack += 1;
        self.send_sio(SioPacket::event(name, args, Some(self.next_ack)));
        self.next_ack
    }

    /// Waits for the ack `id`, buffering events; returns its arguments.
    pub async fn ack(&mut self, id: u64) -> Vec<Value> {
        if let Some(pos) = self
            .pending
            .iter()
            .position(|p| matches!(&p.kind, SioPacketKind::Ack { ack_id, .. } if *ack_id == id))
        {
            let Some(SioPacket {
                kind: SioPacketKind::Ack { args, .. },
                ..
            }) = self.pending.remove(pos)
            else {
                unreachable!()
            };
            return args;
        }
        loop {
            let p = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("closed while waiting for ack {id}"));
            match p.kind {
                SioPacketKind::Ack { ack_id, args } if ack_id == id => return args,
                _ => self.pending.push_back(p),
            }
        }
    }

    /// Emits `name` with one payload and returns the single ack argument.
    pub async fn request(&mut self, name: &str, payload: Value) -> Value {
        let id = self.emit_with_ack(name, vec![payload]);
        let mut args = self.ack(id).await;
        assert_eq!(
            args.len(),
            1,
            "an ack carries exactly one argument: {args:?}"
        );
        args.remove(0)
    }

    /// Like [`RawClient::request`], expecting `{"ok": ..}`.
    pub async fn ok(&mut self, name: &str, payload: Value) -> Value {
        let reply = self.request(name, payload).await;
        match reply.get("ok") {
            Some(v) => v.clone(),
            None => panic!("{name} failed: {reply}"),
        }
    }

    /// Like [`RawClient::request`], expecting `{"error": ..}`; returns the error body.
    pub async fn err(&mut self, name: &str, payload: Value) -> Value {
        let reply = self.request(name, payload).await;
        match reply.get("error") {
            Some(v) => v.clone(),
            None => panic!("{name} should have failed: {reply}"),
        }
    }

    /// Joins a space (no catch-up) and returns the reply.
    pub async fn join(&mut self, space: &str) -> Value {
        self.ok("space:join", json!({"space": space})).await
    }

    /// Joins a space catching up from `since` (in `epoch`, if given); returns the reply.
    pub async fn join_since(
        &mut self,
        space: &str,
        since: u64,
        epoch: Option<&str>,
    ) -> meridian::protocol::JoinReply {
        let mut req = json!({"space": space, "since": since});
        if let Some(e) = epoch {
            req["epoch"] = json!(e);
        }
        serde_json::from_value(self.ok("space:join", req).await).unwrap()
    }

    /// Sends a message and returns the receipt.
    pub async fn send(&mut self, space: &str, key: &str, body: &str) -> Value {
        self.ok(
            "message:send",
            json!({"space": space, "key": key, "body": body}),
        )
        .await
    }

    /// Sends a sealed message (empty body) and returns the whole reply (`ok` or `error`).
    pub async fn send_sealed(&mut self, space: &str, key: &str, sealed: Value) -> Value {
        self.request(
            "message:send",
            json!({"space": space, "key": key, "sealed": sealed}),
        )
        .await
    }

    /// Waits for the next event called `name` (other packets stay buffered).
    pub async fn event(&mut self, name: &str) -> Value {
        let is =
            |p: &SioPacket| matches!(&p.kind, SioPacketKind::Event { name: n, .. } if n == name);
        let p = match self.pending.iter().position(is) {
            Some(pos) => self.pending.remove(pos),
            None => loop {
                let p = self
                    .recv()
                    .await
                    .unwrap_or_else(|| panic!("closed while waiting for event {name}"));
                if is(&p) {
                    break Some(p);
                }
                self.pending.push_back(p);
            },
        };
        match p.map(|p| p.kind) {
            Some(SioPacketKind::Event { mut args, .. }) => {
                assert_eq!(args.len(), 1, "{name} carries one argument: {args:?}");
                args.remove(0)
            }
            _ => unreachable!(),
        }
    }

    /// Asserts that no event called `name` arrives within `wait`.
    pub async fn no_event(&mut self, name: &str, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        let is =
            |p: &SioPacket| matches!(&p.kind, SioPacketKind::Event { name: n, .. } if n == name);
        assert!(
            !self.pending.iter().any(is),
            "unexpected {name}: {:?}",
            self.pending
        );
        loop {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Err(_) => return,
                Ok(Some(Incoming::Packet(p))) => {
                    assert!(!is(&p), "unexpected {name}: {p:?}");
                    self.pending.push_back(p);
                }
                Ok(Some(Incoming::Closed) | None) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    /// Waits until the region closes the connection; false if it stays open.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while !self.closed {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Err(_) => return false,
                Ok(Some(Incoming::Packet(p))) => {
                    if matches!(p.kind, SioPacketKind::Disconnect) {
                        // The namespace went away; the transport close follows.
                        continue;
                    }
                    self.pending.push_back(p);
                }
                Ok(Some(Incoming::Closed) | None) => self.closed = true,
            }
        }
        true
    }

    /// Closes the socket from the client side.
    pub fn disconnect(self) {
        self.send_sio(SioPacket::main(SioPacketKind::Disconnect));
        let _ = self.out.send(EioPacket::Close.encode());
    }
}
