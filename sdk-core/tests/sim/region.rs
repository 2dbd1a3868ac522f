//! The simulated region: an Engine.IO v4 / Socket.IO v5 server that speaks the application
//! protocol of PROTOCOL.md (`space:join`, `message:send`, `space:leave`), through the SDK's
//! own codec, with a store that can be restarted with or without its state and can keep a
//! retention window.
//!
//! It is deliberately simple and synchronous: a frame in, frames out. It also keeps the
//! ledger: every message it ever stored, in every epoch, which is what the invariants are
//! checked against.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use meridian::codec::{EioPacket, OpenHandshake, SioPacket, SioPacketKind};
use meridian::model::{IdempotencyKey, MessageId, SendReceipt, SpaceId, UserId};
use meridian::protocol::{
    Auth, Empty, ErrorBody, JoinRequest, LeaveRequest, MAX_BATCH, PROTOCOL_VERSION, Reply,
    SendBatchReply, SendBatchRequest, SendRequest, event,
};
use meridian::{Error, ErrorCode};
use serde::Serialize;
use serde_json::Value;

use super::net::NetId;

/// How often the region pings, in ms (the `open` handshake says so).
pub const PING_INTERVAL_MS: u64 = 1000;
/// How long the region waits for a pong before it drops the socket, in ms.
pub const PING_TIMEOUT_MS: u64 = 500;
/// The largest catch-up page of a join: small, so that paging happens.
pub const PAGE: usize = 5;

/// A deliberate defect, to prove the invariants catch a broken region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionBug {
    /// Stores a repeated idempotency key again (and broadcasts it).
    NoDedupe,
    /// Leaves a hole in the seq numbering now and then.
    SkipSeq,
}

/// What the region asks the network to do.
#[derive(Debug)]
pub enum RegionOut {
    /// Write a frame to a socket.
    Frame {
        /// Which socket.
        net: NetId,
        /// The frame.
        frame: String,
    },
    /// The region closed a socket (an orderly close the client may or may not hear about).
    Close {
        /// Which socket.
        net: NetId,
    },
    /// Wake the region at `at` to ping `net`.
    PingAt {
        /// Which socket.
        net: NetId,
        /// When.
        at: u64,
    },
    /// Wake the region at `at` to check that ping number `ping` was answered.
    PongCheckAt {
        /// Which socket.
        net: NetId,
        /// The ping's number.
        ping: u64,
        /// When.
        at: u64,
    },
}

/// One message the region stored, as the checker sees it.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The history epoch it was stored in.
    pub epoch: u32,
    /// The space.
    pub space: SpaceId,
    /// Its seq in that epoch.
    pub seq: u64,
    /// The idempotency key it was sent with.
    pub key: IdempotencyKey,
    /// The text.
    pub body: String,
    /// Who sent it.
    pub sender: UserId,
}

/// Everything the region ever stored, across epochs: the ground truth of the checks.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Message id to record.
    pub by_id: BTreeMap<String, Stored>,
    /// Every store of a key, as (epoch, seq), in the order they happened.
    pub by_key: BTreeMap<IdempotencyKey, Vec<(u32, u64)>>,
    /// Records by (epoch, space, seq).
    pub stored: BTreeMap<(u32, SpaceId, u64), String>,
    /// The head of each space in each epoch (final for a wiped epoch).
    pub heads: BTreeMap<(u32, SpaceId), u64>,
    /// The oldest seq still held, per epoch and space (`head + 1` when none is held).
    pub oldest: BTreeMap<(u32, SpaceId), u64>,
}

impl Ledger {
    /// The head of `space` in `epoch` (0 when nothing was stored).
    pub fn head(&self, epoch: u32, space: &SpaceId) -> u64 {
        self.heads
            .get(&(epoch, space.clone()))
            .copied()
            .unwrap_or(0)
    }

    /// Whether seq `seq` of `space` in `epoch` was still held when the epoch ended (or now).
    pub fn held(&self, epoch: u32, space: &SpaceId, seq: u64) -> bool {
        let oldest = self
            .oldest
            .get(&(epoch, space.clone()))
            .copied()
            .unwrap_or(1);
        seq >= oldest && seq <= self.head(epoch, space)
    }
}

#[derive(Debug, Default)]
struct SpaceLog {
    head: u64,
    /// The messages held, oldest first, as (seq, wire JSON).
    held: VecDeque<(u64, Value)>,
    keys: BTreeMap<IdempotencyKey, SendReceipt>,
}

impl SpaceLog {
    fn oldest(&self) -> u64 {
        self.held.front().map_or(self.head + 1, |(seq, _)| *seq)
    }
}

#[derive(Debug)]
struct Socket {
    /// The user it authenticated as, once connected.
    user: Option<UserId>,
    connected: bool,
    joined: BTreeSet<SpaceId>,
    ping: u64,
    pong: u64,
}

/// The region.
#[derive(Debug)]
pub struct Region {
    /// Whether it accepts connections.
    pub up: bool,
    /// The current history epoch (its wire form is `ep<n>`).
    pub epoch: u32,
    spaces: BTreeMap<SpaceId, SpaceLog>,
    sockets: BTreeMap<NetId, Socket>,
    tokens: BTreeMap<String, UserId>,
    retention: Option<usize>,
    bug: Option<RegionBug>,
    /// What it stored, ever.
    pub ledger: Ledger,
    /// Sends it recognised by their key (answered with the first receipt).
    pub dedup_hits: u64,
}

/// The wire form of epoch `n`.
pub fn epoch_name(n: u32) -> String {
    format!("ep{n}")
}

/// Parses `ep<n>`.
pub fn epoch_number(name: &str) -> Option<u32> {
    name.strip_prefix("ep")?.parse().ok()
}

impl Region {
    /// A region housing `spaces`, accepting `tokens` (token to user).
    pub fn new(
        spaces: &[SpaceId],
        tokens: BTreeMap<String, UserId>,
        retention: Option<usize>,
        bug: Option<RegionBug>,
    ) -> Self {
        let mut region = Self {
            up: true,
            epoch: 1,
            spaces: BTreeMap::new(),
            sockets: BTreeMap::new(),
            tokens,
            retention,
            bug,
            ledger: Ledger::default(),
            dedup_hits: 0,
        };
        for s in spaces {
            region.spaces.insert(s.clone(), SpaceLog::default());
        }
        region.note_all_bounds();
        region
    }

    /// The newest seq of `space` in the current epoch.
    pub fn head(&self, space: &SpaceId) -> u64 {
        self.spaces.get(space).map_or(0, |l| l.head)
    }

    /// Whether the region holds an open socket `net`.
    pub fn has_socket(&self, net: NetId) -> bool {
        self.sockets.contains_key(&net)
    }

    /// Sockets it holds.
    pub fn sockets(&self) -> Vec<NetId> {
        self.sockets.keys().copied().collect()
    }

    /// Stops: every socket is gone. Without state, the store is wiped and a new epoch
    /// starts (seq numbering starts over, keys are forgotten). Returns the sockets it held.
    pub fn stop(&mut self, keep_state: bool) -> Vec<NetId> {
        self.up = false;
        let nets = self.sockets();
        self.sockets.clear();
        if !keep_state {
            self.epoch += 1;
            for log in self.spaces.values_mut() {
                *log = SpaceLog::default();
            }
            self.note_all_bounds();
        }
        nets
    }

    /// A connection arrived: the Engine.IO `open` handshake, and the first ping's timer.
    pub fn accept(&mut self, net: NetId, now: u64) -> Vec<RegionOut> {
        self.sockets.insert(
            net,
            Socket {
                user: None,
                connected: false,
                joined: BTreeSet::new(),
                ping: 0,
                pong: 0,
            },
        );
        let open = EioPacket::Open(OpenHandshake {
            sid: format!("eio{net}"),
            upgrades: Vec::new(),
            ping_interval: PING_INTERVAL_MS,
            ping_timeout: PING_TIMEOUT_MS,
            max_payload: Some(1_000_000),
        });
        vec![
            RegionOut::Frame {
                net,
                frame: open.encode(),
            },
            RegionOut::PingAt {
                net,
                at: now + PING_INTERVAL_MS,
            },
        ]
    }

    /// The client closed the socket (or it was reset).
    pub fn closed(&mut self, net: NetId) {
        self.sockets.remove(&net);
    }

    /// Time to ping `net`.
    pub fn ping(&mut self, net: NetId, now: u64) -> Vec<RegionOut> {
        let Some(socket) = self.sockets.get_mut(&net) else {
            return Vec::new();
        };
        socket.ping += 1;
        vec![
            RegionOut::Frame {
                net,
                frame: EioPacket::Ping(String::new()).encode(),
            },
            RegionOut::PongCheckAt {
                net,
                ping: socket.ping,
                at: now + PING_TIMEOUT_MS,
            },
        ]
    }

    /// Whether ping number `ping` of `net` was answered; if not, the socket is dropped.
    pub fn pong_check(&mut self, net: NetId, ping: u64) -> Vec<RegionOut> {
        match self.sockets.get(&net) {
            Some(s) if s.pong < ping => {
                self.sockets.remove(&net);
                vec![RegionOut::Close { net }]
            }
            _ => Vec::new(),
        }
    }

    /// A frame from `net`.
    pub fn frame(&mut self, net: NetId, frame: &str, now: u64) -> Vec<RegionOut> {
        if !self.sockets.contains_key(&net) {
            return Vec::new();
        }
        let mut out = Vec::new();
        match EioPacket::decode(frame) {
            Ok(EioPacket::Pong(_)) => {
                if let Some(s) = self.sockets.get_mut(&net)
                    && s.pong < s.ping
                {
                    s.pong = s.ping;
                    out.push(RegionOut::PingAt {
                        net,
                        at: now + PING_INTERVAL_MS,
                    });
                }
            }
            Ok(EioPacket::Close) => self.closed(net),
            Ok(EioPacket::Message(m)) => match SioPacket::decode(&m) {
                Ok(p) => self.packet(net, p.kind, now, &mut out),
                Err(_) => self.kick(net, &mut out),
            },
            Ok(_) => {}
            Err(_) => self.kick(net, &mut out),
        }
        out
    }

    fn kick(&mut self, net: NetId, out: &mut Vec<RegionOut>) {
        self.sockets.remove(&net);
        out.push(RegionOut::Close { net });
    }

    fn packet(&mut self, net: NetId, kind: SioPacketKind, now: u64, out: &mut Vec<RegionOut>) {
        let connected = self.sockets.get(&net).is_some_and(|s| s.connected);
        match kind {
            SioPacketKind::Connect(auth) => {
                let auth = auth.and_then(|a| serde_json::from_value::<Auth>(a).ok());
                let answer = match auth {
                    Some(a) if a.protocol != PROTOCOL_VERSION => SioPacketKind::ConnectError(
                        serde_json::json!({"message": "invalid_input: unknown protocol version"}),
                    ),
                    Some(a) if self.tokens.contains_key(&a.token) => {
                        if let Some(s) = self.sockets.get_mut(&net) {
                            s.connected = true;
                            s.user = self.tokens.get(&a.token).cloned();
                        }
                        SioPacketKind::Connect(Some(
                            serde_json::json!({"sid": format!("sio{net}")}),
                        ))
                    }
                    _ => SioPacketKind::ConnectError(
                        serde_json::json!({"message": "unauthorized: unknown token"}),
                    ),
                };
                out.push(frame(net, SioPacket::main(answer)));
            }
            SioPacketKind::Event {
                name,
                mut args,
                ack_id,
            } if connected => {
                let arg = if args.is_empty() {
                    Value::Null
                } else {
                    args.swap_remove(0)
                };
                let answer = match name.as_str() {
                    event::SPACE_JOIN => reply(self.join(net, arg)),
                    event::MESSAGE_SEND => reply(self.send(net, arg, now, out)),
                    event::MESSAGE_SEND_BATCH => reply(self.send_batch(net, arg, now, out)),
                    event::SPACE_LEAVE => reply(self.leave(net, arg)),
                    other => reply::<Empty>(Err(invalid(format!("unknown event {other}")))),
                };
                if let Some(ack_id) = ack_id {
                    // The ack goes before any broadcast the request caused: `send` queued
                    // its broadcast frames in `out`, so put the ack in front of them.
                    let position = out
                        .iter()
                        .position(|o| matches!(o, RegionOut::Frame { .. }))
                        .unwrap_or(out.len());
                    out.insert(
                        position,
                        frame(
                            net,
                            SioPacket::main(SioPacketKind::Ack {
                                ack_id,
                                args: vec![answer],
                            }),
                        ),
                    );
                }
            }
            SioPacketKind::Disconnect => {
                if let Some(s) = self.sockets.get_mut(&net) {
                    s.connected = false;
                    s.joined.clear();
                }
            }
            // Events before CONNECT, acks and anything else from a client: ignored.
            _ => {}
        }
    }

    fn join(&mut self, net: NetId, arg: Value) -> Result<Value, ErrorBody> {
        let req: JoinRequest = decode(arg)?;
        let epoch = epoch_name(self.epoch);
        let Some(log) = self.spaces.get(&req.space) else {
            return Err(error(
                ErrorCode::NotFound,
                format!("no space {}", req.space),
            ));
        };
        if let Some(s) = self.sockets.get_mut(&net) {
            s.joined.insert(req.space.clone());
        }
        // A `since` from another epoch means nothing here: answer from the start.
        let since = match (req.since, &req.epoch) {
            (Some(_), Some(theirs)) if *theirs != epoch => Some(0),
            (since, _) => since,
        };
        let oldest = log.oldest();
        let page: Vec<&(u64, Value)> = since
            .map(|s| {
                log.held
                    .iter()
                    .filter(|(seq, _)| *seq > s)
                    .take(PAGE)
                    .collect()
            })
            .unwrap_or_default();
        let complete = match since {
            None => true,
            Some(s) => page.last().map_or(s.max(oldest - 1), |(seq, _)| *seq) >= log.head,
        };
        let missed: Vec<Value> = page.into_iter().map(|(_, m)| m.clone()).collect();
        Ok(serde_json::json!({
            "space": req.space,
            "head_seq": log.head,
            "missed": missed,
            "complete": complete,
            "oldest_seq": oldest,
            "epoch": epoch,
        }))
    }

    fn leave(&mut self, net: NetId, arg: Value) -> Result<Empty, ErrorBody> {
        let req: LeaveRequest = decode(arg)?;
        if let Some(s) = self.sockets.get_mut(&net) {
            s.joined.remove(&req.space);
        }
        Ok(Empty {})
    }

    fn send(
        &mut self,
        net: NetId,
        arg: Value,
        now: u64,
        out: &mut Vec<RegionOut>,
    ) -> Result<SendReceipt, ErrorBody> {
        let req: SendRequest = decode(arg)?;
        self.check_send(&req)?;
        self.store(net, req, now, out)
    }

    /// `message:send_batch`: every send checked, then stored in the order listed.
    fn send_batch(
        &mut self,
        net: NetId,
        arg: Value,
        now: u64,
        out: &mut Vec<RegionOut>,
    ) -> Result<SendBatchReply, ErrorBody> {
        let batch: SendBatchRequest = decode(arg)?;
        if batch.messages.is_empty() || batch.messages.len() > MAX_BATCH {
            return Err(invalid(format!(
                "a batch holds 1 to {MAX_BATCH} sends, not {}",
                batch.messages.len()
            )));
        }
        for req in &batch.messages {
            if req.space != batch.space {
                return Err(invalid(
                    "every send of a batch is to the batch's space".into(),
                ));
            }
            self.check_send(req)?;
        }
        let mut receipts = Vec::with_capacity(batch.messages.len());
        for req in batch.messages {
            receipts.push(self.store(net, req, now, out)?);
        }
        Ok(SendBatchReply { receipts })
    }

    fn check_send(&self, req: &SendRequest) -> Result<(), ErrorBody> {
        if req.body.trim().is_empty() {
            return Err(invalid("message body is empty".into()));
        }
        if !self.spaces.contains_key(&req.space) {
            return Err(error(
                ErrorCode::NotFound,
                format!("no space {}", req.space),
            ));
        }
        Ok(())
    }

    fn store(
        &mut self,
        net: NetId,
        req: SendRequest,
        now: u64,
        out: &mut Vec<RegionOut>,
    ) -> Result<SendReceipt, ErrorBody> {
        // Sending needs no subscription (as in the devserver): an app may post to a space
        // whose messages it doesn't follow, e.g. a send restored after a restart to a space
        // the app has left since.
        let epoch = self.epoch;
        let sender = self.sender(net);
        let trace = req.trace.clone();
        let Some(log) = self.spaces.get_mut(&req.space) else {
            return Err(error(
                ErrorCode::NotFound,
                format!("no space {}", req.space),
            ));
        };
        if self.bug != Some(RegionBug::NoDedupe)
            && let Some(receipt) = log.keys.get(&req.key)
        {
            self.dedup_hits += 1;
            return Ok(receipt.clone());
        }
        log.head += 1;
        if self.bug == Some(RegionBug::SkipSeq) && log.head % 7 == 0 {
            log.head += 1;
        }
        let seq = log.head;
        let id = format!("e{epoch}.{}.{seq}", req.space);
        let mut message = serde_json::json!({
            "space": req.space,
            "seq": seq,
            "id": id,
            "sender": sender,
            "body": req.body,
            "sent_at_ms": now,
        });
        if let Some(trace) = trace {
            message["trace"] = Value::String(trace);
        }
        let receipt = SendReceipt {
            message_id: MessageId::new_unchecked(id.clone()),
            seq,
            sent_at_ms: now,
        };
        log.keys.insert(req.key.clone(), receipt.clone());
        let broadcast = encode(SioPacket::event(
            event::MESSAGE,
            vec![message.clone()],
            None,
        ));
        log.held.push_back((seq, message));
        if let Some(keep) = self.retention {
            while log.held.len() > keep {
                log.held.pop_front();
            }
        }
        self.ledger.by_id.insert(
            id.clone(),
            Stored {
                epoch,
                space: req.space.clone(),
                seq,
                key: req.key.clone(),
                body: req.body.clone(),
                sender,
            },
        );
        self.ledger
            .by_key
            .entry(req.key.clone())
            .or_default()
            .push((epoch, seq));
        self.ledger
            .stored
            .insert((epoch, req.space.clone(), seq), id);
        self.note_bounds(&req.space);
        // To the whole room, the sender included.
        for (n, s) in &self.sockets {
            if s.connected && s.joined.contains(&req.space) {
                out.push(RegionOut::Frame {
                    net: *n,
                    frame: broadcast.clone(),
                });
            }
        }
        Ok(receipt)
    }

    fn sender(&self, net: NetId) -> UserId {
        self.sockets
            .get(&net)
            .and_then(|s| s.user.clone())
            .unwrap_or_else(|| UserId::new_unchecked("unknown"))
    }

    /// Records the head and the oldest held seq of `space` in the ledger.
    fn note_bounds(&mut self, space: &SpaceId) {
        if let Some(log) = self.spaces.get(space) {
            self.ledger
                .heads
                .insert((self.epoch, space.clone()), log.head);
            self.ledger
                .oldest
                .insert((self.epoch, space.clone()), log.oldest());
        }
    }

    fn note_all_bounds(&mut self) {
        let spaces: Vec<SpaceId> = self.spaces.keys().cloned().collect();
        for space in &spaces {
            self.note_bounds(space);
        }
    }
}

fn frame(net: NetId, packet: SioPacket) -> RegionOut {
    RegionOut::Frame {
        net,
        frame: encode(packet),
    }
}

fn encode(packet: SioPacket) -> String {
    EioPacket::Message(packet.encode()).encode()
}

fn reply<T: Serialize>(result: Result<T, ErrorBody>) -> Value {
    match result {
        Ok(v) => to_value(&Reply::Ok(v)),
        Err(e) => to_value(&Reply::<T>::Error(e)),
    }
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn decode<T: serde::de::DeserializeOwned>(arg: Value) -> Result<T, ErrorBody> {
    serde_json::from_value(arg).map_err(|e| invalid(format!("bad argument: {e}")))
}

fn error(code: ErrorCode, message: String) -> ErrorBody {
    ErrorBody {
        code,
        message,
        region: None,
    }
}

fn invalid(message: String) -> ErrorBody {
    ErrorBody::from(&Error::InvalidInput(message))
}
