//! `cargo run -p devserver`: the reference federation on loopback until Ctrl-C.
//!
//! Owns: command-line flags, logging setup, and printing where everything listens (and
//! the demo tokens, which are public test fixtures). Must never print or log a token of a
//! config loaded from a file: those may be real.

use std::process::ExitCode;

use devserver::{DevserverError, Federation, FederationConfig};

const USAGE: &str = "usage: devserver [--config <file.json>] [--ephemeral-ports]

  --config <file.json>  load a FederationConfig from JSON (default: the demo federation,
                        directory on 7700, regions on 7701-7703)
  --ephemeral-ports     let the OS pick every port
";

/// The demo federation's base port: directory 7700, regions 7701, 7702, 7703.
const DEMO_BASE_PORT: u16 = 7700;

struct Args {
    config: Option<String>,
    ephemeral: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        config: None,
        ephemeral: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => {
                args.config = Some(it.next().ok_or("--config needs a file")?);
            }
            "--ephemeral-ports" => args.ephemeral = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn load(args: &Args) -> Result<FederationConfig, DevserverError> {
    let config = match &args.config {
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
    Ok(if args.ephemeral {
        config.with_ephemeral_ports()
    } else {
        config
    })
}

#[allow(
    clippy::print_stdout,
    reason = "printing where the federation listens is this binary's job"
)]
fn announce(fed: &Federation, demo: bool) {
    println!("Meridian devserver");
    println!("  directory   {}", fed.directory_url());
    for region in &fed.config().regions {
        let url = fed.region_socket_url(&region.id).unwrap_or_default();
        println!("  {:<11} {url}  ({})", region.id.as_str(), region.name);
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
    let args = match parse_args() {
        Ok(a) => a,
        Err(why) => {
            if !why.is_empty() {
                tracing::error!("{why}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match load(&args) {
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
    announce(&fed, args.config.is_none());
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::error!("cannot wait for Ctrl-C: {e}");
    }
    fed.shutdown().await;
    ExitCode::SUCCESS
}
