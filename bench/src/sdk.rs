//! Meridian's native SDK as an app uses it: `Client::connect_native`, `send_message` then
//! the receipt, `join_space` and the event stream. Everything the SDK does is in the
//! figures: the directory, the policy check, the outbox, ordering, sealing for DS spaces.

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use meridian::model::SpaceId;
use meridian::{Client, ClientConfig, Event};

use crate::meter::{Meter, body, receive, say};
use crate::spec::{ClientResult, ClientSpec, Mode, Target};

fn spaces(targets: &[Target]) -> Result<Vec<SpaceId>, String> {
    targets
        .iter()
        .map(|t| SpaceId::new(&t.space).map_err(|e| e.to_string()))
        .collect()
}

async fn sends(
    client: &Client,
    spaces: &[SpaceId],
    count: usize,
    window: usize,
    body_bytes: usize,
) -> Result<Vec<f64>, String> {
    let mut in_flight = FuturesUnordered::new();
    let mut latencies = Vec::with_capacity(count);
    let mut sent = 0;
    while latencies.len() < count {
        while in_flight.len() < window && sent < count {
            let space = &spaces[sent % spaces.len()];
            let started = Instant::now();
            let pending = client
                .send_message(space, &body(body_bytes, sent))
                .await
                .map_err(|e| format!("send_message: {e}"))?;
            in_flight.push(async move { (started, pending.acked().await) });
            sent += 1;
        }
        let (started, receipt) = in_flight.next().await.ok_or("no send in flight")?;
        receipt.map_err(|e| format!("send failed: {e}"))?;
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
    }
    Ok(latencies)
}

/// Waits for `word` on stdin.
async fn wait_for(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>,
    word: &str,
) -> Result<(), String> {
    loop {
        match lines.next_line().await {
            Ok(Some(line)) if line.trim() == word => return Ok(()),
            Ok(Some(_)) => {}
            Ok(None) => return Err(format!("stdin closed before {word}")),
            Err(e) => return Err(format!("stdin: {e}")),
        }
    }
}

/// The scale scenario (see [`Mode::Scale`]).
async fn scale(
    client: &Client,
    targets: &[Target],
    pending: usize,
    probes: &[String],
) -> Result<ClientResult, String> {
    use tokio::io::AsyncBufReadExt;
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut events = client.events();
    let all = spaces(targets)?;
    let started = Instant::now();
    // Joined 64 at a time, as an app restoring its spaces on launch would.
    let joins = futures::stream::iter(all.iter().map(|space| async move {
        client
            .join_space(space)
            .await
            .map_err(|e| format!("join {space}: {e}"))
    }))
    .buffer_unordered(64)
    .collect::<Vec<_>>()
    .await;
    joins.into_iter().collect::<Result<Vec<_>, String>>()?;
    let joined_in = started.elapsed().as_secs_f64();
    let rss = crate::procfs::sample("self")?.rss_kib;
    say(&format!(
        "JOINED {} spaces in {joined_in:.2} s, rss {rss} KiB",
        all.len()
    ))?;
    wait_for(&mut stdin, "DOWN").await?;
    let mut sends = FuturesUnordered::new();
    for (i, space) in all.iter().take(pending).enumerate() {
        let pending = client
            .send_message(space, &body(crate::spec::BODY_BYTES, i))
            .await
            .map_err(|e| format!("send_message: {e}"))?;
        sends.push(pending.acked());
    }
    say("QUEUED")?;
    let mut waiting: std::collections::HashSet<String> = probes.iter().cloned().collect();
    let mut acked = 0;
    while acked < pending || !waiting.is_empty() {
        tokio::select! {
            Some(receipt) = sends.next(), if acked < pending => {
                receipt.map_err(|e| format!("a pending send failed: {e}"))?;
                acked += 1;
            }
            event = events.next() => match event.ok_or("the event stream ended")? {
                Event::MessageReceived(m) => {
                    waiting.remove(m.space.as_str());
                }
                Event::SubscriptionLost { space, error } => return Err(format!("lost {space}: {error}")),
                _ => {}
            },
        }
    }
    let done_unix_s = crate::meter::unix_now()?;
    let end = crate::procfs::sample("self")?;
    Ok(ClientResult {
        messages: all.len() as u64,
        seconds: done_unix_s,
        p50_us: joined_in * 1e6,
        rss_kib: rss,
        peak_rss_kib: end.peak_rss_kib,
        cpu_user_ms: end.user_ms,
        cpu_sys_ms: end.sys_ms,
        ..ClientResult::default()
    })
}

/// Runs `spec`; prints `MEASURE` when the measured phase starts.
pub async fn run(spec: &ClientSpec) -> Result<ClientResult, String> {
    let config = ClientConfig::new(&spec.directory_url, &spec.token)
        .with_federation_keys(spec.federation_keys.clone());
    let client = Client::connect_native(config)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let result = match &spec.mode {
        Mode::Send {
            targets,
            window,
            count,
            warmup,
            body_bytes,
        } => {
            let spaces = spaces(targets)?;
            sends(&client, &spaces, *warmup, *window, *body_bytes).await?;
            let meter = Meter::start()?;
            let latencies = sends(&client, &spaces, *count, *window, *body_bytes).await?;
            meter.finish(latencies.len() as u64, latencies)
        }
        Mode::Receive {
            targets,
            seconds,
            warmup_seconds,
        } => {
            let mut events = client.events();
            for space in spaces(targets)? {
                client
                    .join_space(&space)
                    .await
                    .map_err(|e| format!("join {space}: {e}"))?;
            }
            let mut body_bytes = 0usize;
            let result = receive(
                &mut events,
                *warmup_seconds,
                *seconds,
                |event| match event {
                    Event::MessageReceived(m) => {
                        body_bytes += m.body.len();
                        Ok(true)
                    }
                    Event::SubscriptionLost { space, error } => {
                        Err(format!("lost {space}: {error}"))
                    }
                    _ => Ok(false),
                },
            )
            .await;
            std::hint::black_box(body_bytes);
            result
        }
        Mode::Scale {
            targets,
            pending,
            probes,
        } => scale(&client, targets, *pending, probes).await,
        Mode::Idle { targets, seconds } => {
            for space in spaces(targets)? {
                client
                    .join_space(&space)
                    .await
                    .map_err(|e| format!("join {space}: {e}"))?;
            }
            let meter = Meter::start_quiet()?;
            tokio::time::sleep(Duration::from_secs(*seconds)).await;
            meter.finish(0, Vec::new())
        }
    };
    client.disconnect().await;
    result
}
