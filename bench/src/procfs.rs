//! What Linux says about a process: CPU time, memory, wake-ups, IO (from `/proc`).

use std::fs;

/// Clock ticks per second of `/proc/<pid>/stat`'s times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// A sample of a process's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// User CPU, milliseconds.
    pub user_ms: f64,
    /// System CPU, milliseconds.
    pub sys_ms: f64,
    /// Resident memory now, KiB.
    pub rss_kib: u64,
    /// Peak resident memory, KiB.
    pub peak_rss_kib: u64,
    /// Voluntary plus involuntary context switches of every thread so far.
    pub switches: u64,
    /// Bytes read and written through syscalls so far.
    pub io_bytes: u64,
}

/// Reads `pid`'s counters (`self` for this process).
pub fn sample(pid: &str) -> Result<Sample, String> {
    let read = |file: &str| {
        fs::read_to_string(format!("/proc/{pid}/{file}"))
            .map_err(|e| format!("/proc/{pid}/{file}: {e}"))
    };
    let stat = read("stat")?;
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("/proc/<pid>/stat: no ')'")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let tick = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .map(|t| t * 1000.0 / TICKS_PER_SECOND)
            .ok_or_else(|| format!("/proc/{pid}/stat: no field {}", i + 3))
    };
    let mut sample = Sample {
        user_ms: tick(11)?,
        sys_ms: tick(12)?,
        ..Sample::default()
    };
    for line in read("status")?.lines() {
        let value = || {
            line.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match line.split(':').next() {
            Some("VmRSS") => sample.rss_kib = value(),
            Some("VmHWM") => sample.peak_rss_kib = value(),
            _ => {}
        }
    }
    // Context switches of every thread (the process's status has the main thread's only).
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
            sample.switches += status
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    if let Ok(io) = read("io") {
        sample.io_bytes = io
            .lines()
            .filter(|l| l.starts_with("rchar:") || l.starts_with("wchar:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
    }
    Ok(sample)
}

/// TCP payload bytes sent and received so far by `pid`'s established sockets, from the
/// kernel's `tcp_info` (`ss -tinp`): what went over the wire, which `/proc/<pid>/io` does
/// not count for sockets read and written with `recv` and `send`.
pub fn socket_bytes(pid: &str) -> Result<u64, String> {
    let out = std::process::Command::new("ss")
        .args(["-tinpH", "state", "established"])
        .output()
        .map_err(|e| format!("cannot run ss: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let owner = format!("pid={pid},");
    let mut total = 0;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if !line.contains(&owner) {
            continue;
        }
        let Some(info) = lines.next() else { break };
        total += info
            .split_whitespace()
            .filter_map(|f| {
                f.strip_prefix("bytes_sent:")
                    .or_else(|| f.strip_prefix("bytes_received:"))
            })
            .filter_map(|n| n.parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(total)
}

/// The `q`-quantile (0..=1) of `values` (sorted here), nearest rank.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let mut spin = 0u64;
        for i in 0..2_000_000u64 {
            spin = spin.wrapping_add(std::hint::black_box(i));
        }
        assert!(spin > 0);
        let s = sample("self").expect("procfs");
        assert!(s.rss_kib > 0 && s.peak_rss_kib >= s.rss_kib, "{s:?}");
        assert!(s.switches > 0, "{s:?}");
    }

    #[test]
    fn socket_bytes_count_what_this_process_sent_and_received() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let pid = std::process::id().to_string();
        let before = socket_bytes(&pid).expect("ss");
        client.write_all(&[7; 1000]).expect("write");
        let mut got = [0u8; 1000];
        server.read_exact(&mut got).expect("read");
        let after = socket_bytes(&pid).expect("ss");
        // Sent by one socket and received by the other, both this process's.
        assert_eq!(after - before, 2000);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.5), 50.0);
        assert_eq!(quantile(&mut v, 0.99), 99.0);
        assert_eq!(quantile(&mut [], 0.5), 0.0);
        assert_eq!(quantile(&mut [7.0], 0.99), 7.0);
    }
}
