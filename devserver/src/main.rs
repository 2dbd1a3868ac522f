//! `cargo run -p devserver`: the reference federation on loopback until Ctrl-C (or
//! SIGTERM).
//!
//! Owns: command-line flags, logging setup, and printing where everything listens (and
//! the demo tokens, which are public test fixtures), optionally as one machine-readable
//! `READY {json}` line. Must never print or log a token of a config loaded from a file:
//! those may be real.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use devserver::{DevserverError, Federation, FederationConfig};

const USAGE: &str = "usage: devserver [options]

  --config <file.json>   load a FederationConfig from JSON (default: the demo federation,
                         directory on 7700, regions on 7701-7703)
  --ephemeral-ports      let the OS pick every port
  --ports-from <base>    directory on <base>, regions on <base>+1, <base>+2, ... in order
  --port <name>=<port>   one port: <name> is `directory` or a region id (repeatable;
                         applied after the options above)
  --data-dir <dir>       persist every region's messages, keys, DMs and history epoch
                         under <dir>, and reload them on start
  --retention <n>        every region keeps at most <n> messages per space
  --ready-line           once serving, print one line `READY {json}` on stdout with
                         \"directory_url\" and \"regions\" (region id -> socket URL)
  --advertise <region>=<url>
                         the federation document sends clients of <region> to <url>
                         (ws:// or wss://) instead: another Socket.IO server, a proxy
                         (repeatable)
";

/// The demo federation's base port: directory 7700, regions 7701, 7702, 7703.
const DEMO_BASE_PORT: u16 = 7700;

#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    config: Option<String>,
    ephemeral: bool,
    ports_from: Option<u16>,
    ports: Vec<(String, u16)>,
    data_dir: Option<PathBuf>,
    retention: Option<usize>,
    ready_line: bool,
    advertise: Vec<(String, String)>,
}

/// Parses the flags (without the program name). `Err("")` asks for the usage text.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut it = args.into_iter();
    let value = |flag: &str, it: &mut dyn Iterator<Item = String>| {
        it.next().ok_or_else(|| format!("{flag} needs a value"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => parsed.config = Some(value("--config", &mut it)?),
            "--ephemeral-ports" => parsed.ephemeral = true,
            "--ports-from" => {
                let v = value("--ports-from", &mut it)?;
                parsed.ports_from = Some(
                    v.parse()
                        .map_err(|_| format!("--ports-from: {v:?} is not a port"))?,
                );
            }
            "--port" => {
                let v = value("--port", &mut it)?;
                let (name, port) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--port: expected <name>=<port>, got {v:?}"))?;
                let port = port
                    .parse()
                    .map_err(|_| format!("--port: {port:?} is not a port"))?;
                parsed.ports.push((name.to_string(), port));
            }
            "--data-dir" => parsed.data_dir = Some(value("--data-dir", &mut it)?.into()),
            "--retention" => {
                let v = value("--retention", &mut it)?;
                parsed.retention = Some(
                    v.parse()
                        .map_err(|_| format!("--retention: {v:?} is not a count"))?,
                );
            }
            "--ready-line" => parsed.ready_line = true,
            "--advertise" => {
                let v = value("--advertise", &mut it)?;
                let (region, url) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--advertise: expected <region>=<url>, got {v:?}"))?;
                parsed.advertise.push((region.to_owned(), url.to_owned()));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if parsed.ephemeral && parsed.ports_from.is_some() {
        return Err("--ephemeral-ports and --ports-from exclude each other".into());
    }
    Ok(parsed)
}

/// The configuration the flags describe.
fn configure(args: &Args) -> Result<FederationConfig, DevserverError> {
    let mut config = match &args.config {
        None => FederationConfig::default_three_regions().with_fixed_ports(DEMO_BASE_PORT),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| DevserverError::ConfigFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            serde_json::from_str(&text).map_err(|e| DevserverError::ConfigFile {
                path: path.clone(),
                reason: e.to_string(),
            })?
        }
    };
    if args.ephemeral {
        config = config.with_ephemeral_ports();
    }
    if let Some(base) = args.ports_from {
        config = config.with_fixed_ports(base);
    }
    for (name, port) in &args.ports {
        if name == "directory" {
            config.directory_port = Some(*port);
            continue;
        }
        let region = config
            .regions
            .iter_mut()
            .find(|r| r.id.as_str() == name)
            .ok_or_else(|| {
                DevserverError::InvalidConfig(format!(
                    "--port {name}={port}: no region {name} (nor `directory`)"
                ))
            })?;
        region.port = Some(*port);
    }
    if let Some(dir) = &args.data_dir {
        config = config.with_data_dir(dir);
    }
    if args.retention.is_some() {
        config = config.with_retention(args.retention);
    }
    Ok(config)
}

/// `READY {"directory_url": .., "regions": {id: socket_url, ..}, "federation_keys": [..]}`
fn ready_line(fed: &Federation) -> String {
    let regions: BTreeMap<String, String> = fed
        .region_ids()
        .iter()
        .map(|id| {
            (
                id.as_str().to_string(),
                fed.region_socket_url(id).unwrap_or_default(),
            )
        })
        .collect();
    let json = serde_json::json!({
        "directory_url": fed.directory_url(),
        "regions": regions,
        "federation_keys": fed.federation_keys(),
    });
    format!("READY {json}")
}

#[allow(
    clippy::print_stdout,
    reason = "printing where the federation listens is this binary's job"
)]
fn announce(fed: &Federation, demo: bool, ready: bool) {
    if ready {
        println!("{}", ready_line(fed));
    }
    println!("Meridian devserver");
    println!("  directory   {}", fed.directory_url());
    for region in &fed.config().regions {
        let url = fed.region_socket_url(&region.id).unwrap_or_default();
        println!("  {:<11} {url}  ({})", region.id.as_str(), region.name);
    }
    if let Some(dir) = &fed.config().data_dir {
        println!("  data dir    {}", dir.display());
    }
    if demo {
        println!("  demo users (token = <user>-token):");
        for user in &fed.config().users {
            println!(
                "    {:<6} {:<8} {}",
                user.id.as_str(),
                user.company.as_str(),
                user.token
            );
        }
    } else {
        println!(
            "  users: {} (tokens from the config file)",
            fed.config().users.len()
        );
    }
    println!("Ctrl-C to stop.");
}

/// Waits for Ctrl-C, or SIGTERM on Unix.
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    r = tokio::signal::ctrl_c() => if let Err(e) = r {
                        tracing::error!("cannot wait for Ctrl-C: {e}");
                    },
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => tracing::warn!("cannot wait for SIGTERM: {e}"),
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::error!("cannot wait for Ctrl-C: {e}");
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr; stdout carries only the announcement below.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(why) => {
            if !why.is_empty() {
                tracing::error!("{why}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match configure(&args) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let fed = match Federation::start(config).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for (region, url) in &args.advertise {
        let advertised = meridian::model::RegionId::new(region)
            .map_err(|e| DevserverError::InvalidInput(format!("--advertise {region}: {e}")))
            .and_then(|id| fed.advertise_region(&id, Some(url.clone())));
        if let Err(e) = advertised {
            tracing::error!("{e}");
            fed.shutdown().await;
            return ExitCode::FAILURE;
        }
    }
    announce(&fed, args.config.is_none(), args.ready_line);
    stop_requested().await;
    fed.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn every_flag_is_understood() {
        let a = parse(&[
            "--ports-from",
            "9000",
            "--port",
            "eu-west=9100",
            "--port",
            "directory=9200",
            "--data-dir",
            "/tmp/x",
            "--retention",
            "50",
            "--ready-line",
            "--advertise",
            "eu-west=ws://127.0.0.1:9300",
        ])
        .unwrap();
        assert_eq!(
            a.advertise,
            vec![("eu-west".to_owned(), "ws://127.0.0.1:9300".to_owned())]
        );
        assert_eq!(a.ports_from, Some(9000));
        assert!(a.ready_line);
        let c = configure(&a).unwrap();
        assert_eq!(c.directory_port, Some(9200));
        let ports: Vec<_> = c.regions.iter().map(|r| r.port).collect();
        assert_eq!(ports, vec![Some(9100), Some(9002), Some(9003)]);
        assert_eq!(c.data_dir, Some(PathBuf::from("/tmp/x")));
        assert!(c.regions.iter().all(|r| r.retention == Some(50)));
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason_never_a_panic() {
        for bad in [
            &["--port", "eu-west"][..],
            &["--port", "eu-west=http"],
            &["--ports-from", "70000"],
            &["--retention", "-1"],
            &["--data-dir"],
            &["--ephemeral-ports", "--ports-from", "9000"],
            &["--advertise", "eu-west"],
            &["--advertise"],
            &["--frobnicate"],
        ] {
            let err = parse(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad:?}");
        }
        let a = parse(&["--port", "mars=9000"]).unwrap();
        assert!(configure(&a).unwrap_err().to_string().contains("mars"));
    }
}
