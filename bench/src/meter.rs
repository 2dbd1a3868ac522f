//! The measured phase of a client: announced on stdout, sampled from `/proc/self` at both
//! ends.

use std::io::Write;
use std::time::Instant;

use crate::procfs::{self, Sample};
use crate::spec::ClientResult;

/// Started when the measured phase starts.
pub struct Meter {
    started: Instant,
    /// `None` for a quiet meter.
    at_start: Option<Sample>,
}

impl Meter {
    /// Prints `MEASURE` (the suite samples the server then) and samples this process.
    pub fn start() -> Result<Self, String> {
        say("MEASURE")?;
        Ok(Self {
            started: Instant::now(),
            at_start: Some(procfs::sample("self")?),
        })
    }

    /// Prints `MEASURE` and reads nothing: for the idle scenario, whose figures the suite
    /// takes from outside (reading `/proc/self` would be most of an idle client's IO).
    pub fn start_quiet() -> Result<Self, String> {
        say("MEASURE")?;
        Ok(Self {
            started: Instant::now(),
            at_start: None,
        })
    }

    /// The figures of the phase: `messages` handled, with these ack latencies (µs). Prints
    /// `END` and keeps the process as it is (sockets open) for a moment, so that the suite
    /// samples it from outside before it winds down.
    pub fn finish(self, messages: u64, latencies_us: Vec<f64>) -> Result<ClientResult, String> {
        let result = self.figures(messages, latencies_us)?;
        say("END")?;
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(result)
    }

    fn figures(self, messages: u64, mut latencies_us: Vec<f64>) -> Result<ClientResult, String> {
        let seconds = self.started.elapsed().as_secs_f64();
        let Some(at_start) = self.at_start else {
            return Ok(ClientResult {
                messages,
                seconds,
                ..ClientResult::default()
            });
        };
        let end = procfs::sample("self")?;
        Ok(ClientResult {
            messages,
            seconds,
            p50_us: procfs::quantile(&mut latencies_us, 0.50),
            p99_us: procfs::quantile(&mut latencies_us, 0.99),
            cpu_user_ms: end.user_ms - at_start.user_ms,
            cpu_sys_ms: end.sys_ms - at_start.sys_ms,
            rss_kib: end.rss_kib,
            peak_rss_kib: end.peak_rss_kib,
            // Counted from outside by the suite: this process's own /proc reads would be
            // in its IO figures.
            wakeups: 0,
            io_bytes: 0,
        })
    }
}

/// A receiving client's phases: `stream` consumed for `warmup_seconds` unmeasured, then
/// for `seconds` measured. `consume` takes each item and tells whether it was a message.
pub async fn receive<S: futures::Stream + Unpin>(
    stream: &mut S,
    warmup_seconds: u64,
    seconds: u64,
    mut consume: impl FnMut(S::Item) -> Result<bool, String>,
) -> Result<ClientResult, String> {
    use futures::StreamExt;
    let mut received = 0u64;
    let mut meter = None;
    for (phase, length) in [(0, warmup_seconds), (1, seconds)] {
        if phase == 1 {
            meter = Some(Meter::start()?);
        }
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(length);
        while let Ok(item) = tokio::time::timeout_at(until, stream.next()).await {
            let item = item.ok_or("the stream of messages ended")?;
            if consume(item)? && phase == 1 {
                received += 1;
            }
        }
    }
    meter
        .ok_or("no measured phase")?
        .finish(received, Vec::new())
}

/// Prints `line` on stdout at once (the suite reads it as it comes).
pub fn say(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

/// Seconds since the Unix epoch: the one clock two processes of the suite share.
pub fn unix_now() -> Result<f64, String> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .map_err(|e| e.to_string())
}

/// A body of `bytes` ASCII letters, different per message.
pub fn body(bytes: usize, n: usize) -> String {
    let mut body = format!("m{n} ");
    while body.len() < bytes {
        body.push(char::from(b'a' + (body.len() % 26) as u8));
    }
    body.truncate(bytes.max(1));
    body
}
