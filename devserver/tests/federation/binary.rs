//! The `devserver` binary with `--data-dir`: killed with SIGKILL and started again on the
//! same ports, it still has what it acknowledged, and still deduplicates.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::support::{connect, scratch_dir, token};

/// The `READY {json}` line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Ready {
    directory_url: String,
    regions: BTreeMap<String, String>,
}

/// The binary, killed when dropped (a failing test leaves no process behind).
struct Devserver {
    child: Child,
    ready: Ready,
}

impl Devserver {
    fn start(data_dir: &Path, ports: &[String]) -> Devserver {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_devserver"));
        cmd.arg("--data-dir")
            .arg(data_dir)
            .arg("--ready-line")
            .args(ports)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(json) = line.strip_prefix("READY ") {
                    let _ = tx.send(serde_json::from_str::<Ready>(json).unwrap());
                }
            }
        });
        let ready = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(ready) => ready,
            Err(e) => {
                let _ = child.kill();
                panic!("the devserver never printed READY: {e}");
            }
        };
        Devserver { child, ready }
    }

    /// `--port` flags that bring a new process back on this one's ports.
    fn same_ports(&self) -> Vec<String> {
        let port = |url: &str| url.rsplit(':').next().unwrap().to_string();
        let mut flags = vec![
            "--port".to_string(),
            format!("directory={}", port(&self.ready.directory_url)),
        ];
        for (id, url) in &self.ready.regions {
            flags.push("--port".into());
            flags.push(format!("{id}={}", port(url)));
        }
        flags
    }

    /// SIGKILL: no shutdown code runs.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Devserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_binary_killed_with_sigkill_comes_back_on_the_same_ports_with_what_it_acked() {
    let dir = scratch_dir("binary");
    let first = Devserver::start(&dir, &["--ephemeral-ports".to_string()]);
    let eu = first.ready.regions["eu-west"].clone();
    assert!(eu.starts_with("ws://127.0.0.1:"), "{eu}");
    assert_eq!(first.ready.regions.len(), 3);

    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    let joined = ana.join_since("acme:general", 0, None).await;
    let epoch = joined.epoch.clone();
    let receipt = ana.send("acme:general", "key-1", "survives a kill").await;
    assert_eq!(receipt["seq"], 1);
    ana.ok("dm:create", json!({"peer": "ben"})).await;

    let ports = first.same_ports();
    first.kill_9();
    assert!(ana.closed_within(Duration::from_secs(5)).await);

    let second = Devserver::start(&dir, &ports);
    assert_eq!(second.ready.regions["eu-west"], eu, "the same port");
    let mut ana = connect(&eu, &token("ana")).await.unwrap();
    let reply = ana.join_since("acme:general", 0, Some(&epoch)).await;
    assert_eq!(reply.epoch, epoch, "the same history");
    assert_eq!(reply.head_seq, 1);
    assert_eq!(reply.missed[0].body, "survives a kill");
    // The client never saw the ack? Its retry is deduplicated.
    assert_eq!(
        ana.send("acme:general", "key-1", "survives a kill").await,
        receipt
    );
    assert_eq!(ana.send("acme:general", "key-2", "next").await["seq"], 2);
    let dm = reqwest::Client::new()
        .get(format!(
            "{}/v1/spaces/dm:ana:ben/location",
            second.ready.directory_url
        ))
        .bearer_auth(token("ben"))
        .send()
        .await
        .unwrap();
    assert_eq!(dm.status(), reqwest::StatusCode::OK);
    drop(second);
    std::fs::remove_dir_all(&dir).unwrap();
}
