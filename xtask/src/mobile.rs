//! The mobile bindings: `cargo xtask dist mobile` and the check that what is committed is
//! what the library generates.
//!
//! uniffi generates the Kotlin and Swift sources from the built `meridian-ffi` library
//! (library mode, with `sdk-ffi/uniffi.toml` naming the packages). They are committed under
//! `bindings/kotlin-swift/`, so that an app can read and vendor them without a Rust build.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Failure, Run, Step, repo_root};

/// Where the generated sources live, per language, relative to the repository root.
const KOTLIN_DIR: &str = "bindings/kotlin-swift/kotlin/src/main/kotlin";
const SWIFT_DIR: &str = "bindings/kotlin-swift/swift/Sources/MeridianFFI";
const SWIFT_C_DIR: &str = "bindings/kotlin-swift/swift/Sources/MeridianFFIFFI";

fn bindgen(profile: &str) -> PathBuf {
    repo_root().join(format!("target/{profile}/uniffi-bindgen"))
}

/// The built library of `profile` (`debug` or `release`).
pub fn library(profile: &str) -> PathBuf {
    repo_root().join(format!("target/{profile}/libmeridian_ffi.so"))
}

/// Builds the library and the generator for `profile`.
fn build(run: &mut Run, profile: &str) -> Result<(), Failure> {
    let mut args = vec!["build", "-p", "meridian-ffi", "--lib"];
    let mut tool = vec![
        "build",
        "-p",
        "meridian-ffi",
        "--features",
        "cli",
        "--bin",
        "uniffi-bindgen",
    ];
    if profile == "release" {
        args.push("--release");
        tool.push("--release");
    }
    run.step(&Step::cargo(
        &format!("meridian-ffi library ({profile})"),
        &args,
    ))?;
    run.step(&Step::cargo("uniffi-bindgen", &tool))
}

/// Generates Kotlin and Swift from `lib` into `out` (laid out as in the repository).
fn generate(run: &mut Run, profile: &str, out: &Path) -> Result<(), Failure> {
    let lib = library(profile);
    let lib = lib.to_string_lossy();
    let tool = bindgen(profile);
    let tool = tool.to_string_lossy();
    let kotlin = out.join(KOTLIN_DIR);
    let swift = out.join(SWIFT_DIR);
    for (language, dir) in [("kotlin", &kotlin), ("swift", &swift)] {
        let _ = fs::remove_dir_all(dir);
        let dir = dir.to_string_lossy();
        run.step(&Step::new(
            &format!("generate {language}"),
            &tool,
            &[
                "generate",
                "--library",
                &lib,
                "--language",
                language,
                "--no-format",
                "--out-dir",
                &dir,
            ],
        ))?;
    }
    // Swift's C half (header and module map) goes in a target of its own, as SwiftPM wants.
    let c_dir = out.join(SWIFT_C_DIR);
    fs::create_dir_all(&c_dir).map_err(|e| run.fail("swift module", e))?;
    for (from, to) in [
        ("MeridianFFIFFI.h", "MeridianFFIFFI.h"),
        ("MeridianFFIFFI.modulemap", "module.modulemap"),
    ] {
        fs::rename(swift.join(from), c_dir.join(to))
            .map_err(|e| run.fail("swift module", format!("{from}: {e}")))?;
    }
    Ok(())
}

/// `cargo xtask dist mobile`: the release library and the sources generated from it.
pub fn dist(run: &mut Run) -> Result<(), Failure> {
    build(run, "release")?;
    generate(run, "release", &repo_root())?;
    let lib = library("release");
    let size = fs::metadata(&lib).map(|m| m.len()).unwrap_or(0);
    run.note(&format!(
        "{} ({:.1} MB, not stripped) and the Kotlin and Swift sources in bindings/kotlin-swift",
        lib.display(),
        size as f64 / 1e6
    ));
    Ok(())
}

/// Fails when the committed sources differ from what the current library generates.
pub fn check(run: &mut Run) -> Result<(), Failure> {
    build(run, "debug")?;
    let scratch = repo_root().join("target/mobile-check");
    let _ = fs::remove_dir_all(&scratch);
    generate(run, "debug", &scratch)?;
    for dir in [KOTLIN_DIR, SWIFT_DIR, SWIFT_C_DIR] {
        let (fresh, committed) = (scratch.join(dir), repo_root().join(dir));
        if let Some(file) = first_difference(&fresh, &committed) {
            return Err(run.fail(
                "mobile bindings",
                format!(
                    "{} differs from what the library generates: run `cargo xtask dist mobile` and commit",
                    file.display()
                ),
            ));
        }
    }
    run.note("the committed Kotlin and Swift sources match the library");
    Ok(())
}

/// The first file that is in one tree and not the other, or differs between them.
fn first_difference(a: &Path, b: &Path) -> Option<PathBuf> {
    let (files_a, files_b) = (files(a), files(b));
    if files_a != files_b {
        return files_a
            .iter()
            .find(|f| !files_b.contains(f))
            .or_else(|| files_b.iter().find(|f| !files_a.contains(f)))
            .map(|f| b.join(f))
            .or_else(|| Some(b.to_owned()));
    }
    files_a
        .into_iter()
        .find(|f| fs::read(a.join(f)).ok() != fs::read(b.join(f)).ok())
        .map(|f| b.join(f))
}

/// Every file under `root`, relative to it, sorted.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(root) {
                found.push(relative.to_owned());
            }
        }
    }
    found.sort();
    found
}
