//! Processes a suite starts: the devserver binary and the `fault-client` binary, each in a
//! guard that kills it with SIGKILL when dropped, so a failing test leaves nothing behind.
//!
//! Owns: finding (and, when missing or older than its sources, building) the devserver
//! binary, which the `meridian-tests` crate can't name through `CARGO_BIN_EXE_*`; starting
//! it and reading its `READY` line; and a line-oriented conversation with a client process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// The root of the cargo workspace (where `Cargo.lock` is).
pub fn workspace_root() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).to_path_buf()
}

/// A fresh, empty directory under the system's temp dir, unique to this process and call.
pub fn scratch_dir(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("meridian-{name}-{}-{nanos}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    dir
}

/// The newest modification time of the files under `dir` (recursively).
fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// The devserver binary of this build (next to the running test executable), built with
/// `cargo build -p devserver` first when it is missing or older than its sources (or the
/// SDK's). `MERIDIAN_DEVSERVER_BIN` overrides the path (and skips any build).
pub fn devserver_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(find_or_build_devserver).clone()
}

fn find_or_build_devserver() -> PathBuf {
    if let Some(path) = std::env::var_os("MERIDIAN_DEVSERVER_BIN") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/devserver
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut profile_dir = exe.parent().expect("the test executable's directory");
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir = profile_dir.parent().expect("the profile directory");
    }
    let binary = profile_dir.join(format!("devserver{}", std::env::consts::EXE_SUFFIX));
    let root = workspace_root();
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    let sources = [
        "devserver/src",
        "devserver/Cargo.toml",
        "sdk-core/src",
        "sdk-core/Cargo.toml",
    ]
    .iter()
    .filter_map(|p| {
        let p = root.join(p);
        if p.is_dir() {
            newest_mtime(&p)
        } else {
            std::fs::metadata(&p).and_then(|m| m.modified()).ok()
        }
    })
    .max();
    let fresh = matches!((built, sources), (Some(b), Some(s)) if b >= s)
        || (built.is_some() && sources.is_none());
    if fresh {
        return binary;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build
        .args(["build", "-p", "devserver", "--bin", "devserver"])
        .current_dir(&root);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            build.arg("--release");
        }
        Some(other) => {
            build.args(["--profile", other]);
        }
    }
    let status = build.status();
    match status {
        Ok(s) if s.success() && binary.exists() => binary,
        // An older binary beats none: say so and go on with it.
        _ if built.is_some() => {
            eprintln!(
                "warning: `cargo build -p devserver` failed ({status:?}); using the older {}",
                binary.display()
            );
            binary
        }
        _ => panic!(
            "the devserver binary {} is missing and `cargo build -p devserver` failed: {status:?}",
            binary.display()
        ),
    }
}

/// Reads a child's stdout line by line into a channel (so the pipe never fills up).
fn lines_of(stdout: tokio::process::ChildStdout) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for the next line starting with `prefix` (skipping others) for at most `timeout`.
async fn line_starting(
    lines: &mut mpsc::UnboundedReceiver<String>,
    prefix: &str,
    timeout: Duration,
    skipped: &mut Vec<String>,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) if line.starts_with(prefix) => return Ok(line),
            Ok(Some(line)) => skipped.push(line),
            Ok(None) => return Err(format!("the process ended before printing {prefix:?}")),
            Err(_) => return Err(format!("no {prefix:?} line within {timeout:?}")),
        }
    }
}

/// The devserver binary, running; killed with SIGKILL when dropped.
pub struct DevserverProcess {
    child: Child,
    directory_url: String,
    regions: BTreeMap<String, String>,
    federation_keys: Vec<meridian::model::FederationKey>,
}

impl std::fmt::Debug for DevserverProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevserverProcess")
            .field("pid", &self.child.id())
            .field("directory_url", &self.directory_url)
            .field("regions", &self.regions)
            .finish()
    }
}

impl DevserverProcess {
    /// Starts the demo federation persisted under `data_dir`, on free ports, and waits
    /// for it to serve.
    pub async fn start(data_dir: &Path) -> DevserverProcess {
        Self::spawn(data_dir, &["--ephemeral-ports".to_string()]).await
    }

    /// Starts it again on `ports` (see [`Self::same_ports`]), with the same data.
    pub async fn restart_on(data_dir: &Path, ports: &[String]) -> DevserverProcess {
        Self::spawn(data_dir, ports).await
    }

    async fn spawn(data_dir: &Path, flags: &[String]) -> DevserverProcess {
        let binary = devserver_binary();
        let mut child = Command::new(&binary)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--ready-line")
            .args(flags)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdout = child.stdout.take().expect("a piped stdout");
        let mut lines = lines_of(stdout);
        let mut skipped = Vec::new();
        let ready = match line_starting(&mut lines, "READY ", Duration::from_secs(30), &mut skipped)
            .await
        {
            Ok(line) => line,
            Err(why) => {
                let _ = child.start_kill();
                panic!("the devserver did not come up: {why}; it printed {skipped:?}");
            }
        };
        // Keep draining what it prints afterwards.
        tokio::spawn(async move { while lines.recv().await.is_some() {} });
        let json: serde_json::Value = serde_json::from_str(&ready["READY ".len()..])
            .unwrap_or_else(|e| panic!("unreadable READY line {ready:?}: {e}"));
        let directory_url = json["directory_url"]
            .as_str()
            .expect("READY names the directory")
            .to_string();
        let regions = json["regions"]
            .as_object()
            .expect("READY lists the regions")
            .iter()
            .map(|(id, url)| (id.clone(), url.as_str().unwrap_or_default().to_string()))
            .collect();
        let federation_keys = serde_json::from_value(json["federation_keys"].clone())
            .expect("READY lists the federation keys to pin");
        DevserverProcess {
            child,
            directory_url,
            regions,
            federation_keys,
        }
    }

    /// The keys clients pin to trust this federation's documents.
    pub fn federation_keys(&self) -> &[meridian::model::FederationKey] {
        &self.federation_keys
    }

    /// The directory's base URL.
    pub fn directory_url(&self) -> &str {
        &self.directory_url
    }

    /// Region id -> socket URL.
    pub fn regions(&self) -> &BTreeMap<String, String> {
        &self.regions
    }

    /// `--port` flags that bring a new process back on this one's ports.
    pub fn same_ports(&self) -> Vec<String> {
        let port = |url: &str| url.rsplit(':').next().unwrap_or_default().to_string();
        let mut flags = vec![
            "--port".to_string(),
            format!("directory={}", port(&self.directory_url)),
        ];
        for (id, url) in &self.regions {
            flags.push("--port".into());
            flags.push(format!("{id}={}", port(url)));
        }
        flags
    }

    /// SIGKILL: no shutdown code runs. Returns once the process is gone.
    pub async fn kill_9(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A client in a process of its own (the `fault-client` binary), driven line by line on
/// stdin/stdout; killed with SIGKILL when dropped.
pub struct ClientProcess {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    /// Lines read past while looking for others.
    pub skipped: Vec<String>,
}

impl std::fmt::Debug for ClientProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientProcess")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .finish()
    }
}

impl ClientProcess {
    /// Starts `binary` with `args` (see the `fault-client` usage).
    pub fn start(name: &str, binary: &Path, args: &[String]) -> ClientProcess {
        let mut child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdin = child.stdin.take().expect("a piped stdin");
        let stdout = child.stdout.take().expect("a piped stdout");
        ClientProcess {
            name: name.to_string(),
            child,
            stdin,
            lines: lines_of(stdout),
            skipped: Vec::new(),
        }
    }

    /// Writes one command line.
    pub async fn send(&mut self, command: &str) {
        let line = format!("{command}\n");
        if let Err(e) = self.stdin.write_all(line.as_bytes()).await {
            panic!("{} did not take {command:?}: {e}", self.name);
        }
        let _ = self.stdin.flush().await;
    }

    /// The next line starting with `prefix` (others are kept in [`Self::skipped`]);
    /// panics, saying what the process printed, after `timeout` or if it ends or
    /// prints an `ERROR` line first.
    pub async fn expect(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let mut skipped = Vec::new();
            let found = line_starting(&mut self.lines, "", left, &mut skipped).await;
            match found {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(line) if line.starts_with("ERROR") => panic!(
                    "{} failed while we waited for {prefix:?}: {line} (earlier: {:?})",
                    self.name, self.skipped
                ),
                Ok(line) => self.skipped.push(line),
                Err(why) => panic!(
                    "{}: {why} (waiting for {prefix:?}); it printed {:?}",
                    self.name, self.skipped
                ),
            }
        }
    }

    /// The next line, whatever it says; panics after `timeout` or if the process ends.
    pub async fn next_line(&mut self, timeout: Duration) -> String {
        let mut skipped = Vec::new();
        match line_starting(&mut self.lines, "", timeout, &mut skipped).await {
            Ok(line) => line,
            Err(why) => panic!("{}: {why}; it printed {:?}", self.name, self.skipped),
        }
    }

    /// SIGKILL, and wait until the process is gone.
    pub async fn kill_9(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Waits (at most `timeout`) for the process to exit by itself; its exit code.
    pub async fn exit_code(mut self, timeout: Duration) -> Option<i32> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                let _ = self.child.start_kill();
                None
            }
        }
    }
}
