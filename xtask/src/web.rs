//! The web package: `cargo xtask dist web` and what it needs installed.
//!
//! Builds `sdk-wasm` for wasm32 with the size-tuned `wasm-release` profile, runs the
//! wasm-bindgen CLI (pinned to the crate's exact version) and wasm-opt (npm `binaryen`),
//! compiles the TypeScript layer, and reports the wasm's size raw and gzipped against the
//! budget.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Failure, Run, Step, WASM_TARGET, capture, repo_root};

/// The size budget for the gzipped wasm of the whole SDK (bytes; 150 KB), which
/// `cargo xtask test` enforces. It measured 149.6 KB on 2026-12-03 (271.1 KB before the
/// size work; "Size" in bindings/ts/README.md has the steps and where the bytes go).
pub const GZIP_BUDGET_BYTES: u64 = 150 * 1000;

/// The bundle's own target folder: its standard library is compiled with different flags
/// from the wasm test builds', so sharing `target/` would rebuild both each time.
fn size_build_dir() -> PathBuf {
    repo_root().join("target/wasm-size")
}

/// The release build of `sdk-wasm`, tuned for size. Besides the `wasm-release` profile
/// (`opt-level = "z"`, fat LTO, one codegen unit), the standard library is compiled from
/// source (the toolchain's `rust-src`) with the same settings and with
/// - `optimize_for_size`: std's own smaller variants of sorting, formatting and the like;
/// - `panic = immediate-abort`: a panic traps at once, without formatting a message or
///   unwinding machinery (the web build already had `panic = "abort"` and no panic hook);
/// - `location-detail=none`: no file names and line numbers kept for panics;
/// - `fmt-debug=none`: `Debug` implementations print nothing (-3.8 KB gzipped). Nothing
///   the web bundle shows uses `Debug`: its errors are written with `Display`, its logging
///   is compiled out (`tracing`'s `max_level_off` in sdk-wasm), and a panic aborts without
///   a message. The wasm tests are built without it.
///
/// And `sha2_backend_soft = "compact"`, the sha2 crate's documented setting for round loops
/// that are not unrolled (-4.5 KB gzipped): SHA-256 and SHA-512 only run when a federation
/// document is verified and inside HPKE's key schedule, where a few microseconds don't
/// show.
///
/// The first four are unstable options, enabled with `RUSTC_BOOTSTRAP=1` on the same stable
/// toolchain that builds and tests everything else: no second toolchain to install and
/// keep in step, and they change only how std is compiled and how a panic ends, not what
/// the code means. Together they take about 23 KB off the gzipped wasm (271 to 248 KB).
fn size_tuned_build(variant: Variant) -> Step {
    let target_dir = variant.target_dir();
    let mut args = vec![
        "build",
        "-p",
        "meridian-wasm",
        "--target",
        WASM_TARGET,
        "--profile",
        "wasm-release",
        "-Zbuild-std=std,panic_abort",
        "-Zbuild-std-features=optimize_for_size",
    ];
    let mut rustflags = String::from(
        "-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none \
         --cfg sha2_backend_soft=\"compact\"",
    );
    match variant {
        Variant::Default => rustflags.push_str(" -Zfmt-debug=none"),
        // Logs print their fields with `Debug`: kept, and `quiet` (logs compiled out) off.
        Variant::Debug => args.push("--no-default-features"),
    }
    Step::cargo(variant.build_name(), &args)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTFLAGS", &rustflags)
        .env("CARGO_TARGET_DIR", &target_dir.to_string_lossy())
}

/// The two builds of the wasm the package ships.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// `wasm/`: what `@meridian/sdk` loads; logging compiled out; within the budget.
    Default,
    /// `wasm-debug/`: what `@meridian/sdk/debug` loads; the core's logs kept.
    Debug,
}

impl Variant {
    fn build_name(self) -> &'static str {
        match self {
            Self::Default => "wasm build (release, size-tuned, std from source)",
            Self::Debug => "wasm build for @meridian/sdk/debug (logs kept)",
        }
    }

    /// The package folder it goes to.
    fn dir(self) -> &'static str {
        match self {
            Self::Default => "wasm",
            Self::Debug => "wasm-debug",
        }
    }

    /// Its own target folder: the flags differ, and sharing one would rebuild each time.
    fn target_dir(self) -> PathBuf {
        match self {
            Self::Default => size_build_dir(),
            Self::Debug => repo_root().join("target/wasm-size-debug"),
        }
    }
}

/// The package's folder.
pub fn package_dir() -> PathBuf {
    repo_root().join("bindings/ts")
}

/// Where `cargo install` puts the tools the web build uses: inside the repository
/// (`target/`), so that nothing is cached outside it.
pub fn tools_dir() -> PathBuf {
    repo_root().join("target/tools")
}

fn wasm_bindgen_bin() -> PathBuf {
    tools_dir().join("bin/wasm-bindgen")
}

/// The wasm-bindgen-test runner installed with the CLI.
pub fn test_runner_bin() -> PathBuf {
    tools_dir().join("bin/wasm-bindgen-test-runner")
}

/// The `wasm-bindgen` version sdk-wasm pins (`wasm-bindgen = "=X"` in its Cargo.toml):
/// the CLI must be exactly this version or the generated glue won't match.
pub fn pinned_wasm_bindgen() -> Result<String, String> {
    let manifest = repo_root().join("sdk-wasm/Cargo.toml");
    let text = fs::read_to_string(&manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    text.lines()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("wasm-bindgen = \"=")?;
            Some(rest.split('"').next()?.to_owned())
        })
        .ok_or_else(|| format!("{} pins no wasm-bindgen version", manifest.display()))
}

/// Installs the pinned wasm-bindgen CLI (and its test runner) unless present.
pub fn ensure_wasm_bindgen(run: &mut Run) -> Result<(), Failure> {
    let version = pinned_wasm_bindgen().map_err(|e| run.fail("wasm-bindgen CLI", e))?;
    let installed = capture(&wasm_bindgen_bin().to_string_lossy(), &["--version"])
        .is_ok_and(|out| out.split_whitespace().nth(1) == Some(version.as_str()));
    let root = tools_dir();
    let root = root.to_string_lossy();
    // No --locked: the CLI's own lockfile pins a crate the registry no longer has.
    run.ensure(
        &format!("wasm-bindgen CLI {version}"),
        installed,
        Step::cargo(
            "wasm-bindgen CLI (a few minutes, once)",
            &[
                "install",
                "wasm-bindgen-cli",
                "--version",
                &version,
                "--root",
                &root,
                "--force",
            ],
        ),
    )
}

/// Builds one variant of the wasm into its package folder (wasm-bindgen, then wasm-opt).
fn build_wasm(run: &mut Run, variant: Variant) -> Result<PathBuf, Failure> {
    let pkg = package_dir();
    run.step(&size_tuned_build(variant))?;
    let built = variant
        .target_dir()
        .join("wasm32-unknown-unknown/wasm-release/meridian_wasm.wasm");
    let out = pkg.join(variant.dir());
    let _ = fs::remove_dir_all(&out);
    run.step(&Step::new(
        "wasm-bindgen",
        &wasm_bindgen_bin().to_string_lossy(),
        &[
            "--target",
            "web",
            "--out-dir",
            &out.to_string_lossy(),
            &built.to_string_lossy(),
        ],
    ))?;
    let wasm = out.join("meridian_wasm_bg.wasm");
    let wasm_opt = pkg.join("node_modules/binaryen/bin/wasm-opt");
    let wasm_arg = wasm.to_string_lossy();
    // -Oz for size; the features wasm-bindgen's output uses; names and producers dropped.
    //
    // `--one-caller-inline-max-function-size 20`: by default wasm-opt inlines every
    // function that has a single caller, whatever its size. That saves a few call
    // instructions, but the inlined bodies then live inside a few huge functions with
    // hundreds of locals, where the same code is written with different local numbers
    // each time, and gzip finds fewer repeats. Kept apart (beyond 20 instructions), the
    // raw wasm grows by about 1% and the gzipped one shrinks by about 8% (173.3 to
    // 159.6 KB, measured on 2026-11-23 over 2 to 200; 20 was the smallest). Only
    // functions are kept apart; what runs is the same.
    run.step(&Step::new(
        "wasm-opt",
        &wasm_opt.to_string_lossy(),
        &[
            "-Oz",
            "--one-caller-inline-max-function-size",
            "20",
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-mutable-globals",
            "--enable-reference-types",
            "--enable-multivalue",
            "--strip-debug",
            "--strip-producers",
            &wasm_arg,
            "-o",
            &wasm_arg,
        ],
    ))?;
    Ok(wasm)
}

/// `cargo xtask dist web`: builds the npm package in `bindings/ts/` (both wasm builds) and
/// reports their sizes. With `enforce`, fails when the default build's gzipped wasm is over
/// [`GZIP_BUDGET_BYTES`].
pub fn dist(run: &mut Run, enforce: bool) -> Result<(), Failure> {
    ensure_wasm_bindgen(run)?;
    let pkg = package_dir();
    let wasm = build_wasm(run, Variant::Default)?;
    let debug = build_wasm(run, Variant::Debug)?;
    run.step(&Step::new("TypeScript build", "npm", &["run", "build"]).in_dir(&pkg))?;
    // The package ships the repository's license (npm packs a LICENSE at its root).
    fs::copy(repo_root().join("LICENSE"), pkg.join("LICENSE"))
        .map_err(|e| run.fail("package LICENSE", e))?;
    let raw = fs::metadata(&wasm)
        .map_err(|e| run.fail("wasm size", format!("{}: {e}", wasm.display())))?
        .len();
    let gzipped = gzip_size(&wasm).map_err(|e| run.fail("wasm size", e))?;
    let within = if gzipped <= GZIP_BUDGET_BYTES {
        "within"
    } else {
        "OVER"
    };
    run.note(&format!(
        "wasm size: {} raw, {} gzipped ({within} the {} budget)",
        kb(raw),
        kb(gzipped),
        kb(GZIP_BUDGET_BYTES),
    ));
    let debug_gzipped = gzip_size(&debug).map_err(|e| run.fail("wasm size", e))?;
    run.note(&format!(
        "wasm size of @meridian/sdk/debug (logs kept, no budget): {} gzipped",
        kb(debug_gzipped),
    ));
    if enforce && gzipped > GZIP_BUDGET_BYTES {
        return Err(run.fail(
            "wasm size budget",
            format!(
                "the gzipped wasm is {}, over the {} budget",
                kb(gzipped),
                kb(GZIP_BUDGET_BYTES)
            ),
        ));
    }
    Ok(())
}

/// The wasm of the last `dist`: (raw, gzipped) bytes.
pub fn built_wasm_sizes() -> Result<(u64, u64), String> {
    let wasm = package_dir().join("wasm/meridian_wasm_bg.wasm");
    let raw = fs::metadata(&wasm)
        .map_err(|e| format!("{}: {e}", wasm.display()))?
        .len();
    Ok((raw, gzip_size(&wasm)?))
}

fn kb(bytes: u64) -> String {
    format!("{:.1} KB", bytes as f64 / 1000.0)
}

/// The size of `path` gzipped at level 9 (what a web server's static gzip sends).
fn gzip_size(path: &Path) -> Result<u64, String> {
    let out = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run gzip: {e}"))?;
    if !out.status.success() {
        return Err(format!("gzip failed ({})", out.status));
    }
    Ok(out.stdout.len() as u64)
}
