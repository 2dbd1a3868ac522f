//! Deterministic simulation of the SDK's sans-IO state machines (`RegionSession`, `Outbox`)
//! against a simulated region, over a seeded fake network with a fake clock.
//!
//! Every run is decided by its seed and its mix: the faults (delay spikes, duplicates,
//! reordering, lost frames that break their connection by a reset or a half-open link,
//! connection resets, region restarts with and without state, client restarts from what
//! they persisted, frozen client processes, offline periods, network switches), their
//! timing, and the traffic (sends, leaves and rejoins). The story of a run and the
//! invariants are in `sim/world.rs` and `sim/check.rs`.
//!
//! - `cargo test -p meridian --test simulation`: seeds 0..2000 in each mix, on every core.
//! - On wasm32 (Node or a browser, through `wasm-bindgen-test-runner`): seeds 0..100 in each
//!   mix, on one thread; the environment variables below are native only.
//! - `MERIDIAN_SIM_SEEDS=<n>`: seeds 0..n instead.
//! - `MERIDIAN_SIM_SEED=<n>`: seed n only, with a trace of every event; `MERIDIAN_SIM_MIX=<name>`
//!   narrows it to one mix (`faults`, `retention`, `state_loss`):
//!
//! ```text
//! MERIDIAN_SIM_SEED=<n> MERIDIAN_SIM_MIX=<mix> cargo test -p meridian --test simulation -- --nocapture
//! ```
//!
//! A failure prints that command for its first seed.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

mod sim;

use std::collections::BTreeMap;

use meridian_test_macros::meridian_test;
use sim::{Mix, RegionBug, Report, Stats, Tamper, run};

/// Seeds per mix: fewer on wasm32, where a run is slower and has one thread.
#[cfg(not(target_arch = "wasm32"))]
const DEFAULT_SEEDS: u64 = 2000;
#[cfg(target_arch = "wasm32")]
const DEFAULT_SEEDS: u64 = 100;

/// Prints a line of the report: to stderr natively, to the console on wasm32 (where stderr
/// goes nowhere), which the test runner shows for a failing test or with `--nocapture`.
macro_rules! say {
    ($($arg:tt)*) => {{
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!($($arg)*);
        #[cfg(target_arch = "wasm32")]
        wasm_bindgen_test::console_log!($($arg)*);
    }};
}

/// No state is ever lost: no continuity event may happen.
const FAULTS: Mix = Mix {
    name: "faults",
    retention: false,
    state_loss: false,
    bug: None,
    tamper: None,
    eager_rejoin: false,
};

/// The region keeps a small retention window: clients that fall behind it are told.
const RETENTION: Mix = Mix {
    name: "retention",
    retention: true,
    state_loss: false,
    bug: None,
    tamper: None,
    eager_rejoin: false,
};

/// Region restarts may lose the region's whole history.
const STATE_LOSS: Mix = Mix {
    name: "state_loss",
    retention: false,
    state_loss: true,
    bug: None,
    tamper: None,
    eager_rejoin: false,
};

const MIXES: [Mix; 3] = [FAULTS, RETENTION, STATE_LOSS];

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={value:?} is not a number"),
    }
}

/// The outcome of many seeds of one mix.
#[derive(Default)]
struct Summary {
    total: Stats,
    /// Failing seeds, with what failed.
    failed: BTreeMap<u64, Vec<String>>,
}

impl Summary {
    fn add(&mut self, seed: u64, report: &Report) {
        self.total.add(&report.stats);
        if !report.ok() {
            self.failed.insert(seed, report.failures.clone());
        }
    }
}

/// Runs seeds `0..seeds` of every mix on every core. Each run is deterministic on its own,
/// so the outcome does not depend on the threads.
#[cfg(not(target_arch = "wasm32"))]
fn run_all(mixes: &[Mix], seeds: u64) -> Vec<Summary> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    let jobs = seeds * mixes.len() as u64;
    let next = AtomicU64::new(0);
    let summaries: Vec<Mutex<Summary>> = mixes.iter().map(|_| Mutex::default()).collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let job = next.fetch_add(1, Ordering::Relaxed);
                    if job >= jobs {
                        break;
                    }
                    let (seed, m) = (
                        job / mixes.len() as u64,
                        (job % mixes.len() as u64) as usize,
                    );
                    let report = run(seed, &mixes[m], false);
                    summaries[m].lock().unwrap().add(seed, &report);
                }
            });
        }
    });
    summaries
        .into_iter()
        .map(|s| s.into_inner().unwrap())
        .collect()
}

/// Runs seeds `0..seeds` of every mix, in the same order, on the one thread wasm32 has.
#[cfg(target_arch = "wasm32")]
fn run_all(mixes: &[Mix], seeds: u64) -> Vec<Summary> {
    let mut summaries: Vec<Summary> = mixes.iter().map(|_| Summary::default()).collect();
    for seed in 0..seeds {
        for (mix, summary) in mixes.iter().zip(&mut summaries) {
            summary.add(seed, &run(seed, mix, false));
        }
    }
    summaries
}

/// Starts timing a whole simulation, for its summary line: the returned closure gives the
/// seconds since.
#[cfg(not(target_arch = "wasm32"))]
fn stopwatch() -> impl FnOnce() -> Option<f64> {
    let started = std::time::Instant::now();
    move || Some(started.elapsed().as_secs_f64())
}

/// wasm32-unknown-unknown has no clock in std (`std::time::Instant::now` panics there): no
/// time is reported.
#[cfg(target_arch = "wasm32")]
fn stopwatch() -> impl FnOnce() -> Option<f64> {
    || None
}

/// Replays one seed with a trace, in every mix or in `MERIDIAN_SIM_MIX`.
fn replay(seed: u64, mixes: &[Mix]) {
    let only = std::env::var("MERIDIAN_SIM_MIX").ok();
    let mut failed = Vec::new();
    for mix in mixes
        .iter()
        .filter(|m| only.as_deref().is_none_or(|o| o == m.name))
    {
        say!("===== simulation[{}] seed {seed} =====", mix.name);
        let report = run(seed, mix, true);
        say!("simulation[{}]: seed={seed} {}", mix.name, report.stats);
        for f in &report.failures {
            say!("  {f}");
        }
        if !report.ok() {
            failed.push(mix.name);
        }
    }
    if let Some(name) = only.filter(|o| mixes.iter().all(|m| m.name != o)) {
        say!("(no mix named {name} in this test)");
    }
    assert!(
        failed.is_empty(),
        "seed {seed} failed in {failed:?} (see above)"
    );
}

/// Runs every mix and fails with the seeds that broke an invariant.
fn simulate(mixes: &[Mix], replay_args: &str) {
    if let Some(seed) = env_u64("MERIDIAN_SIM_SEED") {
        return replay(seed, mixes);
    }
    let seeds = env_u64("MERIDIAN_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let elapsed = stopwatch();
    let summaries = run_all(mixes, seeds);
    let wall = elapsed();
    let mut message = String::new();
    for (mix, summary) in mixes.iter().zip(&summaries) {
        say!(
            "simulation[{}]: seeds={seeds} failed_seeds={} {}",
            mix.name,
            summary.failed.len(),
            summary.total
        );
        // Enough seeds make sends wait behind one in flight: they must go as batches.
        if seeds >= 100 && summary.total.sent > 0 && summary.total.batched == 0 {
            message.push_str(&format!(
                "simulation[{}]: no send ever went in a batch\n",
                mix.name
            ));
        }
        if summary.failed.is_empty() {
            continue;
        }
        message.push_str(&format!(
            "simulation[{}]: {} of {seeds} seeds broke an invariant\n",
            mix.name,
            summary.failed.len()
        ));
        for (seed, failures) in summary.failed.iter().take(5) {
            message.push_str(&format!("seed {seed}:\n"));
            for f in failures.iter().take(6) {
                message.push_str(&format!("  {f}\n"));
            }
        }
        if let Some(first) = summary.failed.keys().next() {
            message.push_str(&format!(
                "replay: MERIDIAN_SIM_SEED={first} MERIDIAN_SIM_MIX={} cargo test -p meridian --test simulation {replay_args}\n",
                mix.name
            ));
        }
    }
    let runs = seeds * mixes.len() as u64;
    match wall {
        Some(wall) => say!("simulation: {runs} runs in {wall:.1}s"),
        None => say!("simulation: {runs} runs"),
    }
    assert!(message.is_empty(), "{message}");
}

/// Seeds 0..2000 of every mix (0..100 on wasm32); every invariant must hold.
#[meridian_test]
fn simulation() {
    simulate(&MIXES, "-- --nocapture");
}

/// Apps that leave a space and join it again without waiting for the leave's answer. A
/// region that handles a socket's events out of order (modelled by reordering) must not
/// apply the leave after the new join: the session holds the join until the leave on the
/// wire is answered.
#[meridian_test]
fn simulation_rejoin_before_the_leave_is_answered() {
    let eager = |mix: Mix, name| Mix {
        name,
        eager_rejoin: true,
        ..mix
    };
    simulate(
        &[
            eager(FAULTS, "eager_rejoin_faults"),
            eager(RETENTION, "eager_rejoin_retention"),
            eager(STATE_LOSS, "eager_rejoin_state_loss"),
        ],
        "simulation_rejoin_before_the_leave_is_answered -- --nocapture",
    );
}

/// The harness can fail: a region or a session that breaks the protocol is caught.
#[meridian_test]
fn a_broken_region_or_session_is_caught() {
    let broken = [
        ("broken_region_no_dedupe", Some(RegionBug::NoDedupe), None),
        ("broken_region_skips_seqs", Some(RegionBug::SkipSeq), None),
        ("broken_session_drops", None, Some(Tamper::DropSome)),
        ("broken_session_repeats", None, Some(Tamper::RepeatSome)),
    ];
    for (name, bug, tamper) in broken {
        let mix = Mix {
            name,
            bug,
            tamper,
            ..FAULTS
        };
        let seeds = 0..10;
        let reports: Vec<Report> = seeds.clone().map(|seed| run(seed, &mix, false)).collect();
        let caught = reports.iter().filter(|r| !r.ok()).count();
        let mut total = Stats::default();
        for r in &reports {
            total.add(&r.stats);
        }
        say!(
            "simulation[{name}]: caught in {caught} of {} seeds: lost={} duplicated={} out_of_order={} contract_violations={}",
            seeds.end,
            total.lost,
            total.duplicated,
            total.out_of_order,
            total.contract
        );
        assert!(caught > 0, "{name} went unnoticed in every seed");
    }
}

/// A seed replays exactly: the same counters and failures, run after run.
#[meridian_test]
fn a_seed_replays_identically() {
    for seed in [3, 42, 1932] {
        let first = format!("{:?}", run(seed, &STATE_LOSS, false));
        let again = format!("{:?}", run(seed, &STATE_LOSS, false));
        assert_eq!(first, again, "seed {seed} did not replay identically");
    }
}
