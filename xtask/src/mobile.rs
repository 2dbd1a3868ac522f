//! The mobile bindings: `cargo xtask dist mobile`, the check that what is committed is what
//! the library generates, and the React Native checks (`cargo xtask react-native`).
//!
//! uniffi generates the Kotlin and Swift sources from the built `meridian-ffi` library
//! (library mode, with `sdk-ffi/uniffi.toml` naming the packages), and
//! uniffi-bindgen-react-native (ubrn) the React Native turbo module: TypeScript, C++ (JSI)
//! and the Android and iOS glue. They are committed under `bindings/`, so that an app can
//! read and vendor them without a Rust build.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Failure, Run, Step, capture_in, ensure_npm_packages, repo_root};

/// Where the generated sources live, per language, relative to the repository root.
const KOTLIN_DIR: &str = "bindings/kotlin-swift/kotlin/src/main/kotlin";
const SWIFT_DIR: &str = "bindings/kotlin-swift/swift/Sources/MeridianFFI";
const SWIFT_C_DIR: &str = "bindings/kotlin-swift/swift/Sources/MeridianFFIFFI";

/// The React Native package.
const RN_DIR: &str = "bindings/react-native";
/// What ubrn writes in it, relative to it. The bindings (`generate jsi bindings`): folders that
/// are wholly generated...
const RN_GENERATED_DIRS: [&str; 2] = ["src/generated", "cpp/generated"];
/// ...and the turbo module (`generate jsi turbo-module`): files among ours. ubrn's templates
/// also write the podspec, `android/build.gradle`, the manifest and the ProGuard rules; those
/// are ours, and `noOverwrite` in ubrn.config.yaml keeps ubrn off them.
const RN_GENERATED_FILES: [&str; 10] = [
    "android/CMakeLists.txt",
    "android/cpp-adapter.cpp",
    "android/src/main/java/dev/meridian/reactnative/MeridianReactNativeModule.kt",
    "android/src/main/java/dev/meridian/reactnative/MeridianReactNativePackage.kt",
    "cpp/meridian-react-native.cpp",
    "cpp/meridian-react-native.h",
    "ios/MeridianReactNative.h",
    "ios/MeridianReactNative.mm",
    "src/NativeMeridianReactNative.ts",
    "src/bindings.tsx",
];
/// Ours, which the generator reads: the manifest and the config (copied outside the
/// repository), and `android/build.gradle`, from which ubrn decides to generate the module in
/// Kotlin (the file mentions Kotlin) rather than Java.
const RN_GENERATOR_INPUTS: [&str; 3] = ["package.json", "ubrn.config.yaml", "android/build.gradle"];
/// What `npm pack` must ship, relative to the package: the manifest, the licence, the built
/// JavaScript and declarations (`bob build`), the sources Metro and the codegen read, the
/// podspec and what it compiles, the Gradle build and what it compiles.
const RN_PACKED: [&str; 24] = [
    "package.json",
    "LICENSE",
    "README.md",
    "lib/module/index.js",
    "lib/module/bindings.js",
    "lib/module/meridian.js",
    "lib/typescript/src/index.d.ts",
    "src/index.tsx",
    "src/bindings.tsx",
    "src/meridian.ts",
    "src/NativeMeridianReactNative.ts",
    "src/generated/meridian_ffi.ts",
    "MeridianReactNative.podspec",
    "ios/MeridianReactNative.mm",
    "android/build.gradle",
    "android/gradle.properties",
    "android/src/main/AndroidManifest.xml",
    "android/proguard-rules.pro",
    "android/CMakeLists.txt",
    "android/cpp-adapter.cpp",
    "android/src/main/java/dev/meridian/reactnative/MeridianReactNativeModule.kt",
    "cpp/generated/meridian_ffi.cpp",
    "cpp/meridian-react-native.cpp",
    "ubrn.config.yaml",
];
/// What it must not ship: installed packages, the Node build of the tests, Gradle and CMake
/// output, the example app, the tests and their configuration.
const RN_NOT_PACKED: [&str; 9] = [
    "node_modules/",
    "build-node/",
    "android/build/",
    "android/.cxx/",
    "android/.gradle/",
    "example/",
    "test/",
    ".npmrc",
    "tsconfig",
];
/// The React Native release whose JSI headers the generated C++ is compiled against.
const JSI_HEADERS_FROM: &str = "react-native@0.88.1";
/// The ubrn CLI is built from the npm package's sources into here.
const UBRN_TARGET_DIR: &str = "target/ubrn";

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
    generate_react_native(run, &lib, out)
}

fn ubrn_bin() -> PathBuf {
    repo_root()
        .join(UBRN_TARGET_DIR)
        .join("debug/uniffi-bindgen-react-native")
}

/// Builds the ubrn CLI of the package's pinned `uniffi-bindgen-react-native` (its npm package
/// ships the Rust sources); a no-op once built.
fn build_ubrn(run: &mut Run) -> Result<(), Failure> {
    ensure_npm_packages(run, RN_DIR)?;
    let manifest =
        format!("{RN_DIR}/node_modules/uniffi-bindgen-react-native/crates/ubrn_cli/Cargo.toml");
    run.step(
        &Step::cargo(
            "uniffi-bindgen-react-native CLI (a few minutes, once)",
            &[
                "build",
                "--quiet",
                "--manifest-path",
                &manifest,
                "--target-dir",
                UBRN_TARGET_DIR,
            ],
        )
        // Nobody debugs the generator here: no debug info makes it smaller and quicker.
        .env("CARGO_PROFILE_DEV_DEBUG", "0"),
    )
}

/// Generates the React Native bindings and turbo module from `lib` into `out`'s
/// `bindings/react-native`, replacing only what ubrn writes. Outside the repository, the
/// generator's inputs are copied there first (the config pointing at this workspace).
fn generate_react_native(run: &mut Run, lib: &str, out: &Path) -> Result<(), Failure> {
    let package = out.join(RN_DIR);
    let fail = |run: &mut Run, e: std::io::Error| run.fail("react native", e);
    for dir in RN_GENERATED_DIRS {
        let _ = fs::remove_dir_all(package.join(dir));
    }
    for file in RN_GENERATED_FILES {
        let _ = fs::remove_file(package.join(file));
    }
    if out != repo_root() {
        let source = repo_root().join(RN_DIR);
        for input in RN_GENERATOR_INPUTS {
            let (from, to) = (source.join(input), package.join(input));
            let text = fs::read_to_string(&from).map_err(|e| fail(run, e))?;
            let text = if input == "ubrn.config.yaml" {
                let workspace = format!("directory: {}", repo_root().display());
                text.replace("directory: ../..", &workspace)
            } else {
                text
            };
            if let Some(dir) = to.parent() {
                fs::create_dir_all(dir).map_err(|e| fail(run, e))?;
            }
            fs::write(&to, text).map_err(|e| fail(run, e))?;
        }
    }
    let ubrn = ubrn_bin();
    let ubrn = ubrn.to_string_lossy();
    let ts = package.join("src/generated");
    let cpp = package.join("cpp/generated");
    // From the workspace root: ubrn reads the crate's metadata with `cargo metadata`.
    run.step(&Step::new(
        "generate react native bindings (TypeScript, C++)",
        &ubrn,
        &[
            "generate",
            "jsi",
            "bindings",
            "--library",
            "--no-format",
            "--ts-dir",
            &ts.to_string_lossy(),
            "--cpp-dir",
            &cpp.to_string_lossy(),
            lib,
        ],
    ))?;
    run.step(
        &Step::new(
            "generate react native turbo module",
            &ubrn,
            &[
                "generate",
                "jsi",
                "turbo-module",
                "--config",
                "ubrn.config.yaml",
                "meridian_ffi",
            ],
        )
        .in_dir(&package),
    )
}

/// `cargo xtask dist mobile`: the release library and the sources generated from it.
pub fn dist(run: &mut Run) -> Result<(), Failure> {
    build_ubrn(run)?;
    build(run, "release")?;
    generate(run, "release", &repo_root())?;
    let lib = library("release");
    let size = fs::metadata(&lib).map(|m| m.len()).unwrap_or(0);
    run.note(&format!(
        "{} ({:.1} MB, not stripped), the Kotlin and Swift sources in bindings/kotlin-swift and the React Native module in {RN_DIR}",
        lib.display(),
        size as f64 / 1e6
    ));
    Ok(())
}

/// Fails when the committed sources differ from what the current library generates.
pub fn check(run: &mut Run) -> Result<(), Failure> {
    build_ubrn(run)?;
    build(run, "debug")?;
    let scratch = repo_root().join("target/mobile-check");
    let _ = fs::remove_dir_all(&scratch);
    generate(run, "debug", &scratch)?;
    // ubrn must have written exactly the files listed as generated: one more would overwrite
    // ours in `cargo xtask dist mobile` and escape this check, one fewer is stale.
    let fresh = scratch.join(RN_DIR);
    let written: Vec<PathBuf> = files(&fresh)
        .into_iter()
        .filter(|f| {
            !RN_GENERATOR_INPUTS
                .iter()
                .any(|input| f == Path::new(input))
        })
        .collect();
    let is_generated = |f: &Path| {
        RN_GENERATED_FILES.iter().any(|g| f == Path::new(g))
            || RN_GENERATED_DIRS.iter().any(|d| f.starts_with(d))
    };
    if let Some(file) = written.iter().find(|f| !is_generated(f)) {
        return Err(run.fail(
            "mobile bindings",
            format!(
                "ubrn writes {RN_DIR}/{}, which is neither in RN_GENERATED_FILES (xtask/src/mobile.rs) nor under noOverwrite in ubrn.config.yaml",
                file.display()
            ),
        ));
    }
    if let Some(file) = RN_GENERATED_FILES
        .iter()
        .find(|g| !written.iter().any(|f| f == Path::new(g)))
    {
        return Err(run.fail(
            "mobile bindings",
            format!(
                "ubrn no longer writes {RN_DIR}/{file}: take it out of RN_GENERATED_FILES (xtask/src/mobile.rs), and out of the repository unless it is now ours"
            ),
        ));
    }
    let rn_dirs = RN_GENERATED_DIRS.map(|d| format!("{RN_DIR}/{d}"));
    let dirs = [KOTLIN_DIR, SWIFT_DIR, SWIFT_C_DIR]
        .into_iter()
        .chain(rn_dirs.iter().map(String::as_str));
    let differs = dirs
        .filter_map(|dir| first_difference(&scratch.join(dir), &repo_root().join(dir)))
        .chain(RN_GENERATED_FILES.iter().filter_map(|file| {
            let (fresh, committed) = (fresh.join(file), repo_root().join(RN_DIR).join(file));
            (fs::read(&fresh).ok() != fs::read(&committed).ok()).then_some(committed)
        }))
        .next();
    if let Some(file) = differs {
        return Err(run.fail(
            "mobile bindings",
            format!(
                "{} differs from what the library generates: run `cargo xtask dist mobile` and commit",
                file.display()
            ),
        ));
    }
    run.note("the committed Kotlin, Swift and React Native sources match the library");
    Ok(())
}

/// `cargo xtask react-native`: what can be checked of the React Native module on a machine
/// without Hermes, the Android NDK or Xcode.
///
/// - The generated C++ (bindings and turbo-module installer) compiled with the flags of the
///   generated CMakeLists against the JSI headers of a React Native release, and linked with
///   the Rust library refusing undefined symbols: every FFI function the C++ calls exists.
/// - The TypeScript API run for real in Node: the same generator's N-API flavour of the
///   bindings, loading the debug library through `@ubjs/node`, with `src/meridian.ts` on top,
///   against the devserver (`bindings/react-native/test/`). A test there checks that the
///   declarations of both flavours are the same.
/// - The npm package: `bob build` (lib/), then `npm pack --dry-run` ships what an app needs
///   and nothing it must not.
pub fn react_native(run: &mut Run) -> Result<(), Failure> {
    build_ubrn(run)?;
    build(run, "debug")?;
    compile_cpp(run)?;
    node_tests(run)?;
    npm_package(run)
}

/// Builds lib/ with react-native-builder-bob and checks the tarball `npm pack` would make.
fn npm_package(run: &mut Run) -> Result<(), Failure> {
    let package = repo_root().join(RN_DIR);
    let _ = fs::remove_dir_all(package.join("lib"));
    run.step(
        &Step::new("react native package (bob build)", "npm", &["run", "build"]).in_dir(&package),
    )?;
    let what = "react native package (npm pack --dry-run)";
    println!("\n==> {what}");
    // Scripts off: `prepare` would build again, and its output would land amid the JSON.
    let listing = capture_in(
        &package,
        "npm",
        &["pack", "--dry-run", "--json", "--ignore-scripts"],
    )
    .map_err(|e| run.fail(what, e))?;
    let packed = packed_paths(&listing);
    if packed.is_empty() {
        return Err(run.fail(what, "npm pack --json listed no files"));
    }
    let missing: Vec<&str> = RN_PACKED
        .into_iter()
        .filter(|need| !packed.iter().any(|p| p == need))
        .collect();
    let unwanted: Vec<&str> = packed
        .iter()
        .map(String::as_str)
        .filter(|p| {
            RN_NOT_PACKED.iter().any(|no| p.starts_with(no))
                || p.split('/')
                    .any(|part| part == "node_modules" || part == "build-node")
        })
        .collect();
    if !missing.is_empty() || !unwanted.is_empty() {
        let mut why = format!("the tarball of {RN_DIR} ({} files)", packed.len());
        if !missing.is_empty() {
            why.push_str(&format!(" lacks {}", missing.join(", ")));
        }
        if !unwanted.is_empty() {
            let and = if missing.is_empty() { "" } else { " and" };
            let shown = unwanted.len().min(10);
            why.push_str(&format!("{and} ships {}", unwanted[..shown].join(", ")));
            if unwanted.len() > shown {
                why.push_str(&format!(" and {} more", unwanted.len() - shown));
            }
        }
        why.push_str(": fix `files` in its package.json (or the build that makes them)");
        return Err(run.fail(what, why));
    }
    run.note(&format!(
        "npm pack: {} files, with the {} an app needs and none of {}",
        packed.len(),
        RN_PACKED.len(),
        RN_NOT_PACKED.join(" ")
    ));
    Ok(())
}

/// The `path` of every file in the JSON of `npm pack --json` (npm writes it one key a line;
/// paths in a package hold no quote or backslash).
fn packed_paths(json: &str) -> Vec<String> {
    json.lines()
        .filter_map(|line| line.trim().strip_prefix("\"path\": \""))
        .filter_map(|rest| rest.split_once('"').map(|(path, _)| path.to_owned()))
        .collect()
}

fn compile_cpp(run: &mut Run) -> Result<(), Failure> {
    let root = repo_root();
    let headers = root.join("target/rn-headers");
    let react_common = headers.join("package/ReactCommon");
    if !react_common.join("jsi/jsi/jsi.h").exists() {
        let _ = fs::remove_dir_all(&headers);
        fs::create_dir_all(&headers).map_err(|e| run.fail("JSI headers", e))?;
        run.step(
            &Step::new(
                "JSI headers (npm pack)",
                "npm",
                &["pack", "--silent", JSI_HEADERS_FROM],
            )
            .in_dir(&headers),
        )?;
        let tarball = format!("{}.tgz", JSI_HEADERS_FROM.replace('@', "-"));
        run.step(
            &Step::new(
                "JSI headers (extract)",
                "tar",
                &[
                    "-xzf",
                    &tarball,
                    "package/ReactCommon/jsi/jsi",
                    "package/ReactCommon/callinvoker",
                    "package/ReactCommon/react/cxxstableapi",
                ],
            )
            .in_dir(&headers),
        )?;
    }
    let package = root.join(RN_DIR);
    let out = root.join("target/rn-cpp");
    fs::create_dir_all(&out).map_err(|e| run.fail("react native C++", e))?;
    let includes = [
        package.join("cpp"),
        package.join("cpp/generated"),
        package.join("node_modules/uniffi-bindgen-react-native/cpp/includes"),
        react_common.join("jsi"),
        react_common.join("callinvoker"),
        react_common.clone(),
    ]
    .map(|dir| format!("-I{}", dir.display()));
    let sources = [
        package.join("cpp/generated/meridian_ffi.cpp"),
        package.join("cpp/meridian-react-native.cpp"),
        react_common.join("jsi/jsi/jsi.cpp"),
    ];
    let mut objects = Vec::new();
    for source in &sources {
        let name = source
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let object = out.join(format!("{name}.o"));
        let (source, object_arg) = (source.to_string_lossy(), object.to_string_lossy());
        // The flags of the generated android/CMakeLists.txt.
        let mut args = vec![
            "-std=c++17",
            "-fPIC",
            "-O1",
            "-Wall",
            "-Werror",
            "-fexceptions",
            "-frtti",
            "-c",
        ];
        args.push(&source);
        args.extend(["-o", &object_arg]);
        args.extend(includes.iter().map(String::as_str));
        run.step(&Step::new(
            &format!("compile {name}.cpp (g++)"),
            "g++",
            &args,
        ))?;
        objects.push(object);
    }
    let library = out.join("libmeridian-react-native.so");
    let rust = root.join("target/debug/libmeridian_ffi.a");
    let (library, rust) = (library.to_string_lossy(), rust.to_string_lossy());
    let mut args = vec!["-shared", "-o", &library];
    let objects: Vec<String> = objects
        .iter()
        .map(|o| o.to_string_lossy().into_owned())
        .collect();
    args.extend(objects.iter().map(String::as_str));
    args.extend([&*rust, "-Wl,--no-undefined", "-lpthread", "-ldl", "-lm"]);
    run.step(&Step::new(
        "link with the Rust library, no undefined symbols",
        "g++",
        &args,
    ))
}

fn node_tests(run: &mut Run) -> Result<(), Failure> {
    let package = repo_root().join(RN_DIR);
    let build = package.join("build-node");
    let _ = fs::remove_dir_all(&build);
    let src = build.join("src");
    fs::create_dir_all(&src).map_err(|e| run.fail("react native in Node", e))?;
    let lib = library("debug");
    let ubrn = ubrn_bin();
    run.step(&Step::new(
        "generate the N-API flavour of the bindings",
        &ubrn.to_string_lossy(),
        &[
            "generate",
            "napi",
            "bindings",
            "--library",
            &lib.to_string_lossy(),
            "--lib-absolute",
            "--no-format",
            "--ts-dir",
            &src.join("generated").to_string_lossy(),
        ],
    ))?;
    // The helpers compile against those bindings exactly as against the JSI ones in src/.
    fs::copy(package.join("src/meridian.ts"), src.join("meridian.ts"))
        .and_then(|_| {
            fs::write(
                build.join("package.json"),
                "{ \"type\": \"module\", \"private\": true }\n",
            )
        })
        .map_err(|e| run.fail("react native in Node", e))?;
    run.step(&Step::new("react native TypeScript API in Node", "npm", &["test"]).in_dir(&package))
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
