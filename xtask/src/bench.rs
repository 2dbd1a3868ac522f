//! `cargo xtask bench`: the benchmarks side by side (BENCHMARKS.md).
//!
//! Builds in release, measures what the suite can't (the npm package's gzipped wasm, the
//! stripped mobile library, the criterion microbenchmarks), then runs `meridian-bench
//! suite`, which pins the servers and the clients to their cores and writes the report.

use std::fs;

use crate::{Failure, Run, Step, ensure_npm_packages, repo_root, web};

/// `cargo xtask bench [--quick]`.
pub fn bench(run: &mut Run, quick: bool) -> Result<(), Failure> {
    crate::setup(run)?;
    ensure_npm_packages(run, "bench/node")?;
    web::dist(run, false)?;
    let (wasm_raw, wasm_gzip) = web::built_wasm_sizes().map_err(|e| run.fail("wasm size", e))?;

    run.step(&Step::cargo(
        "mobile library (release)",
        &["build", "-p", "meridian-ffi", "--lib", "--release"],
    ))?;
    let lib = repo_root().join("target/release/libmeridian_ffi.so");
    let scratch = repo_root().join("target/bench");
    fs::create_dir_all(&scratch).map_err(|e| run.fail("bench", e))?;
    let stripped = scratch.join("libmeridian_ffi.stripped.so");
    run.step(&Step::new(
        "strip a copy of the mobile library",
        "strip",
        &[
            "--strip-all",
            "-o",
            &stripped.to_string_lossy(),
            &lib.to_string_lossy(),
        ],
    ))?;
    let size = |path: &std::path::Path| fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let extra = format!(
        r#"{{"wasm_gzip_bytes":{wasm_gzip},"wasm_raw_bytes":{wasm_raw},"mobile_lib_bytes":{},"mobile_lib_stripped_bytes":{}}}"#,
        size(&lib),
        size(&stripped)
    );

    let criterion = repo_root().join("target/criterion");
    let _ = fs::remove_dir_all(&criterion);
    let timing: &[&str] = if quick {
        &["--warm-up-time", "0.2", "--measurement-time", "0.5"]
    } else {
        &["--warm-up-time", "1", "--measurement-time", "3"]
    };
    let mut args = vec!["bench", "-p", "meridian", "--bench", "micro", "--"];
    args.extend_from_slice(timing);
    run.step(&Step::cargo("microbenchmarks (criterion)", &args))?;

    run.step(&Step::cargo(
        "devserver and benchmark clients (release)",
        &[
            "build",
            "--release",
            "-p",
            "devserver",
            "-p",
            "meridian-bench",
        ],
    ))?;
    let suite = repo_root().join("target/release/meridian-bench");
    let criterion = criterion.to_string_lossy();
    let mut args = vec!["suite", "--extra", &extra, "--criterion", &criterion];
    if quick {
        args.extend(["--quick", "--runs", "1"]);
    }
    run.step(&Step::new(
        "the suite (servers on core 0, clients on core 1)",
        &suite.to_string_lossy(),
        &args,
    ))
}
