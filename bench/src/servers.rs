//! The servers of the benchmarks, each a process pinned to its own core: the devserver
//! binary with a federation made for the benchmarks, and the official Node socket.io server
//! (`bench/node/server.mjs`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use devserver::FederationConfig;
use devserver::config::{CompanyConfig, RegionConfig, SpaceConfig, UserConfig};
use meridian::model::{
    CompanyId, Flavor, FlavorId, GeoPolicy, PolicyId, PolicyMode, RegionId, Residency,
    RolloutState, SpaceId, UserId,
};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The regions of the benchmark federation; scenarios "over 3 regions" use the first three.
pub const REGIONS: [&str; 5] = ["eu-west", "us-east", "ca-central", "ap-south", "sa-east"];
/// The user every measured client signs in as (homed in eu-west, permitted everywhere).
pub const USER: &str = "bench";
/// A plain (data-residency) space in eu-west.
pub const PLAIN_SPACE: &str = "c0:plain";
/// A data-sovereignty space in eu-west: every send is sealed.
pub const SEALED_SPACE: &str = "vault:sealed";
/// Senders of the fan-in scenario.
pub const SENDERS: usize = 100;

/// Space `i` of the "many spaces" set: 100 spaces over the first 3 regions.
pub fn many_space(i: usize) -> String {
    format!("c{}:m{i:03}", i % 3)
}

/// Space `i` of the scale set: 10,000 spaces over the 5 regions.
pub fn scale_space(i: usize) -> String {
    format!("c{}:k{i:05}", i % 5)
}

/// The region that houses a space of this federation (its company's home).
pub fn region_of(space: &str) -> &'static str {
    let company = space.split(':').next().unwrap_or_default();
    company
        .strip_prefix('c')
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| REGIONS.get(i).copied())
        .unwrap_or(REGIONS[0])
}

/// Sender `i` of the fan-in scenario.
pub fn sender(i: usize) -> String {
    format!("s{i:03}")
}

/// The benchmark federation: five regions, a company homed in each (`c0`..`c4`) under an
/// open data-residency policy, `vault` in eu-west under data sovereignty, the user
/// [`USER`], the fan-in senders, and the spaces of every scenario.
pub fn federation() -> FederationConfig {
    let region = |id: &str| RegionId::new_unchecked(id);
    let all: Vec<RegionId> = REGIONS.iter().map(|r| region(r)).collect();
    let policy = |id: &str, residency| GeoPolicy {
        id: PolicyId::new_unchecked(id),
        mode: PolicyMode::Whitelist {
            regions: all.clone(),
        },
        residency,
    };
    let company = |id: &str, home: &str, policy: &str| CompanyConfig {
        id: CompanyId::new_unchecked(id),
        name: id.into(),
        home_region: region(home),
        policy: PolicyId::new_unchecked(policy),
        flavor: Some(FlavorId::new_unchecked("all")),
    };
    let user = |id: &str| UserConfig {
        id: UserId::new_unchecked(id),
        display_name: id.into(),
        company: CompanyId::new_unchecked("c0"),
        token: format!("{id}-token"),
        flavor_override: None,
    };
    let space = |id: &str| SpaceConfig {
        id: SpaceId::new_unchecked(id),
        name: id.into(),
        company: CompanyId::new_unchecked(id.split(':').next().unwrap_or_default()),
    };
    let mut companies: Vec<CompanyConfig> = REGIONS
        .iter()
        .enumerate()
        .map(|(i, r)| company(&format!("c{i}"), r, "open"))
        .collect();
    companies.push(company("vault", REGIONS[0], "open-ds"));
    let mut spaces = vec![space(PLAIN_SPACE), space(SEALED_SPACE)];
    spaces.extend((0..100).map(|i| space(&many_space(i))));
    spaces.extend((0..10_000).map(|i| space(&scale_space(i))));
    FederationConfig {
        directory_port: None,
        regions: REGIONS
            .iter()
            .map(|r| RegionConfig {
                id: region(r),
                name: (*r).into(),
                port: None,
                retention: None,
            })
            .collect(),
        policies: vec![
            policy("open", Residency::Dr),
            policy("open-ds", Residency::Ds),
        ],
        flavors: vec![Flavor {
            id: FlavorId::new_unchecked("all"),
            regions: all.clone(),
            rollout: RolloutState::Ga,
        }],
        companies,
        users: std::iter::once(user(USER))
            .chain((0..SENDERS).map(|i| user(&sender(i))))
            .collect(),
        spaces,
        data_dir: None,
    }
}

/// `READY {json}` of the devserver binary.
#[derive(Debug, Clone, Deserialize)]
pub struct Ready {
    /// The directory's base URL.
    pub directory_url: String,
    /// Region id to its real socket URL.
    pub regions: BTreeMap<String, String>,
    /// The federation's signing keys.
    pub federation_keys: Vec<meridian::model::FederationKey>,
}

/// A server process, killed when dropped.
pub struct Server {
    child: Child,
    /// Its pid, for `/proc`.
    pub pid: String,
}

/// Starts `program args` pinned to `core`, stdout piped, killed on drop.
fn pinned(core: usize, program: &Path, args: &[String]) -> Result<Child, String> {
    Command::new("taskset")
        .arg("-c")
        .arg(core.to_string())
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Connections are logged at info: not in the servers' CPU figures.
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))
}

/// The first stdout line of `child` starting with `prefix` (its rest), within 60 s.
async fn line(child: &mut Child, prefix: &str) -> Result<String, String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix(prefix) {
                return Some(rest.to_owned());
            }
        }
        None
    })
    .await;
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    match found {
        Ok(Some(rest)) => Ok(rest),
        Ok(None) => Err(format!("the server exited before printing {prefix:?}")),
        Err(_) => Err(format!("no {prefix:?} line within 60 s")),
    }
}

impl Server {
    /// The devserver binary on `core` with the benchmark federation (written to
    /// `config_file`), regions advertised elsewhere as `advertise` says.
    pub async fn devserver(
        core: usize,
        binary: &Path,
        config_file: &Path,
        extra: &[String],
    ) -> Result<(Self, Ready), String> {
        let mut args = vec![
            "--ready-line".to_owned(),
            "--config".to_owned(),
            config_file.display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        if !extra.iter().any(|a| a == "--port" || a == "--ports-from") {
            args.push("--ephemeral-ports".into());
        }
        let mut child = pinned(core, binary, &args)?;
        let ready = line(&mut child, "READY ").await?;
        let ready: Ready =
            serde_json::from_str(&ready).map_err(|e| format!("the READY line: {e}"))?;
        let pid = child.id().ok_or("the devserver exited")?.to_string();
        Ok((Self { child, pid }, ready))
    }

    /// The official socket.io server (`server.mjs`) on `core`; its `ws://` URL.
    pub async fn node(core: usize, script: &Path) -> Result<(Self, String), String> {
        let mut child = pinned(core, Path::new("node"), &[script.display().to_string()])?;
        let port = line(&mut child, "LISTENING ").await?;
        let pid = child.id().ok_or("the node server exited")?.to_string();
        Ok((
            Self { child, pid },
            format!("ws://127.0.0.1:{}", port.trim()),
        ))
    }

    /// The flags that start the devserver again on the ports `ready` lists.
    pub fn same_ports(ready: &Ready) -> Vec<String> {
        let port = |url: &str| url.rsplit(':').next().unwrap_or_default().to_owned();
        let mut flags = vec![
            "--port".to_owned(),
            format!("directory={}", port(&ready.directory_url)),
        ];
        for (region, url) in &ready.regions {
            flags.push("--port".into());
            flags.push(format!("{region}={}", port(url)));
        }
        flags
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_federation_is_valid() {
        let config = federation();
        config.validate().expect("valid");
        assert_eq!(config.spaces.len(), 2 + 100 + 10_000);
        assert_eq!(region_of(&many_space(4)), "us-east");
        assert_eq!(region_of(&scale_space(4)), "sa-east");
        assert_eq!(region_of(SEALED_SPACE), "eu-west");
    }
}
