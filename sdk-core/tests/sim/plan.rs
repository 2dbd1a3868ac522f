//! What a seed decides before its run: the mix it belongs to, the network's fault rates,
//! the scripted faults and the app's traffic; and the session tunables of the simulation.

use std::ops::RangeBounds;
use std::time::Duration;

use meridian::backoff::Backoff;
use meridian::session::SessionConfig;

use super::region::RegionBug;

/// `usize`s drawn the same on every target, so that a seed is the same run natively and on
/// wasm32: fastrand's own `Rng::usize` draws from 32 bits where `usize` is 32 bits wide and
/// from 64 bits elsewhere. This draws as fastrand does on 64-bit targets.
pub trait Pick {
    /// A `usize` in `range`, the same on every target.
    fn pick(&mut self, range: impl RangeBounds<usize>) -> usize;
}

impl Pick for fastrand::Rng {
    fn pick(&mut self, range: impl RangeBounds<usize>) -> usize {
        let wide = |bound: std::ops::Bound<&usize>| bound.map(|&n| n as u64);
        let n = self.u64((wide(range.start_bound()), wide(range.end_bound())));
        usize::try_from(n).expect("drawn within a usize range")
    }
}

/// A family of scenarios: which kinds of trouble the region may have.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Its name, in the summary line.
    pub name: &'static str,
    /// The region keeps only the newest few messages per space.
    pub retention: bool,
    /// Region restarts may lose the region's state.
    pub state_loss: bool,
    /// A deliberately broken region.
    pub bug: Option<RegionBug>,
    /// A deliberately broken session (its message events distorted on the way to the app).
    pub tamper: Option<Tamper>,
    /// Apps join a space again without waiting for the region to confirm their leave
    /// (else they wait, and leave again until it does).
    pub eager_rejoin: bool,
}

/// What a deliberately broken session does to its message events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Loses the first delivery of every 7th seq.
    DropSome,
    /// Delivers every 5th seq twice.
    RepeatSome,
}

/// How a region stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// Socket.IO DISCONNECT, then an orderly close of every socket.
    Graceful,
    /// The process dies: every socket is reset.
    Crash,
    /// The machine vanishes: the sockets go silent (half-open on the client's side).
    Vanish,
}

/// Something that goes wrong on purpose, at a scripted time.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// The region restarts, keeping its store or losing it, and is down for `down_ms`.
    RegionRestart {
        /// Whether the store survives.
        keep_state: bool,
        /// How long it is down.
        down_ms: u64,
        /// How it stops.
        stop: Stop,
    },
    /// The region is back.
    RegionUp,
    /// A client process dies, and starts again after `down_ms`.
    ClientCrash {
        /// Which client.
        client: usize,
        /// How long it stays down.
        down_ms: u64,
    },
    /// The client process starts again.
    ClientBoot {
        /// Which client.
        client: usize,
    },
    /// A device loses its network for `ms`.
    Offline {
        /// Which client.
        client: usize,
        /// For how long.
        ms: u64,
    },
    /// The network is back.
    Online {
        /// Which client.
        client: usize,
    },
    /// A device switches networks: its sockets go silent, the platform reports "online".
    Switch {
        /// Which client.
        client: usize,
    },
    /// A random open connection is reset.
    Reset,
    /// A client process is frozen for `ms` (a phone app in the background): it handles
    /// nothing meanwhile, frames wait in its socket buffers, its timers fire late.
    Suspend {
        /// Which client.
        client: usize,
        /// For how long.
        ms: u64,
    },
}

/// Everything one seed decides before the run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Clients.
    pub clients: usize,
    /// Spaces (every client joins every space).
    pub spaces: usize,
    /// Sends per client per space.
    pub sends: usize,
    /// How long faults are injected, in ms.
    pub chaos_ms: u64,
    /// Base one-way latency, ms.
    pub latency: u64,
    /// Latency jitter, ms.
    pub jitter: u64,
    /// Per frame: chance of a delay spike (100..1500 ms, everything behind it waits too).
    pub p_delay: f64,
    /// Per frame: chance it is overtaken by later frames.
    pub p_reorder: f64,
    /// Per frame from the region: chance it is delivered twice.
    pub p_dup: f64,
    /// Per frame: chance it is lost (and its connection with it).
    pub p_drop: f64,
    /// Per connection attempt: chance it is refused.
    pub p_refuse: f64,
    /// The region's retention window, if any.
    pub retention: Option<usize>,
    /// The scripted faults.
    pub script: Vec<(u64, Fault)>,
    /// The app of `client` leaves `space` at `at` and joins it again `away_ms` later:
    /// (at, client, space, away_ms).
    pub leaves: Vec<(u64, usize, usize, u64)>,
    /// Whether apps join a space again without waiting for the region to confirm their
    /// leave (see [`Mix::eager_rejoin`]).
    pub eager_rejoin: bool,
}

impl Plan {
    /// The plan of `seed` in `mix`.
    pub fn draw(seed: u64, mix: &Mix) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let clients = 3;
        let chaos_ms = 12_000;
        let mut rate = |max: f64| {
            if rng.f64() < 0.7 {
                rng.f64() * max
            } else {
                0.0
            }
        };
        let (p_delay, p_reorder, p_dup, p_drop, p_refuse) =
            (rate(0.03), rate(0.05), rate(0.05), rate(0.01), rate(0.3));
        let mut script = Vec::new();
        let when = |rng: &mut fastrand::Rng| rng.u64(1_000..chaos_ms - 2_000);
        let restarts = if mix.state_loss {
            rng.pick(1..=2)
        } else {
            rng.pick(0..=2)
        };
        for i in 0..restarts {
            let keep_state = !mix.state_loss || (i > 0 && rng.bool());
            let stop = match rng.pick(0..3) {
                0 => Stop::Graceful,
                1 => Stop::Crash,
                _ => Stop::Vanish,
            };
            let fault = Fault::RegionRestart {
                keep_state,
                down_ms: rng.u64(100..=3_000),
                stop,
            };
            script.push((when(&mut rng), fault));
        }
        for _ in 0..rng.pick(0..=3) {
            let fault = Fault::ClientCrash {
                client: rng.pick(0..clients),
                down_ms: rng.u64(0..=2_000),
            };
            script.push((when(&mut rng), fault));
        }
        for _ in 0..rng.pick(0..=3) {
            let fault = Fault::Offline {
                client: rng.pick(0..clients),
                ms: rng.u64(200..=6_000),
            };
            script.push((when(&mut rng), fault));
        }
        for _ in 0..rng.pick(0..=2) {
            let fault = Fault::Switch {
                client: rng.pick(0..clients),
            };
            script.push((when(&mut rng), fault));
        }
        for _ in 0..rng.pick(0..=4) {
            script.push((when(&mut rng), Fault::Reset));
        }
        for _ in 0..rng.pick(0..=2) {
            let fault = Fault::Suspend {
                client: rng.pick(0..clients),
                ms: rng.u64(300..=8_000),
            };
            script.push((when(&mut rng), fault));
        }
        script.sort_by_key(|(t, _)| *t);
        let leaves = (0..rng.pick(0..=2))
            .map(|_| {
                (
                    when(&mut rng),
                    rng.pick(0..clients),
                    rng.pick(0..2),
                    rng.u64(0..=3_000),
                )
            })
            .collect();
        Self {
            clients,
            spaces: 2,
            sends: rng.pick(5..=10),
            chaos_ms,
            latency: rng.u64(2..=40),
            jitter: rng.u64(0..=40),
            p_delay,
            p_reorder,
            p_dup,
            p_drop,
            p_refuse,
            retention: mix.retention.then(|| rng.pick(3..=12)),
            script,
            leaves,
            eager_rejoin: mix.eager_rejoin,
        }
    }
}

/// The session tunables of the simulation: short, so that a run takes seconds of
/// simulated time.
pub fn session_config() -> SessionConfig {
    SessionConfig {
        connect_timeout: Duration::from_secs(2),
        heartbeat_grace: Duration::from_secs(1),
        request_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        ack_timeout: Duration::from_secs(3),
        gap_timeout: Duration::from_millis(500),
        backoff: Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        },
    }
}
