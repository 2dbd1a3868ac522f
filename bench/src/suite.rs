//! The whole benchmark suite: servers on core 0, one client process at a time on core 1,
//! the clients alternated run by run, medians of the runs; then the report.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::procfs;
use crate::report;
use crate::servers::{self, Ready, Server};
use crate::spec::{BODY_BYTES, ClientResult, ClientSpec, Mode, Target};

/// The core the servers (and the fan-in senders) run on.
const SERVER_CORE: usize = 0;
/// The core the measured client runs on.
const CLIENT_CORE: usize = 1;

/// A client implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// Meridian's native SDK.
    Meridian,
    /// The raw tokio-tungstenite client.
    Raw,
    /// socket.io-client in Node.
    SocketIo,
}

impl Kind {
    /// The label in the report.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Meridian => "meridian",
            Kind::Raw => "raw",
            Kind::SocketIo => "socket.io-client",
        }
    }
}

/// Where things are, and how long to run.
pub struct Env {
    /// The repository.
    pub root: PathBuf,
    /// This binary (the Rust clients).
    pub exe: PathBuf,
    /// The release devserver binary.
    pub devserver: PathBuf,
    /// Scratch files (the federation config).
    pub scratch: PathBuf,
    /// Runs per (scenario, server, client); at least 3 for the report.
    pub runs: usize,
    /// Fewer messages and a short idle: a smoke test of the suite, not figures.
    pub quick: bool,
    /// Sizes and microbenchmark figures measured by `cargo xtask bench` before the suite.
    pub extra: report::Extra,
}

/// One client run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// The scenario's name.
    pub scenario: String,
    /// `devserver` or `node socket.io`.
    pub server: String,
    /// The client.
    pub client: Kind,
    /// Which run (0-based).
    pub run: usize,
    /// What the client measured.
    pub result: ClientResult,
    /// The server's CPU over the client's measured phase, milliseconds.
    pub server_cpu_ms: f64,
}

impl Env {
    fn node_script(&self, name: &str) -> PathBuf {
        self.root.join("bench/node").join(name)
    }

    fn count(&self, full: usize) -> usize {
        if self.quick { full / 20 } else { full }
    }

    /// Runs `kind` with `spec` on the client core; samples `server` over its measured phase.
    async fn client(
        &self,
        kind: Kind,
        spec: &ClientSpec,
        server: &str,
    ) -> Result<(ClientResult, f64), String> {
        let json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
        let mut command = Command::new("taskset");
        command.arg("-c").arg(CLIENT_CORE.to_string());
        match kind {
            Kind::Meridian | Kind::Raw => {
                command.arg(&self.exe).arg("client").arg(kind.label());
            }
            Kind::SocketIo => {
                command.arg("node").arg(self.node_script("client.mjs"));
            }
        }
        let mut child = command
            .arg(&json)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the {} client: {e}", kind.label()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        // taskset execs the client: this pid is the client's.
        let pid = child.id().ok_or("the client exited at once")?.to_string();
        let mut lines = BufReader::new(stdout).lines();
        let mut at_start = None;
        let mut at_end = None;
        let outcome = tokio::time::timeout(Duration::from_secs(600), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "MEASURE" {
                    at_start = Some((
                        procfs::sample(server)?,
                        procfs::sample(&pid)?,
                        procfs::socket_bytes(&pid)?,
                    ));
                } else if line == "END" {
                    at_end = Some((
                        procfs::sample(server)?,
                        procfs::sample(&pid)?,
                        procfs::socket_bytes(&pid)?,
                    ));
                } else if let Some(json) = line.strip_prefix("RESULT ") {
                    let (server_end, client_end, wire_end) = match at_end {
                        Some(end) => end,
                        None => (
                            procfs::sample(server)?,
                            procfs::sample(&pid)?,
                            procfs::socket_bytes(&pid)?,
                        ),
                    };
                    let mut result: ClientResult =
                        serde_json::from_str(json).map_err(|e| format!("RESULT: {e}"))?;
                    let (server_start, client_start, wire_start) =
                        at_start.unwrap_or((server_end, client_end, wire_end));
                    let cpu = (server_end.user_ms + server_end.sys_ms)
                        - (server_start.user_ms + server_start.sys_ms);
                    // Counted from outside, so the client's own /proc reads are not in them.
                    result.wakeups = client_end.switches.saturating_sub(client_start.switches);
                    result.io_bytes = wire_end.saturating_sub(wire_start);
                    if matches!(spec.mode, Mode::Idle { .. }) {
                        result.cpu_user_ms = client_end.user_ms - client_start.user_ms;
                        result.cpu_sys_ms = client_end.sys_ms - client_start.sys_ms;
                        result.rss_kib = client_end.rss_kib;
                        result.peak_rss_kib = client_end.peak_rss_kib;
                    }
                    return Ok((result, cpu));
                }
            }
            Err(format!(
                "the {} client exited without a RESULT",
                kind.label()
            ))
        })
        .await
        .map_err(|_| format!("the {} client took over 600 s", kind.label()))?;
        let _ = child.wait().await;
        outcome
    }

    /// Every run of `clients` with `spec_for(client)`, alternating their order run by run.
    async fn rounds(
        &self,
        scenario: &str,
        server: (&str, &str),
        clients: &[Kind],
        spec_for: &dyn Fn(Kind) -> ClientSpec,
        runs: &mut Vec<Run>,
    ) -> Result<(), String> {
        for run in 0..self.runs {
            for i in 0..clients.len() {
                let kind = clients[(i + run) % clients.len()];
                let (result, server_cpu_ms) = self.client(kind, &spec_for(kind), server.1).await?;
                println!(
                    "  {scenario:<22} {:<16} {:<17} run {run}: {:>9.0} msg/s  p50 {:>7.0} µs  p99 {:>7.0} µs  cpu {:>6.1} µs/msg",
                    server.0,
                    kind.label(),
                    rate(&result),
                    result.p50_us,
                    result.p99_us,
                    cpu_per_message_us(&result),
                );
                runs.push(Run {
                    scenario: scenario.into(),
                    server: server.0.into(),
                    client: kind,
                    run,
                    result,
                    server_cpu_ms,
                });
            }
        }
        Ok(())
    }
}

/// Messages per second of a result.
pub fn rate(r: &ClientResult) -> f64 {
    if r.seconds > 0.0 {
        r.messages as f64 / r.seconds
    } else {
        0.0
    }
}

/// Client CPU per message, microseconds.
pub fn cpu_per_message_us(r: &ClientResult) -> f64 {
    if r.messages == 0 {
        0.0
    } else {
        (r.cpu_user_ms + r.cpu_sys_ms) * 1000.0 / r.messages as f64
    }
}

fn spec(ready: &Ready, token: &str, mode: Mode) -> ClientSpec {
    ClientSpec {
        directory_url: ready.directory_url.clone(),
        token: token.into(),
        federation_keys: ready.federation_keys.clone(),
        mode,
    }
}

/// Acked sends of 100-byte bodies, as the benchmark user.
fn sends(
    ready: &Ready,
    targets: &[Target],
    window: usize,
    count: usize,
    warmup: usize,
) -> ClientSpec {
    spec(
        ready,
        &format!("{}-token", servers::USER),
        Mode::Send {
            targets: targets.to_vec(),
            window,
            count,
            warmup,
            body_bytes: BODY_BYTES,
        },
    )
}

/// The targets for `spaces`, each at its region's URL (or all at `everything`).
fn targets(ready: &Ready, spaces: &[String], everything: Option<&str>) -> Vec<Target> {
    spaces
        .iter()
        .map(|space| Target {
            space: space.clone(),
            region: servers::region_of(space).to_owned(),
            url: everything.map_or_else(
                || {
                    ready
                        .regions
                        .get(servers::region_of(space))
                        .cloned()
                        .unwrap_or_default()
                },
                str::to_owned,
            ),
        })
        .collect()
}

/// The devserver with the benchmark federation; `advertise_to`: its first `regions`
/// regions published at that URL instead (the Node server).
async fn devserver(
    env: &Env,
    advertise_to: Option<(&str, usize)>,
) -> Result<(Server, Ready), String> {
    let mut extra = Vec::new();
    if let Some((url, regions)) = advertise_to {
        for region in servers::REGIONS.iter().take(regions) {
            extra.push("--advertise".to_owned());
            extra.push(format!("{region}={url}"));
        }
    }
    devserver_with(env, &extra).await
}

/// The devserver with the benchmark federation and these flags.
async fn devserver_with(env: &Env, flags: &[String]) -> Result<(Server, Ready), String> {
    let config = env.scratch.join("federation.json");
    let json = serde_json::to_vec(&servers::federation()).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&env.scratch).map_err(|e| e.to_string())?;
    std::fs::write(&config, json).map_err(|e| format!("{}: {e}", config.display()))?;
    Server::devserver(SERVER_CORE, &env.devserver, &config, flags).await
}

const ALL: [Kind; 3] = [Kind::Meridian, Kind::Raw, Kind::SocketIo];

/// Runs every scenario; the runs, in order.
pub async fn run(env: &Env) -> Result<Vec<Run>, String> {
    let mut runs = Vec::new();
    let plain = vec![servers::PLAIN_SPACE.to_owned()];
    let many: Vec<String> = (0..100).map(servers::many_space).collect();

    // 1, 2: acked sends against each server.
    for node in [false, true] {
        let (node_server, node_url) = if node {
            let (s, url) = Server::node(SERVER_CORE, &env.node_script("server.mjs")).await?;
            (Some(s), Some(url))
        } else {
            (None, None)
        };
        let (dev, ready) = devserver(env, node_url.as_deref().map(|u| (u, 3))).await?;
        let (name, pid) = match &node_server {
            Some(s) => ("node socket.io", s.pid.clone()),
            None => ("devserver", dev.pid.clone()),
        };
        for (scenario, spaces, window, count, warmup) in [
            (
                "sends, window 1",
                &plain,
                1,
                env.count(5_000),
                env.count(500),
            ),
            (
                "sends, window 64",
                &plain,
                64,
                env.count(30_000),
                env.count(3_000),
            ),
            (
                "100 spaces, window 64",
                &many,
                64,
                env.count(30_000),
                env.count(3_000),
            ),
        ] {
            let t = targets(&ready, spaces, node_url.as_deref());
            let spec_for = |_: Kind| sends(&ready, &t, window, count, warmup);
            env.rounds(scenario, (name, &pid), &ALL, &spec_for, &mut runs)
                .await?;
        }
        dev.stop().await;
        if let Some(s) = node_server {
            s.stop().await;
        }
    }

    // 4: sealed against plain, Meridian alone (the others have no sealing).
    let (dev, ready) = devserver(env, None).await?;
    for (scenario, space, window, count) in [
        ("plain, window 1", servers::PLAIN_SPACE, 1, env.count(5_000)),
        (
            "sealed, window 1",
            servers::SEALED_SPACE,
            1,
            env.count(5_000),
        ),
        (
            "plain, window 64",
            servers::PLAIN_SPACE,
            64,
            env.count(30_000),
        ),
        (
            "sealed, window 64",
            servers::SEALED_SPACE,
            64,
            env.count(30_000),
        ),
    ] {
        let t = targets(&ready, &[space.to_owned()], None);
        let spec_for = |_: Kind| sends(&ready, &t, window, count, count / 10);
        env.rounds(
            scenario,
            ("devserver", &dev.pid),
            &[Kind::Meridian],
            &spec_for,
            &mut runs,
        )
        .await?;
    }

    // 3: fan-in from 100 senders on the server's core.
    let t = targets(&ready, &many, None);
    let mut senders = Command::new("taskset")
        .arg("-c")
        .arg(SERVER_CORE.to_string())
        .arg(&env.exe)
        .arg("senders")
        .arg(spec_json(&ready, "", t.clone())?)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the senders: {e}"))?;
    let spec_for = |_: Kind| {
        spec(
            &ready,
            &format!("{}-token", servers::USER),
            Mode::Receive {
                targets: t.clone(),
                seconds: if env.quick { 2 } else { 10 },
                warmup_seconds: if env.quick { 1 } else { 3 },
            },
        )
    };
    let fan_in = env
        .rounds(
            "fan-in, 100 senders",
            ("devserver", &dev.pid),
            &ALL,
            &spec_for,
            &mut runs,
        )
        .await;
    if let Some(stdin) = senders.stdin.as_mut() {
        let _ = stdin.shutdown().await;
    }
    let _ = senders.kill().await;
    fan_in?;

    // 6: idle, the three clients at once, connected to 3 regions with a space joined each.
    let idle_targets = targets(&ready, &many[..3], None);
    let seconds = if env.quick { 5 } else { 60 };
    for run in 0..env.runs {
        let spec = spec(
            &ready,
            &format!("{}-token", servers::USER),
            Mode::Idle {
                targets: idle_targets.clone(),
                seconds,
            },
        );
        let all = ALL.map(|kind| env.client(kind, &spec, &dev.pid));
        let [m, r, s] = all;
        let (m, r, s) = tokio::join!(m, r, s);
        for (kind, outcome) in ALL.into_iter().zip([m, r, s]) {
            let (result, server_cpu_ms) = outcome?;
            println!(
                "  idle                   devserver        {:<17} run {run}: {} wake-ups, {} bytes in {seconds} s",
                kind.label(),
                result.wakeups,
                result.io_bytes
            );
            runs.push(Run {
                scenario: "idle".into(),
                server: "devserver".into(),
                client: kind,
                run,
                result,
                server_cpu_ms,
            });
        }
    }
    dev.stop().await;

    // 5: one client with 10,000 spaces over 5 regions, through a restart of the federation.
    scale(env, &mut runs).await?;
    Ok(runs)
}

/// The scale scenario, Meridian alone: joins 10,000 spaces over the 5 regions (the time
/// it takes and the resident memory after), then the federation is killed, 100 sends are
/// made while it is down, and it is started again on the same ports and data; the result's
/// `seconds` is the time from that restart to every pending send acked and a message in
/// each of 100 probe spaces (every 100th, sent by another process once the federation is
/// back) received: the subscriptions restored.
async fn scale(env: &Env, runs: &mut Vec<Run>) -> Result<(), String> {
    let spaces: Vec<String> = (0..if env.quick { 1_000 } else { 10_000 })
        .map(servers::scale_space)
        .collect();
    let probes: Vec<String> = spaces.iter().step_by(spaces.len() / 100).cloned().collect();
    for run in 0..env.runs {
        let data = env.scratch.join("scale-data");
        let _ = std::fs::remove_dir_all(&data);
        let data_flags = ["--data-dir".to_owned(), data.display().to_string()];
        let (dev, ready) = devserver_with(env, &data_flags).await?;
        let spec = spec(
            &ready,
            &format!("{}-token", servers::USER),
            Mode::Scale {
                targets: targets(&ready, &spaces, None),
                pending: 100,
                probes: probes.clone(),
            },
        );
        let mut child = Command::new("taskset")
            .arg("-c")
            .arg(CLIENT_CORE.to_string())
            .arg(&env.exe)
            .args(["client", "meridian"])
            .arg(spec_file(env, "scale", &spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the scale client: {e}"))?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let mut next = async |prefix: &str| -> Result<String, String> {
            let wait = tokio::time::timeout(Duration::from_secs(600), async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.to_owned());
                    }
                }
                Err(format!("the scale client exited before {prefix:?}"))
            });
            wait.await
                .map_err(|_| format!("no {prefix:?} from the scale client in 600 s"))?
        };
        let joined = next("JOINED ").await?;
        dev.stop().await;
        stdin
            .write_all(b"DOWN\n")
            .await
            .map_err(|e| e.to_string())?;
        next("QUEUED").await?;
        let restarted_at = crate::meter::unix_now()?;
        let mut flags = Server::same_ports(&ready);
        flags.extend(data_flags.iter().cloned());
        let (dev, ready) = devserver_with(env, &flags).await?;
        let probe = spec_json(&ready, "s000-token", targets(&ready, &probes, None))?;
        let status = Command::new("taskset")
            .arg("-c")
            .arg(SERVER_CORE.to_string())
            .arg(&env.exe)
            .args(["probe", &probe])
            .status()
            .await
            .map_err(|e| format!("cannot run the probe: {e}"))?;
        if !status.success() {
            return Err(format!("the probe failed ({status})"));
        }
        let json = next("RESULT ").await?;
        let mut result: ClientResult =
            serde_json::from_str(&json).map_err(|e| format!("RESULT: {e}"))?;
        result.seconds -= restarted_at;
        println!(
            "  scale                  devserver        meridian          run {run}: joined {joined}; restored in {:.2} s",
            result.seconds
        );
        runs.push(Run {
            scenario: "scale".into(),
            server: "devserver".into(),
            client: Kind::Meridian,
            run,
            result,
            server_cpu_ms: 0.0,
        });
        drop(stdin);
        let _ = child.wait().await;
        dev.stop().await;
    }
    Ok(())
}

/// Writes `spec` to a file in the scratch folder; the `@<file>` argument that names it.
fn spec_file(env: &Env, name: &str, spec: &ClientSpec) -> Result<String, String> {
    let path = env.scratch.join(format!("{name}.json"));
    let json = serde_json::to_vec(spec).map_err(|e| e.to_string())?;
    std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!("@{}", path.display()))
}

/// An idle spec's JSON: how the probe and the senders get their targets.
fn spec_json(ready: &Ready, token: &str, targets: Vec<Target>) -> Result<String, String> {
    serde_json::to_string(&spec(
        ready,
        token,
        Mode::Idle {
            targets,
            seconds: 0,
        },
    ))
    .map_err(|e| e.to_string())
}

/// The benchmark scratch folder and the binaries, from the repository root.
pub fn env(root: &Path, runs: usize, quick: bool, extra: report::Extra) -> Result<Env, String> {
    Ok(Env {
        root: root.to_owned(),
        exe: std::env::current_exe().map_err(|e| e.to_string())?,
        devserver: root.join("target/release/devserver"),
        scratch: root.join("target/bench"),
        runs,
        quick,
        extra,
    })
}
