//! Project automation, run as `cargo xtask <command>` from anywhere in the workspace.
//!
//! - `setup`: installs what the tests need (Rust target and components, the npm packages of
//!   the interop server); quick and quiet when everything is already there.
//! - `test`: `setup`, then every check CI runs, in order, stopping at the first failure.
//! - `dist mobile`: the release `meridian-ffi` library and the Kotlin and Swift sources
//!   uniffi generates from it, in `bindings/kotlin-swift/`, and the React Native module
//!   uniffi-bindgen-react-native generates, in `bindings/react-native/`.
//! - `react-native`: the React Native module's C++ compiled and linked against JSI, its
//!   TypeScript API run in Node against the devserver.
//! - `bench`: the benchmarks side by side (BENCHMARKS.md).
//! - `dist web`: the npm package in `bindings/ts/` (wasm-bindgen, wasm-opt, TypeScript),
//!   with the wasm's size against its budget.
//!
//! Standard library only, so that it builds in seconds on a fresh machine.

// A command-line tool: stdout is where it reports.
#![allow(clippy::print_stdout)]

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

mod bench;
mod mobile;
mod web;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  setup   install what the tests need (wasm32 target, rustfmt, clippy, interop npm packages)
  test    setup, then fmt, clippy, wasm32 checks, all tests, the quickstart; stops at the first failure
  dist web  build the npm package (bindings/ts) and report the wasm's size
  dist mobile  build the native library and regenerate the Kotlin, Swift and React Native sources
  react-native  compile the React Native module's C++ against JSI and run its TypeScript in Node
  bench   the benchmarks side by side; writes BENCHMARKS.md, bench/results.json, bench/results.svg";

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The quickstart example proves it ran end to end by printing a line starting with this.
const QUICKSTART_OK: &str = "quickstart ok:";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["setup"] => Run::new("setup").finish(setup),
        ["test"] => Run::new("test").finish(|run| {
            setup(run)?;
            test_steps().iter().try_for_each(|step| run.step(step))
        }),
        ["dist", "web"] => Run::new("dist web").finish(|run| {
            setup(run)?;
            web::dist(run, false)
        }),
        ["dist", "mobile"] => Run::new("dist mobile").finish(mobile::dist),
        // What `test` runs: the React Native module's C++ compiled, its TypeScript in Node.
        ["react-native"] => Run::new("react-native").finish(mobile::react_native),
        ["bench"] => Run::new("bench").finish(|run| bench::bench(run, false)),
        // What `test` runs: the same with few messages and one run; it checks that the suite
        // works, measures nothing, and writes its report under target/bench/quick/.
        ["bench", "--quick"] => Run::new("bench").finish(|run| bench::bench(run, true)),
        // What `test` runs: the committed Kotlin and Swift sources are what the library makes.
        ["dist", "mobile", "--check"] => Run::new("dist mobile").finish(mobile::check),
        // What `test` runs: the same build, failing when the wasm is over its size budget.
        ["dist", "web", "--enforce-budget"] => {
            Run::new("dist web").finish(|run| web::dist(run, true))
        }
        ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The checks of `cargo xtask test`, in the order they run (after `setup`).
fn test_steps() -> Vec<Step> {
    vec![
        Step::cargo("format", &["fmt", "--all", "--check"]),
        Step::cargo(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        // Clippy for the web build too: the browser driver and the facade only exist there.
        Step::cargo(
            "clippy: wasm32",
            &[
                "clippy",
                "-p",
                "meridian",
                "-p",
                "meridian-wasm",
                "--no-default-features",
                "--all-targets",
                "--target",
                WASM_TARGET,
                "--",
                "-D",
                "warnings",
            ],
        ),
        core_tests_on_wasm("core tests on wasm32 in Node"),
        // webdriver.json (in sdk-core/) keeps Chromium headless and off the network.
        core_tests_on_wasm("core tests on wasm32 in headless Chromium")
            .env("CHROMEDRIVER", CHROMEDRIVER)
            .env("WASM_BINDGEN_USE_BROWSER", "1")
            .env("WASM_BINDGEN_TEST_TIMEOUT", "120"),
        // The IndexedDB store and the browser driver, in the browser.
        Step::cargo(
            "web build tests in headless Chromium",
            &["test", "-p", "meridian-wasm", "--target", WASM_TARGET],
        )
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            &web::test_runner_bin().to_string_lossy(),
        )
        .env("CHROMEDRIVER", CHROMEDRIVER)
        .env("WASM_BINDGEN_USE_BROWSER", "1")
        .env("WASM_BINDGEN_TEST_TIMEOUT", "120"),
        Step::cargo(
            "web package (npm) and its size budget",
            &["xtask", "dist", "web", "--enforce-budget"],
        ),
        Step::cargo(
            "mobile bindings match the library",
            &["xtask", "dist", "mobile", "--check"],
        ),
        Step::cargo("devserver binary", &["build", "-p", "devserver"]),
        Step::new("web package tests in Node", "npm", &["test"]).in_dir(&web::package_dir()),
        Step::cargo(
            "React Native: C++ against JSI, TypeScript in Node",
            &["xtask", "react-native"],
        ),
        // playwright-core driving Debian's Chromium: the package as each bundler builds it
        // (Vite dev and build, webpack, esbuild, Rollup), examples/web and examples/web-react
        // in two browser contexts; screenshots land in bindings/ts/test-results/.
        Step::new(
            "web package under bundlers, web demos in Chromium (Playwright)",
            "npm",
            &["run", "test:browser"],
        )
        .in_dir(&web::package_dir())
        .env("MERIDIAN_CHROMIUM", CHROMIUM),
        // The Kotlin bindings on the JVM (JNA), Maven's repository kept in target/m2.
        Step::new(
            "Kotlin on the JVM (Maven, JUnit)",
            "mvn",
            &[
                "-B",
                "-q",
                "test",
                &format!(
                    "-Dmaven.repo.local={}",
                    repo_root().join("target/m2").display()
                ),
            ],
        )
        .in_dir(&repo_root().join("bindings/kotlin-swift/kotlin")),
        // The Swift bindings compiled and run by Swift 6 in a Debian trixie chroot kept in
        // target/ (no swiftc for Debian 12), against the devserver; root, like CI.
        Step::new(
            "Swift (XCTest in a trixie chroot)",
            "bash",
            &["bindings/kotlin-swift/swift/run-tests.sh"],
        ),
        // Node missing must fail CI, not skip the interop tests.
        // --show-output: the suites' summary lines (simulation, faults, residency audit)
        // belong in the log even when their tests pass.
        Step::cargo("tests", &["test", "--workspace", "--", "--show-output"])
            .env("MERIDIAN_REQUIRE_NODE", "1"),
        // The benchmark suite end to end, with few messages and one run: it works on this
        // machine (its figures mean nothing; the report goes to target/bench/quick/).
        Step::cargo(
            "benchmark suite, quick (cargo xtask bench --quick)",
            &["xtask", "bench", "--quick"],
        ),
        // With no system certificate store in reach: the SDK carries its own roots, as a
        // minimal container or an Android app needs.
        Step::cargo("quickstart", &["run", "--example", "quickstart"])
            .env("SSL_CERT_FILE", "/nonexistent")
            .env("SSL_CERT_DIR", "/nonexistent")
            .expect_stdout_line(QUICKSTART_OK),
    ]
}

/// The core's own tests, built for wasm32 and run by wasm-bindgen's runner (in Node unless
/// told to use a browser).
fn core_tests_on_wasm(name: &str) -> Step {
    Step::cargo(
        name,
        &[
            "test",
            "-p",
            "meridian",
            "--no-default-features",
            "--target",
            WASM_TARGET,
        ],
    )
    .env(
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
        &web::test_runner_bin().to_string_lossy(),
    )
}

/// `cargo xtask setup`: each requirement is checked first and installed only when missing.
pub(crate) fn setup(run: &mut Run) -> Result<(), Failure> {
    let installed_targets = capture("rustup", &["target", "list", "--installed"]).map_err(|e| {
        run.fail(
            "wasm32 target",
            format!("{e}; Meridian builds with a rustup toolchain (https://rustup.rs)"),
        )
    })?;
    run.ensure(
        &format!("{WASM_TARGET} target"),
        installed_targets.lines().any(|l| l.trim() == WASM_TARGET),
        // Downloads the target's standard library: can take a few minutes.
        Step::new("rust target", "rustup", &["target", "add", WASM_TARGET]),
    )?;

    let installed_components = capture("rustup", &["component", "list", "--installed"])
        .map_err(|e| run.fail("rust components", e))?;
    // rust-src: the web bundle compiles the standard library itself (see `web::dist`).
    let missing: Vec<&str> = ["rustfmt", "clippy", "rust-src"]
        .into_iter()
        .filter(|c| !installed_components.lines().any(|l| l.starts_with(c)))
        .collect();
    let add: Vec<&str> = ["component", "add"]
        .iter()
        .copied()
        .chain(missing.iter().copied())
        .collect();
    run.ensure(
        "rustfmt, clippy and rust-src",
        missing.is_empty(),
        Step::new("rust components", "rustup", &add),
    )?;

    let node = capture("node", &["--version"]).map_err(|e| {
        run.fail(
            "node",
            format!(
                "Node.js is required (the interop tests run the official socket.io server) \
                 but {e}. Install Node.js 18 or newer, e.g. `apt-get install nodejs npm`."
            ),
        )
    })?;
    let npm = capture("npm", &["--version"]).map_err(|e| {
        run.fail(
            "npm",
            format!("npm is required next to Node.js {} but {e}", node.trim()),
        )
    })?;
    run.note(&format!(
        "node {}, npm {}: present",
        node.trim(),
        npm.trim()
    ));

    ensure_npm_packages(run, "tests/interop")?;
    ensure_npm_packages(run, "bindings/ts")?;
    // The bundlers the package is built with in its tests (Vite, webpack, esbuild, Rollup).
    ensure_npm_packages(run, "bindings/ts/fixtures")?;
    // The React demo, built by its own Vite in the browser tests.
    ensure_npm_packages(run, "examples/web-react")?;
    ensure_npm_packages(run, "bindings/react-native")?;
    web::ensure_wasm_bindgen(run)?;
    ensure_chromium(run)
}

/// `npm ci` (or `npm install` before a lockfile exists) in `dir`, unless `node_modules`
/// was installed from the same package.json and lockfile.
pub(crate) fn ensure_npm_packages(run: &mut Run, dir: &str) -> Result<(), Failure> {
    let path = repo_root().join(dir);
    let stamp = NpmStamp::of(&path);
    let install: &[&str] = if stamp.locked {
        &["ci", "--no-audit", "--no-fund"]
    } else {
        &["install", "--no-audit", "--no-fund"]
    };
    run.ensure(
        &format!("{dir} npm packages"),
        stamp.is_current(),
        Step::new(&format!("npm packages in {dir}"), "npm", install).in_dir(&path),
    )?;
    // Read again: `npm install` may just have written the lockfile.
    let stamp = NpmStamp::of(&path);
    stamp.record().map_err(|e| {
        run.fail(
            "npm packages",
            format!("cannot write {}: {e}", stamp.path().display()),
        )
    })
}

/// The browser tests use Debian's Chromium and ChromeDriver (Playwright's own browser
/// downloads are not used).
pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";
pub(crate) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn ensure_chromium(run: &mut Run) -> Result<(), Failure> {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if present {
        run.note("chromium and chromedriver: already installed");
        return Ok(());
    }
    run.step(&Step::new(
        "apt package lists",
        "apt-get",
        &["update", "-q"],
    ))?;
    run.step(
        &Step::new(
            "chromium and chromedriver",
            "apt-get",
            &[
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "chromium",
                "chromium-driver",
            ],
        )
        .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

// ---------------------------------------------------------------------------------------
// Steps and runs
// ---------------------------------------------------------------------------------------

/// One command, run from the repository root unless told otherwise.
struct Step {
    name: String,
    program: String,
    args: Vec<String>,
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// When set, the step also fails unless its stdout has a line starting with this.
    stdout_line: Option<&'static str>,
}

impl Step {
    fn new(name: &str, program: &str, args: &[&str]) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            dir: repo_root(),
            env: Vec::new(),
            stdout_line: None,
        }
    }

    fn cargo(name: &str, args: &[&str]) -> Self {
        Self::new(name, "cargo", args)
    }

    fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    fn in_dir(mut self, dir: &Path) -> Self {
        self.dir = dir.to_owned();
        self
    }

    fn expect_stdout_line(mut self, prefix: &'static str) -> Self {
        self.stdout_line = Some(prefix);
        self
    }

    /// The command as a person would type it.
    fn command_line(&self) -> String {
        let env = self.env.iter().map(|(k, v)| format!("{k}={v} "));
        let args = self.args.iter().map(|a| format!(" {a}"));
        env.chain([self.program.clone()]).chain(args).collect()
    }

    fn execute(&self) -> Result<(), String> {
        let program = match self.program.as_str() {
            // The cargo that runs this xtask, not whichever is first on PATH.
            "cargo" => std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")),
            other => OsString::from(other),
        };
        let mut command = Command::new(program);
        command
            .args(&self.args)
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if self.stdout_line.is_some() {
            command.stdout(Stdio::piped());
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", self.program))?;
        let found = match (self.stdout_line, child.stdout.take()) {
            (Some(prefix), Some(stdout)) => Some(tee_and_find(stdout, prefix)),
            _ => None,
        };
        let status = child
            .wait()
            .map_err(|e| format!("waiting for `{}`: {e}", self.program))?;
        if !status.success() {
            return Err(format!("`{}` failed ({status})", self.command_line()));
        }
        match (self.stdout_line, found) {
            (Some(prefix), Some(false)) => {
                Err(format!("no line of its output starts with `{prefix}`"))
            }
            _ => Ok(()),
        }
    }
}

/// Copies `output` to our stdout as it comes; tells whether a line started with `prefix`.
fn tee_and_find(output: impl std::io::Read, prefix: &str) -> bool {
    let mut found = false;
    let mut out = std::io::stdout();
    for line in BufReader::new(output).split(b'\n') {
        let Ok(line) = line else { break };
        found |= line.starts_with(prefix.as_bytes());
        let _ = out.write_all(&line);
        let _ = out.write_all(b"\n");
    }
    found
}

/// Why a run stopped.
struct Failure;

/// A sequence of steps: banners, timings, the first failure, the summary.
struct Run {
    name: &'static str,
    started: Instant,
    timings: Vec<(String, Duration)>,
    failed: Option<String>,
}

impl Run {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            started: Instant::now(),
            timings: Vec::new(),
            failed: None,
        }
    }

    fn step(&mut self, step: &Step) -> Result<(), Failure> {
        println!("\n==> {}: {}", step.name, step.command_line());
        let started = Instant::now();
        let result = step.execute();
        let took = started.elapsed();
        self.timings.push((step.name.clone(), took));
        match result {
            Ok(()) => {
                println!("<== {}: ok in {}", step.name, secs(took));
                Ok(())
            }
            Err(why) => Err(self.fail(&step.name, format!("{why}, after {}", secs(took)))),
        }
    }

    /// Runs `step` unless `satisfied`.
    fn ensure(&mut self, what: &str, satisfied: bool, step: Step) -> Result<(), Failure> {
        if satisfied {
            self.note(&format!("{what}: already installed"));
            Ok(())
        } else {
            self.step(&step)
        }
    }

    fn note(&self, line: &str) {
        println!("--- {line}");
    }

    fn fail(&mut self, step: &str, why: impl std::fmt::Display) -> Failure {
        println!("\n!!! {step} FAILED: {why}");
        self.failed = Some(step.to_owned());
        Failure
    }

    /// Runs `body`, then prints the summary; the exit code tells CI how it went.
    fn finish(mut self, body: impl FnOnce(&mut Self) -> Result<(), Failure>) -> ExitCode {
        let result = body(&mut self);
        let total = secs(self.started.elapsed());
        if !self.timings.is_empty() {
            println!("\nsteps:");
            for (name, took) in &self.timings {
                println!("  {:>8}  {name}", secs(*took));
            }
        }
        if result.is_ok() {
            println!("\nxtask {}: ok in {total}", self.name);
            ExitCode::SUCCESS
        } else {
            let at = self.failed.as_deref().unwrap_or("?");
            println!("\nxtask {}: FAILED at `{at}` after {total}", self.name);
            ExitCode::FAILURE
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The workspace root (this crate lives in `<root>/xtask`).
fn repo_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_owned()
}

/// Runs a quick query command and returns its stdout.
fn capture(program: &str, args: &[&str]) -> Result<String, String> {
    capture_in(Path::new("."), program, args)
}

/// [`capture`], run in `dir`.
fn capture_in(dir: &Path, program: &str, args: &[&str]) -> Result<String, String> {
    let shown = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("`{shown}` cannot be run ({e})"))?;
    if !out.status.success() {
        return Err(format!("`{shown}` failed ({})", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What `node_modules` was installed from: package.json and package-lock.json, verbatim.
/// Kept in `node_modules/` so that `npm ci` (which empties it) also forgets it.
struct NpmStamp {
    dir: PathBuf,
    locked: bool,
    manifests: Vec<u8>,
}

impl NpmStamp {
    fn of(dir: &Path) -> Self {
        let lock = fs::read(dir.join("package-lock.json")).ok();
        let mut manifests = fs::read(dir.join("package.json")).unwrap_or_default();
        manifests.extend_from_slice(b"\n");
        manifests.extend(lock.iter().flatten());
        Self {
            dir: dir.to_owned(),
            locked: lock.is_some(),
            manifests,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("node_modules/.meridian-installed-from")
    }

    fn is_current(&self) -> bool {
        fs::read(self.path()).is_ok_and(|recorded| recorded == self.manifests)
    }

    fn record(&self) -> std::io::Result<()> {
        if self.is_current() {
            return Ok(());
        }
        fs::write(self.path(), &self.manifests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_line_that_starts_with_the_prefix_anywhere_in_the_output() {
        let out = b"starting\nquickstart ok: 3 messages delivered\nbye\n";
        assert!(tee_and_find(&out[..], QUICKSTART_OK));
    }

    #[test]
    fn the_prefix_in_the_middle_of_a_line_does_not_count() {
        let out = b"starting\nnot quickstart ok: nope\n";
        assert!(!tee_and_find(&out[..], QUICKSTART_OK));
    }

    #[test]
    fn shows_commands_as_typed() {
        let step = Step::cargo("tests", &["test", "--workspace"]).env("A", "1");
        assert_eq!(step.command_line(), "A=1 cargo test --workspace");
    }

    #[test]
    fn the_test_pipeline_requires_node_and_checks_the_quickstart_output() {
        let steps = test_steps();
        assert!(steps.iter().any(|s| {
            s.env
                .iter()
                .any(|(k, v)| k == "MERIDIAN_REQUIRE_NODE" && v == "1")
        }));
        assert_eq!(
            steps.last().and_then(|s| s.stdout_line),
            Some(QUICKSTART_OK)
        );
    }
}
