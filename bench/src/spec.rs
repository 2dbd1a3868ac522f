//! What the suite asks a client process to do, and what the client reports back.
//!
//! The suite passes a [`ClientSpec`] as one JSON argument to each client process
//! (`meridian-bench client '<json>'`, `node bench/node/client.mjs '<json>'`); the client
//! prints `MEASURE` when its measured phase starts and `END` when it ends (the suite
//! samples the server and the client from outside at both, the client's sockets still
//! open), then one `RESULT {json}` line ([`ClientResult`]).

use serde::{Deserialize, Serialize};

/// The size of every message body the benchmarks send.
pub const BODY_BYTES: usize = 100;

/// One space to send to, and the Socket.IO endpoint of the region that houses it (the
/// raw and socket.io-client clients connect there directly; Meridian asks the directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// The space id.
    pub space: String,
    /// The region that houses it: a client has one connection per region.
    pub region: String,
    /// The region's socket URL, `ws://host:port`.
    pub url: String,
}

/// What a client does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    /// Acked sends: `warmup` then `count` messages over the targets in turn, at most
    /// `window` unacknowledged at a time.
    Send {
        /// Where to send, in turn.
        targets: Vec<Target>,
        /// Sends in flight at most.
        window: usize,
        /// Measured sends.
        count: usize,
        /// Sends before the measured ones.
        warmup: usize,
        /// Body size in bytes.
        body_bytes: usize,
    },
    /// Joins the targets' spaces, then consumes `message` events (each parsed, its body's
    /// length summed): `warmup_seconds` unmeasured, then `seconds` measured.
    Receive {
        /// The spaces to join.
        targets: Vec<Target>,
        /// The measured phase.
        seconds: u64,
        /// Before it.
        warmup_seconds: u64,
    },
    /// Joins every target's space, prints `JOINED`, and waits for `DOWN` on stdin; then
    /// makes `pending` sends (to the first targets' spaces, which queue: the federation is
    /// down), prints `QUEUED`, and waits for every one of them to be acked and for a
    /// message in each of the `probes` (spaces among the targets, sent by another process
    /// after the restart) to arrive. Its result's `seconds` is the Unix time when both
    /// were done.
    Scale {
        /// The spaces to join.
        targets: Vec<Target>,
        /// Sends made while the federation is down.
        pending: usize,
        /// Spaces whose next message shows that their subscription is back.
        probes: Vec<String>,
    },
    /// Connected (to the targets' regions) and idle for `seconds`.
    Idle {
        /// The regions to be connected to (a space each, joined).
        targets: Vec<Target>,
        /// How long to stay idle.
        seconds: u64,
    },
}

/// A client run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientSpec {
    /// The directory (for Meridian).
    pub directory_url: String,
    /// The user's bearer token.
    pub token: String,
    /// The federation keys to trust (for Meridian).
    pub federation_keys: Vec<meridian::model::FederationKey>,
    /// What to do.
    #[serde(flatten)]
    pub mode: Mode,
}

/// What a client measured over its measured phase only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientResult {
    /// Messages sent and acked (send) or received (receive).
    pub messages: u64,
    /// Wall time of the measured phase.
    pub seconds: f64,
    /// Median ack latency, microseconds (sends only).
    pub p50_us: f64,
    /// 99th percentile ack latency, microseconds (sends only).
    pub p99_us: f64,
    /// User CPU time of the whole process over the measured phase, milliseconds.
    pub cpu_user_ms: f64,
    /// System CPU time of the whole process over the measured phase, milliseconds.
    pub cpu_sys_ms: f64,
    /// Resident memory at the end, KiB.
    pub rss_kib: u64,
    /// Peak resident memory, KiB.
    pub peak_rss_kib: u64,
    /// Context switches (voluntary + involuntary) over the measured phase: wake-ups.
    pub wakeups: u64,
    /// TCP payload bytes the process's sockets sent and received over the measured phase
    /// (counted by the suite, from the kernel's `tcp_info`).
    pub io_bytes: u64,
}
