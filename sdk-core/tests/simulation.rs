//! Deterministic simulation of the SDK's sans-IO state machines (`RegionSession`, `Outbox`)
//! against a simulated region, over a seeded fake network with a fake clock.
//!
//! Every run is decided by its seed: the faults (delays, duplicates, reordering, lost frames
//! that break their connection, half-open links, resets, region restarts with and without
//! state, client restarts, offline periods and network switches), their timing, and the
//! traffic. Any failure replays from its seed:
//!
//! ```text
//! MERIDIAN_SIM_SEED=<n> cargo test -p meridian --test simulation <test> -- --nocapture
//! ```
//!
//! `MERIDIAN_SIM_SEEDS=<n>` sets how many seeds each mix runs (default 2000).
//! `MERIDIAN_SIM_STRICT=1` makes the known bugs of the state machines (`KNOWN_BUGS`) fail
//! the runs that hit them, as every other broken invariant does.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

mod sim;

use std::collections::BTreeMap;

use sim::world::KNOWN_BUGS;
use sim::{Mix, RegionBug, Stats, run};

const DEFAULT_SEEDS: u64 = 2000;

/// No state is ever lost: no continuity event may happen.
const FAULTS: Mix = Mix {
    name: "faults",
    retention: false,
    state_loss: false,
    bug: None,
    eager_rejoin: false,
};

/// The region keeps a small retention window: clients that fall behind it get told.
const RETENTION: Mix = Mix {
    name: "retention",
    retention: true,
    state_loss: false,
    bug: None,
    eager_rejoin: false,
};

/// Region restarts may lose the region's whole history.
const STATE_LOSS: Mix = Mix {
    name: "state_loss",
    retention: false,
    state_loss: true,
    bug: None,
    eager_rejoin: false,
};

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={value:?} is not a number"),
    }
}

/// Whether known bugs of the state machines fail the run too.
fn strict() -> bool {
    env_u64("MERIDIAN_SIM_STRICT").is_some_and(|n| n != 0)
}

/// Runs the seeds of `mix` (or the one seed of `MERIDIAN_SIM_SEED`, traced) and fails with
/// the seeds that broke an invariant.
fn simulate(mix: &Mix, test: &str, ignored: bool) {
    let strict = strict();
    if let Some(seed) = env_u64("MERIDIAN_SIM_SEED") {
        let report = run(seed, mix, true);
        eprintln!("simulation[{}]: seed={seed} {}", mix.name, report.stats);
        for (bug, (times, first)) in &report.known {
            eprintln!("  known bug {bug} ({times} times), first: {first}");
        }
        for f in &report.failures {
            eprintln!("  {f}");
        }
        assert!(
            report.ok() && (!strict || report.known.is_empty()),
            "seed {seed} of mix {} failed (see above)",
            mix.name
        );
        return;
    }
    let seeds = env_u64("MERIDIAN_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let started = std::time::Instant::now();
    let mut total = Stats::default();
    let mut failed = Vec::new();
    // Known bug -> (seeds that hit it, the first seed, what happened there).
    let mut known: BTreeMap<&str, (u64, u64, String)> = BTreeMap::new();
    for seed in 0..seeds {
        let report = run(seed, mix, false);
        total.add(&report.stats);
        for (bug, (_, first)) in &report.known {
            known
                .entry(bug)
                .and_modify(|(n, ..)| *n += 1)
                .or_insert_with(|| (1, seed, first.clone()));
        }
        let mut failures = report.failures;
        if strict {
            failures.extend(
                report
                    .known
                    .iter()
                    .map(|(bug, (_, f))| format!("[known bug {bug}] {f}")),
            );
        }
        if !failures.is_empty() {
            failed.push((seed, failures));
        }
    }
    eprintln!(
        "simulation[{}]: seeds={seeds} failed_seeds={} {total} wall={:.1}s",
        mix.name,
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    for (bug, (n, seed, first)) in &known {
        eprintln!(
            "simulation[{}]:   known bug {bug}: {n} seeds (first: seed {seed}: {first})",
            mix.name
        );
    }
    if let Some((first, _)) = failed.first() {
        let mut message = format!(
            "simulation[{}]: {} of {seeds} seeds broke an invariant\n",
            mix.name,
            failed.len()
        );
        for (seed, failures) in failed.iter().take(5) {
            message.push_str(&format!("seed {seed}:\n"));
            for f in failures.iter().take(6) {
                message.push_str(&format!("  {f}\n"));
            }
        }
        message.push_str(&format!(
            "replay: MERIDIAN_SIM_SEED={first} cargo test -p meridian --test simulation {test} -- {}--nocapture",
            if ignored { "--ignored " } else { "" }
        ));
        panic!("{message}");
    }
}

/// The known bugs, listed once (the simulation tolerates them unless strict).
#[test]
fn known_bugs_are_listed() {
    for (name, what) in KNOWN_BUGS {
        eprintln!("known bug {name}: {what}");
    }
    assert!(
        KNOWN_BUGS
            .iter()
            .all(|(n, w)| !n.is_empty() && !w.is_empty())
    );
}

#[test]
fn simulation_faults() {
    simulate(&FAULTS, "simulation_faults", false);
}

#[test]
fn simulation_retention() {
    simulate(&RETENTION, "simulation_retention", false);
}

#[test]
fn simulation_state_loss() {
    simulate(&STATE_LOSS, "simulation_state_loss", false);
}

/// An app that leaves a space and joins it again before the leave was answered. Ignored
/// while the session has this bug: when the link drops before the leave's answer, the next
/// connection writes the new `space:join` first and the stale `space:leave` after it, so the
/// region unsubscribes the socket the session believes joined: its sends to the space are
/// refused for good ("join the space first") and the space's messages stop arriving.
#[test]
#[ignore = "RegionSession re-sends a stale space:leave after the rejoin (reported)"]
fn simulation_rejoin_before_the_leave_is_answered() {
    simulate(
        &Mix {
            name: "eager_rejoin",
            eager_rejoin: true,
            ..FAULTS
        },
        "simulation_rejoin_before_the_leave_is_answered",
        true,
    );
}

/// The harness can fail: a region that breaks the protocol is caught by the invariants.
#[test]
fn a_broken_region_is_caught() {
    for (bug, name) in [
        (RegionBug::NoDedupe, "broken_no_dedupe"),
        (RegionBug::SkipSeq, "broken_skip_seq"),
    ] {
        let mix = Mix {
            name,
            retention: false,
            state_loss: false,
            bug: Some(bug),
            eager_rejoin: false,
        };
        let seeds = 0..10;
        let caught: Vec<u64> = seeds
            .clone()
            .filter(|seed| !run(*seed, &mix, false).ok())
            .collect();
        eprintln!(
            "simulation[{name}]: caught in {} of {} seeds",
            caught.len(),
            seeds.end
        );
        assert!(
            !caught.is_empty(),
            "a region with {bug:?} went unnoticed in every seed"
        );
    }
}
