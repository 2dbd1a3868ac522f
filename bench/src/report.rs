//! The report: medians of the runs as markdown tables (between the markers of
//! BENCHMARKS.md, whose prose is kept), every run as JSON, and a plot (SVG).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::procfs::quantile;
use crate::suite::{Kind, Run, cpu_per_message_us, rate};

/// Figures measured outside the suite by `cargo xtask bench`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Extra {
    /// The npm package's wasm, gzipped, bytes.
    pub wasm_gzip_bytes: Option<u64>,
    /// The same, not compressed.
    pub wasm_raw_bytes: Option<u64>,
    /// The release `libmeridian_ffi.so`, stripped, bytes.
    pub mobile_lib_stripped_bytes: Option<u64>,
    /// The same, not stripped.
    pub mobile_lib_bytes: Option<u64>,
    /// Criterion medians: benchmark id to nanoseconds.
    pub micro_ns: BTreeMap<String, f64>,
}

impl Extra {
    /// From `--extra`'s JSON (fields absent: not measured).
    pub fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| format!("--extra: {e}"))
    }

    /// Adds the medians criterion wrote under `dir` (`<id>/new/estimates.json`).
    pub fn read_criterion(&mut self, dir: &Path) -> Result<(), String> {
        let mut pending = vec![dir.to_owned()];
        while let Some(at) = pending.pop() {
            let entries = std::fs::read_dir(&at).map_err(|e| format!("{}: {e}", at.display()))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir()
                    && path
                        .file_name()
                        .is_some_and(|n| n != "report" && n != "base")
                {
                    pending.push(path);
                } else if path.ends_with("new/estimates.json") {
                    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
                    let estimates: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    let id = path
                        .parent()
                        .and_then(Path::parent)
                        .and_then(|p| p.strip_prefix(dir).ok())
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    if let Some(ns) = estimates["median"]["point_estimate"].as_f64() {
                        self.micro_ns.insert(id, ns);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The medians of one (scenario, server, client).
#[derive(Debug, Clone, Serialize)]
pub struct Median {
    scenario: String,
    server: String,
    client: &'static str,
    runs: usize,
    msgs_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_msg: f64,
    client_cpu_pct: f64,
    server_cpu_pct: f64,
    rss_mib: f64,
    wakeups_per_min: f64,
    bytes_per_min: f64,
    bound: &'static str,
}

fn median(runs: &[&Run], f: impl Fn(&Run) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(|r| f(r)).collect();
    quantile(&mut v, 0.5)
}

/// The medians, in the order the groups first ran.
pub fn medians(runs: &[Run]) -> Vec<Median> {
    let mut order: Vec<(String, String, Kind)> = Vec::new();
    for r in runs {
        let key = (r.scenario.clone(), r.server.clone(), r.client);
        if !order.contains(&key) {
            order.push(key);
        }
    }
    order
        .into_iter()
        .map(|(scenario, server, client)| {
            let group: Vec<&Run> = runs
                .iter()
                .filter(|r| r.scenario == scenario && r.server == server && r.client == client)
                .collect();
            let wall_ms = |r: &Run| (r.result.seconds * 1000.0).max(1e-9);
            let client_cpu = median(&group, |r| {
                (r.result.cpu_user_ms + r.result.cpu_sys_ms) / wall_ms(r)
            });
            let server_cpu = median(&group, |r| r.server_cpu_ms / wall_ms(r));
            let per_min = |n: u64, r: &Run| n as f64 * 60.0 / r.result.seconds.max(1e-9);
            let bound = if group.iter().all(|r| r.result.messages == 0) {
                "idle"
            } else if server_cpu >= 0.9 {
                "server CPU"
            } else if client_cpu >= 0.9 {
                "client CPU"
            } else {
                "round trips"
            };
            Median {
                runs: group.len(),
                msgs_per_s: median(&group, |r| rate(&r.result)),
                p50_us: median(&group, |r| r.result.p50_us),
                p99_us: median(&group, |r| r.result.p99_us),
                cpu_us_per_msg: median(&group, |r| cpu_per_message_us(&r.result)),
                client_cpu_pct: client_cpu * 100.0,
                server_cpu_pct: server_cpu * 100.0,
                rss_mib: median(&group, |r| r.result.rss_kib as f64 / 1024.0),
                wakeups_per_min: median(&group, |r| per_min(r.result.wakeups, r)),
                bytes_per_min: median(&group, |r| per_min(r.result.io_bytes, r)),
                bound,
                scenario,
                server,
                client: client.label(),
            }
        })
        .collect()
}

fn find<'a>(m: &'a [Median], scenario: &str, server: &str, client: &str) -> Option<&'a Median> {
    m.iter()
        .find(|x| x.scenario == scenario && x.server == server && x.client == client)
}

/// `a / b` as "0.42x", or "n/a".
fn ratio(a: Option<f64>, b: Option<f64>) -> (Option<f64>, String) {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => (Some(a / b), format!("{:.2}x", a / b)),
        _ => (None, "n/a".into()),
    }
}

/// The goals of the issue, each with the measured ratio and whether it is met.
fn goals(m: &[Median]) -> String {
    let mut out =
        String::from("| goal | server | scenario | measured | met |\n|---|---|---|---|---|\n");
    let mut row = |goal: &str,
                   server: &str,
                   scenario: &str,
                   (value, shown): (Option<f64>, String),
                   met: &dyn Fn(f64) -> bool| {
        let verdict = value.map_or("n/a", |v| if met(v) { "yes" } else { "**no**" });
        let _ = writeln!(
            out,
            "| {goal} | {server} | {scenario} | {shown} | {verdict} |"
        );
    };
    // (goal, what is compared, Meridian against which client, when it is met)
    type Check = (
        &'static str,
        fn(&Median) -> f64,
        &'static str,
        fn(f64) -> bool,
    );
    let checks: [Check; 4] = [
        (
            "client CPU/msg <= 1.5x raw",
            |x| x.cpu_us_per_msg,
            "raw",
            |v| v <= 1.5,
        ),
        (
            "client CPU/msg <= 0.5x socket.io-client",
            |x| x.cpu_us_per_msg,
            "socket.io-client",
            |v| v <= 0.5,
        ),
        (
            "p99 <= 0.5x socket.io-client",
            |x| x.p99_us,
            "socket.io-client",
            |v| v <= 0.5,
        ),
        (
            "throughput >= 0.9x raw",
            |x| x.msgs_per_s,
            "raw",
            |v| v >= 0.9,
        ),
    ];
    for server in ["devserver", "node socket.io"] {
        for scenario in ["sends, window 1", "sends, window 64"] {
            for (goal, metric, other, met) in checks {
                let get = |client: &str| find(m, scenario, server, client).map(metric);
                row(
                    goal,
                    server,
                    scenario,
                    ratio(get("meridian"), get(other)),
                    &met,
                );
            }
        }
    }
    for window in ["window 1", "window 64"] {
        let get = |s: &str| {
            find(m, &format!("{s}, {window}"), "devserver", "meridian").map(|x| x.msgs_per_s)
        };
        row(
            "sealed throughput >= 0.5x plain",
            "devserver",
            window,
            ratio(get("sealed"), get("plain")),
            &|v| v >= 0.5,
        );
    }
    out
}

fn sends_table(m: &[Median]) -> String {
    let mut out = String::from(
        "| scenario | server | client | msgs/s | p50 µs | p99 µs | client CPU µs/msg | client CPU | server CPU | RSS MiB | bound by |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for x in m
        .iter()
        .filter(|x| x.scenario != "idle" && x.scenario != "scale")
    {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.0}% | {:.0}% | {:.1} | {} |",
            x.scenario,
            x.server,
            x.client,
            x.msgs_per_s,
            x.p50_us,
            x.p99_us,
            x.cpu_us_per_msg,
            x.client_cpu_pct,
            x.server_cpu_pct,
            x.rss_mib,
            x.bound
        );
    }
    out
}

fn idle_table(m: &[Median]) -> String {
    let mut out = String::from(
        "| client | wake-ups/min | TCP payload bytes sent + received/min | RSS MiB |\n|---|---:|---:|---:|\n",
    );
    for x in m.iter().filter(|x| x.scenario == "idle") {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.1} |",
            x.client, x.wakeups_per_min, x.bytes_per_min, x.rss_mib
        );
    }
    out
}

/// The scale scenario: its figures live in other fields of the result (see `suite::scale`).
fn scale_table(runs: &[Run]) -> String {
    let group: Vec<&Run> = runs.iter().filter(|r| r.scenario == "scale").collect();
    if group.is_empty() {
        return "not run\n".into();
    }
    let spaces = group[0].result.messages;
    format!(
        "| spaces joined | joined in | resident memory after joining | peak | restart to every subscription restored and 100 pending sends acked |\n|---:|---:|---:|---:|---:|\n| {spaces} | {:.2} s | {:.1} MiB | {:.1} MiB | {:.2} s |\n",
        median(&group, |r| r.result.p50_us / 1e6),
        median(&group, |r| r.result.rss_kib as f64 / 1024.0),
        median(&group, |r| r.result.peak_rss_kib as f64 / 1024.0),
        median(&group, |r| r.result.seconds),
    )
}

fn extra_table(e: &Extra) -> String {
    let kb = |b: Option<u64>| {
        b.map_or("not measured".to_owned(), |b| {
            format!("{:.1} KB", b as f64 / 1000.0)
        })
    };
    let mut out = String::from("| artifact | size |\n|---|---:|\n");
    let _ = writeln!(
        out,
        "| npm package wasm, gzipped | {} |",
        kb(e.wasm_gzip_bytes)
    );
    let _ = writeln!(out, "| npm package wasm, raw | {} |", kb(e.wasm_raw_bytes));
    let _ = writeln!(
        out,
        "| libmeridian_ffi.so (release, stripped) | {} |",
        kb(e.mobile_lib_stripped_bytes)
    );
    let _ = writeln!(
        out,
        "| libmeridian_ffi.so (release, not stripped) | {} |",
        kb(e.mobile_lib_bytes)
    );
    if !e.micro_ns.is_empty() {
        out.push_str("\n| microbenchmark (criterion, median) | time |\n|---|---:|\n");
        for (name, ns) in &e.micro_ns {
            let shown = if *ns >= 1000.0 {
                format!("{:.2} µs", ns / 1000.0)
            } else {
                format!("{ns:.0} ns")
            };
            let _ = writeln!(out, "| {name} | {shown} |");
        }
    }
    out
}

/// A bar chart of messages per second for the send scenarios, per server and client.
fn plot(m: &[Median]) -> String {
    let groups: Vec<(&str, &str)> = [
        ("sends, window 1", "devserver"),
        ("sends, window 64", "devserver"),
        ("100 spaces, window 64", "devserver"),
        ("sends, window 1", "node socket.io"),
        ("sends, window 64", "node socket.io"),
        ("100 spaces, window 64", "node socket.io"),
        ("fan-in, 100 senders", "devserver"),
    ]
    .into_iter()
    .filter(|(s, v)| m.iter().any(|x| x.scenario == *s && x.server == *v))
    .collect();
    let clients = [
        ("meridian", "#2f6fdf"),
        ("raw", "#9a9a9a"),
        ("socket.io-client", "#e0892f"),
    ];
    let top = m.iter().map(|x| x.msgs_per_s).fold(1.0, f64::max);
    let (width, height, left, bottom) = (120.0 * groups.len() as f64 + 100.0, 360.0, 70.0, 300.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">
<text x="{left}" y="16" font-size="13">messages/s (median of runs; higher is better)</text>
<line x1="{left}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="black"/>
"#,
        width - 20.0
    );
    for tick in 0..=4 {
        let value = top * f64::from(tick) / 4.0;
        let y = bottom - 260.0 * f64::from(tick) / 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{y}" text-anchor="end">{value:.0}</text><line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="gainsboro"/>"#,
            left - 6.0,
            width - 20.0
        );
    }
    for (g, (scenario, server)) in groups.iter().enumerate() {
        let x0 = left + 10.0 + 120.0 * g as f64;
        for (c, (client, color)) in clients.iter().enumerate() {
            if let Some(x) = find(m, scenario, server, client) {
                let h = 260.0 * x.msgs_per_s / top;
                let _ = writeln!(
                    svg,
                    r#"<rect x="{}" y="{}" width="30" height="{h}" fill="{color}"><title>{client}: {:.0} msg/s</title></rect>"#,
                    x0 + 32.0 * c as f64,
                    bottom - h,
                    x.msgs_per_s
                );
            }
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{scenario}</text><text x="{}" y="{}" text-anchor="middle">{server}</text>"#,
            x0 + 48.0,
            bottom + 16.0,
            x0 + 48.0,
            bottom + 30.0
        );
    }
    for (c, (client, color)) in clients.iter().enumerate() {
        let x = left + 160.0 * c as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}">{client}</text>"#,
            height - 18.0,
            x + 16.0,
            height - 8.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Machine facts for the report.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {cpu}, Linux {}", kernel.trim())
}

const BEGIN: &str =
    "<!-- results:begin (written by `cargo xtask bench`; edit outside the markers) -->";
const END: &str = "<!-- results:end -->";

/// Where the report goes: the markdown (its prose taken from `template`, the tables
/// between the markers replaced), the JSON and the plot.
pub struct Outputs {
    /// The BENCHMARKS.md whose prose is kept.
    pub template: std::path::PathBuf,
    /// The markdown written.
    pub markdown: std::path::PathBuf,
    /// Every run, the medians and the extras.
    pub json: std::path::PathBuf,
    /// The plot.
    pub svg: std::path::PathBuf,
}

impl Outputs {
    /// The repository's BENCHMARKS.md, bench/results.json and bench/results.svg.
    pub fn repository(root: &Path) -> Self {
        Self {
            template: root.join("BENCHMARKS.md"),
            markdown: root.join("BENCHMARKS.md"),
            json: root.join("bench/results.json"),
            svg: root.join("bench/results.svg"),
        }
    }

    /// The same three files under `dir`, the repository's left alone (a quick run's figures
    /// mean nothing).
    pub fn scratch(root: &Path, dir: &Path) -> Self {
        Self {
            template: root.join("BENCHMARKS.md"),
            markdown: dir.join("BENCHMARKS.md"),
            json: dir.join("results.json"),
            svg: dir.join("results.svg"),
        }
    }
}

/// Writes the report.
pub fn write(
    out: &Outputs,
    runs: &[Run],
    extra: &Extra,
    runs_per_group: usize,
) -> Result<(), String> {
    let m = medians(runs);
    let mut section = format!(
        "{BEGIN}\n\nMeasured on {}: servers pinned to core 0, each client alone on core 1, medians of {runs_per_group} runs (clients alternated run by run). CPU is the whole process's user + system time over the measured phase; \"bound by\" names the side at 90% of a core or more, else the round trips.\n\n",
        machine()
    );
    section.push_str("### Goals\n\n");
    section.push_str(&goals(&m));
    section.push_str("\n### Sends and fan-in\n\n");
    section.push_str(&sends_table(&m));
    section.push_str("\n![messages per second](bench/results.svg)\n\n### Idle (connected to 3 regions, a space joined in each)\n\n");
    section.push_str(&idle_table(&m));
    section.push_str("\n### Scale of one client (5 regions, Meridian)\n\n");
    section.push_str(&scale_table(runs));
    section.push_str("\n### Sizes and microbenchmarks\n\n");
    section.push_str(&extra_table(extra));
    section.push('\n');
    section.push_str(END);

    let path = &out.markdown;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let old = std::fs::read_to_string(&out.template)
        .unwrap_or_else(|_| format!("# Benchmarks\n\n{BEGIN}\n{END}\n"));
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if e > b => format!("{}{section}{}", &old[..b], &old[e + END.len()..]),
        _ => format!("{old}\n{section}\n"),
    };
    std::fs::write(path, new).map_err(|e| format!("{}: {e}", path.display()))?;
    let json =
        serde_json::json!({ "machine": machine(), "medians": m, "runs": runs, "extra": extra });
    let json = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(&out.json, json + "\n").map_err(|e| e.to_string())?;
    std::fs::write(&out.svg, plot(&m)).map_err(|e| e.to_string())?;
    Ok(())
}
