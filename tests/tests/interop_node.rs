//! Interoperability with the official Node.js socket.io server (npm `socket.io` 4.x).
//!
//! Each test starts `tests/interop/server.js` and speaks Engine.IO v4 / Socket.IO v5 to it
//! over a plain WebSocket, building and reading every frame with `meridian::codec` and
//! nothing else. The server is the reference implementation: where our codec and it
//! disagree, these tests fail.
//!
//! They need `node` on the PATH and `tests/interop/node_modules` (`cargo xtask setup`
//! installs it). When either is missing the tests print a skip line and pass, unless
//! `MERIDIAN_REQUIRE_NODE` is set (to anything but `0` or nothing): then they fail.
// A failed unwrap in a test is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use meridian::codec::{EioPacket, OpenHandshake, SioPacket, SioPacketKind};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// The most any one test may take, server start included.
const TEST_DEADLINE: Duration = Duration::from_secs(30);

/// Heartbeat settings of `server.js`.
const PING_INTERVAL_MS: u64 = 300;
const PING_TIMEOUT_MS: u64 = 400;

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn handshake_announces_the_servers_heartbeat_and_accepts_the_namespace() {
    interop(|port| async move {
        let mut client = RawClient::open(port, Heartbeat::Answer).await;
        let h = client.handshake.clone();
        assert!(!h.sid.is_empty(), "empty engine.io sid in {h:?}");
        assert!(
            h.upgrades.is_empty(),
            "websocket-only server offers upgrades: {h:?}"
        );
        assert_eq!(h.ping_interval, PING_INTERVAL_MS);
        assert_eq!(h.ping_timeout, PING_TIMEOUT_MS);
        assert!(
            h.max_payload.is_some_and(|n| n > 0),
            "no maxPayload in {h:?}"
        );

        let reply = client
            .join_namespace(Some(json!({ "token": "good" })))
            .await;
        let SioPacketKind::Connect(Some(payload)) = reply.kind else {
            panic!("expected a CONNECT with a sid, got {reply:?}");
        };
        assert_eq!(reply.namespace, "/");
        let sid = payload["sid"].as_str().unwrap_or_default();
        assert!(
            !sid.is_empty(),
            "CONNECT without a socket.io sid: {payload}"
        );
        assert_ne!(
            sid, h.sid,
            "socket.io v5 sid must differ from the engine.io sid"
        );
    })
    .await;
}

#[tokio::test]
async fn answering_server_pings_with_pongs_keeps_the_connection_alive() {
    interop(|port| async move {
        let mut client = RawClient::connect(port, None).await.unwrap();
        // Several times longer than ping interval + ping timeout: without pongs the
        // server would have closed the connection by now (see the next test).
        tokio::time::sleep(Duration::from_millis(5 * PING_INTERVAL_MS)).await;
        let pings = client.pings_seen();
        assert!(
            pings >= 3,
            "expected several server pings in 1.5 s, saw {pings}"
        );
        let answer = client
            .emit_with_ack("echo", vec![json!("still here")])
            .await;
        assert_eq!(answer, vec![json!("still here")]);
    })
    .await;
}

#[tokio::test]
async fn an_unanswered_ping_makes_the_server_close_the_connection() {
    interop(|port| async move {
        let started = Instant::now();
        let mut client = RawClient::open(port, Heartbeat::Ignore).await;
        let joined = client.join_namespace(None).await;
        assert!(
            matches!(joined.kind, SioPacketKind::Connect(_)),
            "{joined:?}"
        );
        let end = client.next().await;
        let elapsed = started.elapsed();
        assert!(
            matches!(end, Inbound::Closed | Inbound::Eio(EioPacket::Close)),
            "expected the server to close, got {end:?}"
        );
        assert!(client.pings_seen() >= 1, "closed before any ping was sent");
        assert!(
            elapsed >= Duration::from_millis(PING_INTERVAL_MS),
            "closed after {elapsed:?}, before the first ping was even due"
        );
    })
    .await;
}

#[tokio::test]
async fn emit_with_ack_gets_its_arguments_echoed_back() {
    interop(|port| async move {
        let mut client = RawClient::connect(port, None).await.unwrap();
        let args = vec![
            json!("text with \"quotes\", commas, and unicode: é ✓"),
            json!(42),
            json!(-1.5),
            json!({ "nested": [1, null, true, { "k": "v" }] }),
            json!(null),
        ];
        assert_eq!(client.emit_with_ack("echo", args.clone()).await, args);
        assert_eq!(
            client.emit_with_ack("echo", vec![]).await,
            Vec::<Value>::new()
        );

        // Pipelined emits: each answer carries the id of the emit it answers.
        let first = client.emit("echo", vec![json!("first")]);
        let second = client.emit("echo", vec![json!("second")]);
        assert_ne!(first, second);
        assert_eq!(client.ack_for(second).await, vec![json!("second")]);
        assert_eq!(client.ack_for(first).await, vec![json!("first")]);
    })
    .await;
}

#[tokio::test]
async fn a_broadcast_reaches_every_client_in_the_room_and_no_one_else() {
    interop(|port| async move {
        let mut alice = RawClient::connect(port, None).await.unwrap();
        let mut bob = RawClient::connect(port, None).await.unwrap();
        let mut outsider = RawClient::connect(port, None).await.unwrap();
        for member in [&mut alice, &mut bob] {
            let ack = member.emit_with_ack("join", vec![json!("room-1")]).await;
            assert_eq!(ack, vec![json!("joined")]);
        }

        let news = json!({ "headline": "interop works", "n": 7 });
        let ack = outsider
            .emit_with_ack("broadcast", vec![json!("room-1"), news.clone()])
            .await;
        assert_eq!(ack, vec![json!("ok")]);
        // The server emits to the room before it acks: had the outsider been in the room,
        // its copy of `news` would have arrived before the ack.
        assert!(
            outsider.backlog.is_empty(),
            "outsider got {:?}",
            outsider.backlog
        );

        for member in [&mut alice, &mut bob] {
            let (name, args) = member.next_event().await;
            assert_eq!(name, "news");
            assert_eq!(args, vec![news.clone()]);
        }
    })
    .await;
}

#[tokio::test]
async fn a_server_side_disconnect_ends_the_session() {
    interop(|port| async move {
        let mut client = RawClient::connect(port, None).await.unwrap();
        assert_eq!(
            client.emit_with_ack("kick", vec![]).await,
            vec![json!("bye")]
        );

        let mut seen = Vec::new();
        loop {
            match client.next().await {
                Inbound::Closed => break,
                Inbound::Sio(p) if p.kind == SioPacketKind::Disconnect => seen.push("DISCONNECT"),
                Inbound::Eio(EioPacket::Close) => seen.push("engine.io close"),
                other => panic!("expected the session to end, got {other:?}"),
            }
        }
        // socket.io's `disconnect(true)` tells the namespace first, then drops the transport.
        assert!(
            seen.contains(&"DISCONNECT"),
            "socket closed without a Socket.IO DISCONNECT (saw {seen:?})"
        );
    })
    .await;
}

#[tokio::test]
async fn a_refused_connect_yields_a_connect_error_that_decodes() {
    interop(|port| async move {
        let Err(error) = RawClient::connect(port, Some(json!({ "token": "bad" }))).await else {
            panic!("a connect with a bad token was accepted");
        };
        assert_eq!(error["message"], json!("unauthorized"), "payload: {error}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Harness: the Node server
// ---------------------------------------------------------------------------------------

/// Runs `test` against a fresh server within [`TEST_DEADLINE`], or skips it (see the crate
/// docs) when Node is not installed.
async fn interop<F, Fut>(test: F)
where
    F: FnOnce(u16) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(prerequisites) = NodeServer::prerequisites().await else {
        return;
    };
    tokio::time::timeout(TEST_DEADLINE, async {
        let server = NodeServer::start(prerequisites).await;
        test(server.port).await;
        drop(server);
    })
    .await
    .unwrap_or_else(|_| panic!("interop test did not finish within {TEST_DEADLINE:?}"));
}

/// `node tests/interop/server.js`, killed on drop. It also exits by itself when its stdin
/// closes, so not even a killed test process leaves it behind.
struct NodeServer {
    port: u16,
    _process: Child,
}

/// Proof that Node and the npm packages are there: the interop directory.
struct Prerequisites(PathBuf);

impl NodeServer {
    async fn prerequisites() -> Option<Prerequisites> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop");
        let node = Command::new("node").arg("--version").output().await;
        let missing = match node {
            Err(e) => Some(format!("`node` cannot be run ({e})")),
            Ok(out) if !out.status.success() => Some("`node --version` failed".to_owned()),
            Ok(_) if !dir.join("node_modules/socket.io/package.json").is_file() => Some(format!(
                "{} has no node_modules/socket.io (run `npm ci` there)",
                dir.display()
            )),
            Ok(_) => None,
        };
        let Some(missing) = missing else {
            return Some(Prerequisites(dir));
        };
        let required =
            std::env::var("MERIDIAN_REQUIRE_NODE").is_ok_and(|v| !v.is_empty() && v != "0");
        assert!(
            !required,
            "MERIDIAN_REQUIRE_NODE is set but {missing}; `cargo xtask setup` installs what is needed"
        );
        eprintln!(
            "SKIPPED: node interop test: {missing}. Run `cargo xtask setup`, \
             or set MERIDIAN_REQUIRE_NODE=1 to make this a failure."
        );
        None
    }

    async fn start(Prerequisites(dir): Prerequisites) -> Self {
        let mut process = Command::new("node")
            .arg("server.js")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {}/server.js: {e}", dir.display()));
        let stdout = process.stdout.take().unwrap();
        let line = BufReader::new(stdout)
            .lines()
            .next_line()
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("server.js exited before listening"));
        let port = line
            .strip_prefix("LISTENING ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("server.js printed {line:?}, expected `LISTENING <port>`"));
        Self {
            port,
            _process: process,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Harness: a raw Engine.IO / Socket.IO client built on the project's codec
// ---------------------------------------------------------------------------------------

/// Whether the client answers the server's heartbeat.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Heartbeat {
    Answer,
    Ignore,
}

/// What the connection delivered, heartbeats aside.
#[derive(Debug)]
enum Inbound {
    /// A Socket.IO packet (the payload of an Engine.IO message).
    Sio(SioPacket),
    /// Any other Engine.IO packet.
    Eio(EioPacket),
    /// The server sent something the codec refused, or a binary frame; the reader stopped.
    Broken(String),
    /// The WebSocket closed.
    Closed,
}

/// One Engine.IO connection. A background task reads the socket and answers pings (as a
/// real driver does) so that a client left idle while a test drives another one stays
/// connected; everything else comes through [`RawClient::next`].
struct RawClient {
    handshake: OpenHandshake,
    outbound: mpsc::UnboundedSender<EioPacket>,
    inbound: mpsc::UnboundedReceiver<Inbound>,
    pings: Arc<AtomicUsize>,
    next_ack_id: u64,
    /// Events that arrived while an ack was awaited.
    backlog: VecDeque<(String, Vec<Value>)>,
    /// Acks that arrived while another ack was awaited.
    early_acks: HashMap<u64, Vec<Value>>,
}

impl RawClient {
    /// Opens the Engine.IO session and joins the main namespace.
    /// `Err` carries the payload of the server's CONNECT_ERROR.
    async fn connect(port: u16, auth: Option<Value>) -> Result<Self, Value> {
        let mut client = Self::open(port, Heartbeat::Answer).await;
        let reply = client.join_namespace(auth).await;
        match reply.kind {
            SioPacketKind::Connect(_) => Ok(client),
            SioPacketKind::ConnectError(payload) => Err(payload),
            _ => panic!("expected CONNECT or CONNECT_ERROR, got {reply:?}"),
        }
    }

    /// Opens the Engine.IO session: the first frame must be the `open` handshake.
    async fn open(port: u16, heartbeat: Heartbeat) -> Self {
        let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = connect_async(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("websocket connect to {url}: {e}"));
        let (mut sink, mut stream) = ws.split();
        let (outbound, mut to_send) = mpsc::unbounded::<EioPacket>();
        let (deliver, mut inbound) = mpsc::unbounded::<Inbound>();
        let pings = Arc::new(AtomicUsize::new(0));

        tokio::spawn(async move {
            while let Some(packet) = to_send.next().await {
                if sink.send(Message::text(packet.encode())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let pong = outbound.clone();
        let ping_count = Arc::clone(&pings);
        tokio::spawn(async move {
            loop {
                let text = match stream.next().await {
                    Some(Ok(Message::Text(text))) => text,
                    // WebSocket-level pings are answered by tungstenite itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Binary(b))) => {
                        let _ =
                            deliver.unbounded_send(Inbound::Broken(format!("binary frame {b:?}")));
                        return;
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        let _ = deliver.unbounded_send(Inbound::Closed);
                        return;
                    }
                };
                let inbound = match EioPacket::decode(text.as_str()) {
                    Ok(EioPacket::Ping(payload)) => {
                        ping_count.fetch_add(1, Ordering::SeqCst);
                        if heartbeat == Heartbeat::Answer {
                            let _ = pong.unbounded_send(EioPacket::Pong(payload));
                        }
                        continue;
                    }
                    Ok(EioPacket::Message(m)) => match SioPacket::decode(&m) {
                        Ok(packet) => Inbound::Sio(packet),
                        Err(e) => Inbound::Broken(format!("socket.io packet {m:?}: {e}")),
                    },
                    Ok(other) => Inbound::Eio(other),
                    Err(e) => Inbound::Broken(format!("engine.io frame {text:?}: {e}")),
                };
                let stop = matches!(inbound, Inbound::Broken(_));
                if deliver.unbounded_send(inbound).is_err() || stop {
                    return;
                }
            }
        });

        let handshake = match inbound.next().await {
            Some(Inbound::Eio(EioPacket::Open(handshake))) => handshake,
            Some(Inbound::Broken(why)) => panic!("the codec refused the handshake: {why}"),
            other => panic!("expected the engine.io open packet first, got {other:?}"),
        };
        Self {
            handshake,
            outbound,
            inbound,
            pings,
            next_ack_id: 0,
            backlog: VecDeque::new(),
            early_acks: HashMap::new(),
        }
    }

    /// Sends a Socket.IO CONNECT for the main namespace and returns the server's answer.
    async fn join_namespace(&mut self, auth: Option<Value>) -> SioPacket {
        self.send(SioPacket::main(SioPacketKind::Connect(auth)));
        match self.next().await {
            Inbound::Sio(p) => p,
            other => panic!("expected the answer to CONNECT, got {other:?}"),
        }
    }

    fn send(&self, packet: SioPacket) {
        self.outbound
            .unbounded_send(EioPacket::Message(packet.encode()))
            .unwrap();
    }

    /// The next delivery; [`Inbound::Closed`] forever once the socket closed.
    /// Fails the test when the server sent anything the codec refused.
    async fn next(&mut self) -> Inbound {
        match self.inbound.next().await {
            Some(Inbound::Broken(why)) => panic!("the codec refused what the server sent: {why}"),
            Some(inbound) => inbound,
            None => Inbound::Closed,
        }
    }

    fn pings_seen(&self) -> usize {
        self.pings.load(Ordering::SeqCst)
    }

    /// Emits an event that asks for an ack; returns the ack id.
    fn emit(&mut self, name: &str, args: Vec<Value>) -> u64 {
        let id = self.next_ack_id;
        self.next_ack_id += 1;
        self.send(SioPacket::event(name, args, Some(id)));
        id
    }

    async fn emit_with_ack(&mut self, name: &str, args: Vec<Value>) -> Vec<Value> {
        let id = self.emit(name, args);
        self.ack_for(id).await
    }

    /// Waits for the ack of emit `id`, setting aside events and other acks.
    async fn ack_for(&mut self, id: u64) -> Vec<Value> {
        if let Some(args) = self.early_acks.remove(&id) {
            return args;
        }
        loop {
            match self.next().await {
                Inbound::Sio(SioPacket {
                    kind: SioPacketKind::Ack { ack_id, args },
                    ..
                }) => {
                    if ack_id == id {
                        return args;
                    }
                    self.early_acks.insert(ack_id, args);
                }
                Inbound::Sio(SioPacket {
                    kind: SioPacketKind::Event { name, args, .. },
                    ..
                }) => self.backlog.push_back((name, args)),
                other => panic!("waiting for ack {id}, got {other:?}"),
            }
        }
    }

    /// The next event the server emitted to this client.
    async fn next_event(&mut self) -> (String, Vec<Value>) {
        if let Some(event) = self.backlog.pop_front() {
            return event;
        }
        match self.next().await {
            Inbound::Sio(SioPacket {
                kind: SioPacketKind::Event { name, args, .. },
                ..
            }) => (name, args),
            other => panic!("expected an event, got {other:?}"),
        }
    }
}
