//! The ladder runner behind `echo-ladder`: every server, the same load, in
//! alternation, with the numbers that separate designs.
//!
//! Requests per second alone cannot tell the lessons apart on loopback: the
//! kernel's TCP work dominates, and the sending core does much of the
//! receiver's share, so the fastest single-threaded servers land close
//! together. The runner therefore records, for every server:
//!
//! - requests/s and latency percentiles, from the in-process load generator
//!   ([`crate::loadgen`]), with the client's own busy fraction so a reader
//!   can see when the client, not the server, was the limit;
//! - the server's CPU time split into user and system, read from
//!   `/proc/PID/stat` at the start and the end of the measured window;
//! - system calls per request, counted by `strace -c -f` on a separate,
//!   shorter run (tracing slows a server down, so its requests/s are never
//!   quoted);
//! - memory per connection: resident memory with 10,000 open connections,
//!   each echoed once, above a baseline taken after a warm-up load, so a
//!   buffer pool allocated on first use is already in the baseline.
//!
//! Noise between runs on a shared machine can reach 40%, so every round runs
//! every server once, in turn, with a fresh server each time: drift then hits
//! all servers alike, and the ratios within a round mean more than any one
//! absolute figure.
//!
//! # The data file, schema version 1
//!
//! `ladder.json` is one [`LadderData`] object: `schema` (always
//! `"echo-ladder"`), `schema_version` (1), `machine` (CPU count, model name,
//! kernel release, date in UTC), `command` (the command line, as run),
//! `settings` (clients list, message length, seconds, rounds), `pinning`
//! (what CPU placement was possible), `servers` (every lesson and peer, with
//! `skipped` holding the reason when it was not measured), `runs` (one row per
//! server × clients × round), `syscalls` (one row per server) and `memory`
//! (one row per server). Latencies are in microseconds, CPU times in seconds,
//! memory in KiB. Fields may be added later; existing ones keep their meaning
//! until the version changes. `ladder.csv` holds the `runs` rows as a table.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The version of `ladder.json`, bumped when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole data file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LadderData {
    /// Always `"echo-ladder"`.
    pub schema: String,
    pub schema_version: u32,
    pub machine: Machine,
    /// The command line that produced the file.
    pub command: Vec<String>,
    pub settings: Settings,
    pub pinning: Pinning,
    pub servers: Vec<ServerEntry>,
    pub runs: Vec<Run>,
    pub syscalls: Vec<Syscalls>,
    pub memory: Vec<Memory>,
}

/// Where the numbers were taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    /// `model name` from `/proc/cpuinfo`, or `"unknown"`.
    pub model: String,
    /// `uname -r`.
    pub kernel: String,
    /// `date -u`, ISO 8601.
    pub date: String,
    /// The 1-minute load average just before the first run: a busy machine
    /// makes every figure noisier.
    pub load_average: Option<f64>,
}

/// The load the runs used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub clients: Vec<usize>,
    pub length: usize,
    pub seconds: f64,
    pub rounds: usize,
    /// Clients and seconds of the strace run.
    pub strace_clients: usize,
    pub strace_seconds: f64,
    /// Connections opened for the memory measure.
    pub memory_connections: usize,
}

/// What CPU placement was possible.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pinning {
    /// `"CPU 0"`, or `"not pinned"` with the reason.
    pub server: String,
    /// `"CPU 1"`, or `"not pinned"` with the reason.
    pub client: String,
}

/// One server of the ladder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerEntry {
    /// The binary's name.
    pub name: String,
    /// `"lesson"` or `"peer"`.
    pub kind: String,
    pub model: String,
    /// Why it was not measured, when it was not.
    pub skipped: Option<String>,
}

/// One measured run: one server, one client count, one round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub server: String,
    pub round: usize,
    pub clients: usize,
    pub length: usize,
    /// The measured window, in seconds.
    pub seconds: f64,
    /// Verified responses per second (0 when `error` is set).
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// The server's CPU time in the window.
    pub server_user_seconds: Option<f64>,
    pub server_system_seconds: Option<f64>,
    /// The client thread's (user + system) / window; 1.0 is one core busy.
    pub client_busy: Option<f64>,
    /// Why the run produced no numbers.
    pub error: Option<String>,
}

/// System calls per request, from `strace -c -f`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Syscalls {
    pub server: String,
    /// Total system calls of the traced server (the whole run, start-up and
    /// connecting included).
    pub calls: Option<u64>,
    /// Verified responses in the traced run's window.
    pub requests: Option<u64>,
    pub per_request: Option<f64>,
    /// The most frequent calls, most first: `[name, count]`.
    pub top: Vec<(String, u64)>,
    /// Why there is no count (strace missing, the run failed).
    pub unavailable: Option<String>,
}

/// Memory per connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memory {
    pub server: String,
    pub connections: usize,
    /// VmRSS after the warm-up, before the connections, KiB.
    pub baseline_kib: Option<u64>,
    /// VmRSS with every connection open and echoed once, KiB.
    pub loaded_kib: Option<u64>,
    pub per_connection_kib: Option<f64>,
    pub error: Option<String>,
}

/// User and system CPU ticks, fields 14 and 15 of `/proc/PID/stat`.
///
/// The second field, the command name, is in parentheses and may itself hold
/// spaces or parentheses, so the fields are counted from the *last* `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<(u64, u64)> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) is the 12th here.
    let mut fields = after.split_whitespace().skip(11);
    let utime = fields.next()?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// The growth in KiB per connection, or `None` when there were none.
/// Negative growth (the allocator gave memory back) is kept as it is: it is
/// what was measured.
pub fn per_connection_kib(baseline_kib: u64, loaded_kib: u64, connections: usize) -> Option<f64> {
    (connections > 0).then(|| (loaded_kib as f64 - baseline_kib as f64) / connections as f64)
}

/// Parses `strace -c` output: the total count and the calls by name.
pub fn parse_strace_summary(text: &str) -> Option<(u64, Vec<(String, u64)>)> {
    let mut total = None;
    let mut by_name = Vec::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // Rows are: % time, seconds, usecs/call, calls, [errors], name.
        if cols.len() < 5 || cols[0].parse::<f64>().is_err() {
            continue;
        }
        let Ok(calls) = cols[3].parse::<u64>() else {
            continue;
        };
        let name = cols[cols.len() - 1];
        if name == "total" {
            total = Some(calls);
        } else {
            by_name.push((name.to_string(), calls));
        }
    }
    by_name.sort_by_key(|&(_, calls)| std::cmp::Reverse(calls));
    by_name.truncate(6);
    total.map(|t| (t, by_name))
}

/// The runs as CSV, one line per row, with a header.
pub fn runs_csv(runs: &[Run]) -> String {
    let mut out = String::from(
        "server,round,clients,length,seconds,requests_per_sec,p50_us,p99_us,p999_us,\
         server_user_seconds,server_system_seconds,client_busy,error\n",
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
    for r in runs {
        let _ = writeln!(
            out,
            "{},{},{},{},{:.3},{:.1},{:.1},{:.1},{:.1},{},{},{},{}",
            r.server,
            r.round,
            r.clients,
            r.length,
            r.seconds,
            r.requests_per_sec,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            opt(r.server_user_seconds),
            opt(r.server_system_seconds),
            opt(r.client_busy),
            // Errors are one line of prose: keep the CSV one field per comma.
            r.error.as_deref().unwrap_or("").replace([',', '\n'], ";"),
        );
    }
    out
}

/// Ticks per second of the `/proc/PID/stat` times.
#[cfg(target_os = "linux")]
pub fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a constant of the C library; it has no
    // pointer arguments and no preconditions.
    let ticks = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The CPU seconds (user, system) process `pid` has used so far.
#[cfg(target_os = "linux")]
pub fn process_cpu_seconds(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (u, s) = parse_stat_ticks(&stat)?;
    let hz = clock_ticks_per_sec();
    Some((u as f64 / hz, s as f64 / hz))
}

/// The command that starts server `name` on a free port: under
/// `taskset -c 0` when `pin`, with `prefix` (such as an strace command line)
/// between the two. Shared by `echo-ladder` and `cargo bench`, so both
/// start servers the same way.
pub fn server_command(name: &str, pin: bool, prefix: &[&str]) -> std::process::Command {
    let mut argv: Vec<String> = Vec::new();
    if pin {
        argv.extend(["taskset", "-c", "0"].map(String::from));
    }
    argv.extend(prefix.iter().map(|s| s.to_string()));
    argv.push(
        crate::process::binary_path(name)
            .to_string_lossy()
            .into_owned(),
    );
    argv.extend(["--addr", "127.0.0.1:0"].map(String::from));
    let mut command = std::process::Command::new(&argv[0]);
    command.args(&argv[1..]);
    command
}

/// Whether `program` is on the PATH (so `taskset` and `strace` can be used).
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// The machine, as the data file records it.
pub fn machine() -> Machine {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".to_string())
    };
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok());
    Machine {
        cpus,
        model,
        kernel: output("uname", &["-r"]),
        date: output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        load_average,
    }
}

/// Opens `count` connections to `addr`, echoes `message` once on each, and
/// keeps them all open until the returned vector is dropped. Connections are
/// opened one after another (blocking, loopback: each takes microseconds),
/// so no accept backlog overflows; the caller raises its open-file limit.
pub fn open_echoed(addr: SocketAddr, count: usize, message: &[u8]) -> io::Result<Vec<TcpStream>> {
    let mut open = Vec::with_capacity(count);
    let mut back = vec![0u8; message.len()];
    for i in 0..count {
        let fail = |what: &str, e: io::Error| {
            io::Error::new(e.kind(), format!("connection {i} of {count}: {what}: {e}"))
        };
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| fail("connect", e))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| fail("set timeout", e))?;
        s.write_all(message).map_err(|e| fail("write", e))?;
        s.read_exact(&mut back)
            .map_err(|e| fail("read the echo", e))?;
        if back != message {
            return Err(io::Error::other(format!(
                "connection {i}: the echo differs from what was sent"
            )));
        }
        open.push(s);
    }
    Ok(open)
}

/// Writes `ladder.json` and `ladder.csv` into `dir`, creating it.
pub fn write_out(dir: &Path, data: &LadderData) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let json = dir.join("ladder.json");
    let mut text = serde_json::to_string_pretty(data).map_err(io::Error::other)?;
    text.push('\n');
    std::fs::write(&json, text)?;
    let csv = dir.join("ladder.csv");
    std::fs::write(&csv, runs_csv(&data.runs))?;
    Ok(vec![json, csv])
}

/// Mean requests/s per (server, clients), over the rounds that succeeded.
pub fn mean_rates(data: &LadderData) -> Vec<(String, Vec<(usize, f64)>)> {
    let mut out: Vec<(String, Vec<(usize, f64)>)> = Vec::new();
    for server in data.servers.iter().filter(|s| s.skipped.is_none()) {
        let mut points = Vec::new();
        for &clients in &data.settings.clients {
            let rates: Vec<f64> = data
                .runs
                .iter()
                .filter(|r| r.server == server.name && r.clients == clients && r.error.is_none())
                .map(|r| r.requests_per_sec)
                .collect();
            if !rates.is_empty() {
                points.push((clients, rates.iter().sum::<f64>() / rates.len() as f64));
            }
        }
        out.push((server.name.clone(), points));
    }
    out
}

/// The median of `values` (the mean of the middle two for an even count), or
/// `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// `[p50, p99, p99.9]`, in microseconds.
pub type Percentiles = [f64; 3];

/// Latency percentiles `[p50, p99, p99.9]` in microseconds per (server,
/// clients): for each percentile, the median over the rounds that succeeded
/// of that run's figure, as the results chapter's tables give them.
pub fn median_latencies(data: &LadderData) -> Vec<(String, Vec<(usize, Percentiles)>)> {
    let mut out = Vec::new();
    for server in data.servers.iter().filter(|s| s.skipped.is_none()) {
        let mut points = Vec::new();
        for &clients in &data.settings.clients {
            let runs: Vec<&Run> = data
                .runs
                .iter()
                .filter(|r| r.server == server.name && r.clients == clients && r.error.is_none())
                .collect();
            let pick = |f: fn(&Run) -> f64| median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>());
            if let (Some(p50), Some(p99), Some(p999)) =
                (pick(|r| r.p50_us), pick(|r| r.p99_us), pick(|r| r.p999_us))
            {
                points.push((clients, [p50, p99, p999]));
            }
        }
        out.push((server.name.clone(), points));
    }
    out
}

/// Draws `requests.svg`, `latency.svg`, `syscalls.svg` and `memory.svg` into
/// `dir` from the data alone, so the charts can be redrawn without measuring
/// again.
pub fn draw_charts(dir: &Path, data: &LadderData) -> Result<Vec<PathBuf>, String> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    let err = |what: &str, e: &dyn std::fmt::Display| format!("cannot draw {what}: {e}");
    let colors = [&RED, &BLUE, &GREEN, &MAGENTA, &CYAN, &BLACK];
    let mut written = Vec::new();

    // Requests/s against clients, one line per server.
    let rates = mean_rates(data);
    let max_rate = rates
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, r)| r))
        .fold(1.0, f64::max);
    let max_clients = data.settings.clients.iter().copied().max().unwrap_or(1) as f64;
    let path = dir.join("requests.svg");
    {
        let root = SVGBackend::new(&path, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err("requests.svg", &e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "requests/s, {} B messages (mean of rounds)",
                    data.settings.length
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..max_clients * 1.05, 0.0..max_rate * 1.15)
            .map_err(|e| err("requests.svg", &e))?;
        chart
            .configure_mesh()
            .x_desc("clients")
            .y_desc("requests/s")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(|e| err("requests.svg", &e))?;
        for (i, (name, points)) in rates.iter().enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|&(c, r)| (c as f64, r)),
                    color.stroke_width(2),
                ))
                .map_err(|e| err("requests.svg", &e))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            // The lines fall from left to right: the lower left is clear.
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err("requests.svg", &e))?;
        root.present().map_err(|e| err("requests.svg", &e))?;
    }
    written.push(path);

    // Latency percentiles, one panel per client count, three bars per
    // server. Each panel has its own scale: the tail at 1,000 clients is ten
    // times the one at 50.
    let latencies = median_latencies(data);
    let panels: Vec<usize> = data
        .settings
        .clients
        .iter()
        .copied()
        .filter(|&c| {
            latencies
                .iter()
                .any(|(_, p)| p.iter().any(|&(pc, _)| pc == c))
        })
        .collect();
    if !panels.is_empty() {
        let file = "latency.svg";
        let path = dir.join(file);
        let percentiles = [("p50", &GREEN), ("p99", &BLUE), ("p99.9", &RED)];
        let names: Vec<String> = latencies.iter().map(|(n, _)| n.clone()).collect();
        let slots = names.len();
        let root = SVGBackend::new(&path, (820, 300 * panels.len() as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(file, &e))?;
        for (area, &clients) in root
            .split_evenly((panels.len(), 1))
            .iter()
            .zip(panels.iter())
        {
            let bars: Vec<(usize, Percentiles)> = latencies
                .iter()
                .enumerate()
                .filter_map(|(i, (_, p))| {
                    p.iter()
                        .find(|&&(c, _)| c == clients)
                        .map(|&(_, v)| (i, v.map(|us| us / 1000.0)))
                })
                .collect();
            let top = bars
                .iter()
                .flat_map(|(_, v)| v.iter().copied())
                .fold(0.1, f64::max)
                * 1.15;
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!(
                        "latency, {clients} clients x {} B, ms (median of rounds)",
                        data.settings.length
                    ),
                    ("sans-serif", 18),
                )
                .margin(12)
                .x_label_area_size(28)
                .y_label_area_size(56)
                .build_cartesian_2d(-0.5..slots as f64 - 0.5, 0.0..top)
                .map_err(|e| err(file, &e))?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(slots)
                // Only the whole numbers are servers; the rest stay blank.
                .x_label_formatter(&|v| {
                    let i = v.round();
                    if (v - i).abs() < 1e-6 && i >= 0.0 {
                        names.get(i as usize).cloned().unwrap_or_default()
                    } else {
                        String::new()
                    }
                })
                .y_desc("ms")
                .y_label_formatter(&|v| {
                    if top >= 10.0 {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.1}")
                    }
                })
                .draw()
                .map_err(|e| err(file, &e))?;
            for (k, &(label, color)) in percentiles.iter().enumerate() {
                let offset = (k as f64 - 1.0) * 0.27;
                chart
                    .draw_series(bars.iter().map(|&(i, v)| {
                        let x = i as f64 + offset;
                        Rectangle::new([(x - 0.12, 0.0), (x + 0.12, v[k])], color.mix(0.7).filled())
                    }))
                    .map_err(|e| err(file, &e))?
                    .label(label)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.mix(0.7).filled())
                    });
                // The value above each bar, so the chart reads without the table.
                chart
                    .draw_series(bars.iter().map(|&(i, v)| {
                        let x = i as f64 + offset;
                        let text = if v[k] < 10.0 {
                            format!("{:.2}", v[k])
                        } else {
                            format!("{:.1}", v[k])
                        };
                        Text::new(
                            text,
                            (x, v[k] + top * 0.01),
                            ("sans-serif", 11)
                                .into_font()
                                .color(&BLACK)
                                .pos(Pos::new(HPos::Center, VPos::Bottom)),
                        )
                    }))
                    .map_err(|e| err(file, &e))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(file, &e))?;
        }
        root.present().map_err(|e| err(file, &e))?;
        drop(root);
        written.push(path);
    }

    // One bar per server, for the two measures that separate the designs.
    let syscalls: Vec<(String, f64)> = data
        .syscalls
        .iter()
        .filter_map(|s| Some((s.server.clone(), s.per_request?)))
        .collect();
    let memory: Vec<(String, f64)> = data
        .memory
        .iter()
        .filter_map(|m| Some((m.server.clone(), m.per_connection_kib?.max(0.0))))
        .collect();
    for (file, title, bars) in [
        (
            "syscalls.svg",
            "system calls per request (strace -c -f)",
            &syscalls,
        ),
        (
            "memory.svg",
            "memory per connection, KiB (VmRSS growth)",
            &memory,
        ),
    ] {
        if bars.is_empty() {
            continue;
        }
        let path = dir.join(file);
        let top = bars.iter().map(|b| b.1).fold(0.1, f64::max) * 1.15;
        let root = SVGBackend::new(&path, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(file, &e))?;
        let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d((0..bars.len() - 1).into_segmented(), 0.0..top)
            .map_err(|e| err(file, &e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len())
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(|e| err(file, &e))?;
        chart
            .draw_series(
                // Rectangles in order, as `Histogram` would draw them but
                // without its hash map, so a redraw writes the same bytes.
                bars.iter().enumerate().map(|(i, b)| {
                    let end = if i + 1 == bars.len() {
                        SegmentValue::Last
                    } else {
                        SegmentValue::Exact(i + 1)
                    };
                    let mut rect = Rectangle::new(
                        [(SegmentValue::Exact(i), b.1), (end, 0.0)],
                        BLUE.mix(0.6).filled(),
                    );
                    rect.set_margin(0, 0, 12, 12);
                    rect
                }),
            )
            .map_err(|e| err(file, &e))?;
        root.present().map_err(|e| err(file, &e))?;
        // The SVG is written when the drawing area goes; it borrows `path`.
        drop(chart);
        drop(root);
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        // A name with a space and a parenthesis, as a thread may have.
        let stat = "1234 (we ird) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 1 0 123 4567 89";
        assert_eq!(parse_stat_ticks(stat), Some((250, 75)));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn memory_per_connection_is_growth_over_connections() {
        assert_eq!(per_connection_kib(1000, 41_000, 10_000), Some(4.0));
        assert_eq!(per_connection_kib(1000, 900, 100), Some(-1.0));
        assert_eq!(per_connection_kib(1000, 2000, 0), None);
    }

    #[test]
    fn the_median_is_the_middle_value() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn strace_totals_are_read() {
        let text = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.600000           2    300000           recvfrom
 39.00    0.390000           1    300000        10 sendto
  1.00    0.010000           1      1000           epoll_wait
------ ----------- ----------- --------- --------- ----------------
100.00    1.000000           1    601000        10 total
";
        let (total, top) = parse_strace_summary(text).unwrap();
        assert_eq!(total, 601_000);
        assert_eq!(top[2], ("epoll_wait".to_string(), 1000));
        assert!(parse_strace_summary("no table here").is_none());
    }
}
