//! `meridian-bench`: Meridian's benchmarks side by side (see BENCHMARKS.md).
//!
//! - `meridian-bench suite [--runs N] [--quick] [--extra <json>] [--criterion <dir>]`:
//!   every scenario, then the
//!   report (BENCHMARKS.md, bench/results.json, bench/results.svg). `cargo xtask bench`
//!   builds everything in release, measures the sizes and the microbenchmarks, then runs
//!   this.
//! - `meridian-bench client meridian|raw '<ClientSpec json>'`: one client run (the suite
//!   starts these pinned to their core).
//! - `meridian-bench senders '<json>'`: the fan-in senders; `probe '<json>'`: one message
//!   to each target's space (the scale scenario).

// A command-line tool: stdout is where it reports.
#![allow(clippy::print_stdout)]

mod meter;
mod procfs;
mod raw;
mod report;
mod sdk;
mod servers;
mod spec;
mod suite;

use std::path::PathBuf;
use std::process::ExitCode;

use spec::{ClientSpec, Mode};

const USAGE: &str =
    "usage: meridian-bench suite [--runs N] [--quick] [--extra <json>] [--criterion <dir>]
       meridian-bench client meridian|raw '<ClientSpec json>'
       meridian-bench senders '<ClientSpec json>'";

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    // One thread for everything, the app's code and the SDK's tasks alike, as each client
    // process is pinned to one core: with a worker pool, the app's calls would cross
    // threads (a futex wake and a context switch each) where a raw client's never do.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))
}

/// A spec given inline, or as `@<file>` (a spec of 10,000 targets is longer than one
/// command-line argument may be).
fn parse_spec(arg: &str) -> Result<ClientSpec, String> {
    let json = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
        None => arg.to_owned(),
    };
    serde_json::from_str(&json).map_err(|e| format!("the client spec: {e}"))
}

fn run(args: &[String]) -> Result<(), String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["client", kind, json] => {
            let spec = parse_spec(json)?;
            let result = runtime()?.block_on(async {
                match *kind {
                    "meridian" => sdk::run(&spec).await,
                    "raw" => raw::run(&spec).await,
                    other => Err(format!("no client {other:?}")),
                }
            })?;
            let json = serde_json::to_string(&result).map_err(|e| e.to_string())?;
            println!("RESULT {json}");
            Ok(())
        }
        ["senders", json] => {
            let spec = parse_spec(json)?;
            let Mode::Idle { targets, .. } = &spec.mode else {
                return Err("senders take the targets of an idle spec".into());
            };
            let tokens: Vec<String> = (0..servers::SENDERS)
                .map(|i| format!("{}-token", servers::sender(i)))
                .collect();
            runtime()?.block_on(raw::senders(targets, &tokens, spec::BODY_BYTES))
        }
        ["probe", json] => {
            let spec = parse_spec(json)?;
            let Mode::Idle { targets, .. } = &spec.mode else {
                return Err("the probe takes the targets of an idle spec".into());
            };
            runtime()?.block_on(raw::probe(targets, &spec.token))
        }
        ["suite", rest @ ..] => {
            let mut runs = 3;
            let mut quick = false;
            let mut extra = report::Extra::default();
            let mut it = rest.iter();
            while let Some(flag) = it.next() {
                match *flag {
                    "--quick" => quick = true,
                    "--runs" => {
                        runs = it
                            .next()
                            .and_then(|n| n.parse().ok())
                            .filter(|n| *n > 0)
                            .ok_or("--runs needs a positive count")?;
                    }
                    "--extra" => {
                        let json = it.next().ok_or("--extra needs a JSON object")?;
                        let micro = std::mem::take(&mut extra.micro_ns);
                        extra = report::Extra::from_json(json)?;
                        extra.micro_ns.extend(micro);
                    }
                    "--criterion" => {
                        let dir = it.next().ok_or("--criterion needs a folder")?;
                        extra.read_criterion(std::path::Path::new(dir))?;
                    }
                    other => return Err(format!("unknown flag {other:?}\n{USAGE}")),
                }
            }
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map(PathBuf::from)
                .ok_or("no repository root")?;
            let env = suite::env(&root, runs, quick, extra)?;
            let all = runtime_for_suite()?.block_on(suite::run(&env))?;
            let out = if quick {
                report::Outputs::scratch(&root, &root.join("target/bench/quick"))
            } else {
                report::Outputs::repository(&root)
            };
            report::write(&out, &all, &env.extra, runs)?;
            println!(
                "\nwrote {}, {} and {}",
                out.markdown.display(),
                out.json.display(),
                out.svg.display()
            );
            Ok(())
        }
        _ => Err(USAGE.into()),
    }
}

fn runtime_for_suite() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("meridian-bench: {why}");
            ExitCode::FAILURE
        }
    }
}
