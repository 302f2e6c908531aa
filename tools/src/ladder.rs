//! The ladder runner behind `echo-ladder`: every server, the same loads, in
//! alternation, with the numbers that separate designs.
//!
//! Requests per second alone cannot tell the lessons apart on loopback: the
//! kernel's TCP work dominates, the sending core does much of the receiver's
//! share, and on two cores the one-thread client saturates before a good
//! server does. So the headline figure of every run is what the *server*
//! spent: **CPU microseconds per echo**, user and system apart, read from
//! `/proc/PID/stat` as the measured window opens and as it closes. Beside it,
//! for every server and every load shape:
//!
//! - requests/s and latency percentiles from the in-process load generator
//!   ([`crate::loadgen`]), with the client's own busy share, so a reader can
//!   see when the client, not the server, was the limit;
//! - **system calls per echo, untraced**: perf's `raw_syscalls:sys_enter`
//!   tracepoint counted over the same window ([`perf`]), and the server's
//!   own count of `io_uring_enter` calls where it prints one at exit;
//! - system calls per echo **under strace** (`strace -c -f`) on a separate,
//!   shorter run, for the names of the calls. Tracing stops the server at
//!   every call, so completions pile up between two `io_uring_enter`s and
//!   the io_uring servers look cheaper under strace than they are; the
//!   untraced count is the one to quote;
//! - memory per idle connection: the server's resident memory (`VmRSS`) and
//!   the kernel's slab memory ([`slab`]) with 10,000 connections open above a
//!   baseline taken after a warm-up load.
//!
//! The loads are **shapes** ([`shapes`]): ping-pong at 1, 8, 50 and 1,000
//! clients, 16-deep pipelines, 64 KiB streams, and an open loop at a fixed
//! rate every server can carry, chosen in the run. The servers are the
//! lessons, the peers, and any **variant** given on the command line: a
//! server with other options, or another build, under a label of its own
//! ([`servers`]).
//!
//! Noise between runs on a shared machine can reach 40%, so every round runs
//! every server once per shape, in turn, with a fresh server each time: drift
//! then hits all servers alike, and the tables quote the median of the
//! rounds with the lowest and highest round beside it.
//!
//! # The data file, schema version 2
//!
//! `ladder.json` is one [`LadderData`] object. Latencies are in microseconds,
//! CPU times in seconds, memory in KiB. Fields may be added later; existing
//! ones keep their meaning until the version changes.
//!
//! - `schema` (always `"echo-ladder"`), `schema_version` (2), `machine` (CPU
//!   count, model name, kernel release, date in UTC, load average),
//!   `command` (the command line, as run), `pinning` (what CPU placement was
//!   possible).
//! - `settings`: `shapes` (the load shapes, each with `name`, `kind`,
//!   `clients`, `length`, `pipeline`, and for a rate shape `rate_per_sec`
//!   and `rate_from`, how the rate was chosen), `seconds`, `warmup_seconds`,
//!   `rounds`, `rate_share` (the share of the slowest ping-pong rate a rate
//!   shape offers when no rate is given), `untraced_syscalls` (how system
//!   calls were counted untraced, or why they were not), `strace_clients`,
//!   `strace_seconds`, `memory_connections`.
//! - `servers`: every lesson, peer and variant, with `kind` (`"lesson"`,
//!   `"peer"`, `"variant"`), `model`, `command` (the program and arguments
//!   it ran with) and `skipped` (the reason it was not measured, if it was
//!   not).
//! - `runs`: one row per server × shape × round ([`Run`]): the load
//!   (`shape`, `clients`, `length`, `pipeline`, `offered_per_sec` and
//!   `kept_up` for a rate shape), `seconds`, `responses`, requests/s,
//!   latencies, the server's CPU (`server_user_seconds`,
//!   `server_system_seconds`, and the headline `user_us_per_echo`,
//!   `system_us_per_echo`), `client_busy`, untraced system calls
//!   (`syscalls`, `syscalls_per_echo`, or `syscalls_unavailable` with the
//!   reason), the server's own `enters_per_echo` where it counts them, and
//!   `error` when the run produced no numbers.
//! - `syscalls`: one row per server from the strace run ([`Syscalls`]).
//! - `memory`: one row per server ([`Memory`]): `VmRSS` before and with the
//!   connections, and `kernel` ([`KernelMemory`]): the slab growth, with the
//!   `method` that measured it, or `unavailable` with the reason.
//!
//! Version 2 replaced version 1's `settings.clients` and `settings.length`
//! with `shapes`, added the fields above to `runs`, `servers` and `memory`,
//! and moved the latency chart to one panel per shape. `ladder.csv` holds the
//! `runs` rows as a table; `tables/*.md` are the book's tables, generated from
//! the JSON alone ([`tables`]).

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod charts;
#[cfg(target_os = "linux")]
pub mod perf;
pub mod servers;
pub mod shapes;
pub mod slab;
pub mod summary;
pub mod tables;

pub use charts::draw_charts;
pub use shapes::{Shape, ShapeKind};

/// The version of `ladder.json`, bumped when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 2;

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

/// The loads the runs used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// The shapes, in the order each round ran them, rates resolved.
    pub shapes: Vec<Shape>,
    /// The measured window of every run.
    pub seconds: f64,
    /// Load before each window whose numbers are thrown away.
    pub warmup_seconds: f64,
    pub rounds: usize,
    /// The share of the slowest server's ping-pong rate that a rate shape
    /// without a rate of its own offers.
    pub rate_share: f64,
    /// How system calls were counted without a tracer, or "not measured,
    /// because …".
    pub untraced_syscalls: String,
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

/// One server of the ladder: a lesson, a peer, or a variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerEntry {
    /// The binary's name, or the variant's label.
    pub name: String,
    /// `"lesson"`, `"peer"` or `"variant"`.
    pub kind: String,
    pub model: String,
    /// The program and its arguments, as run (the program as a path from
    /// the repository's root where it is inside it; without `taskset`).
    pub command: Vec<String>,
    /// Why it was not measured, when it was not.
    pub skipped: Option<String>,
}

/// One measured run: one server, one shape, one round.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Run {
    pub server: String,
    /// The shape's name (see `settings.shapes`).
    pub shape: String,
    pub round: usize,
    pub clients: usize,
    pub length: usize,
    pub pipeline: usize,
    /// For a rate shape, the requests/s offered.
    pub offered_per_sec: Option<f64>,
    /// For a rate shape, whether the server answered 95% of the offered
    /// rate or more.
    pub kept_up: Option<bool>,
    /// The measured window, in seconds.
    pub seconds: f64,
    /// Verified responses in the window.
    pub responses: u64,
    /// Verified responses per second (0 when `error` is set).
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// The server's CPU time in the window.
    pub server_user_seconds: Option<f64>,
    pub server_system_seconds: Option<f64>,
    /// The headline: the server's CPU time per verified echo, microseconds.
    pub user_us_per_echo: Option<f64>,
    pub system_us_per_echo: Option<f64>,
    /// The client thread's (user + system) / window; 1.0 is one core busy.
    pub client_busy: Option<f64>,
    /// System calls the server entered in the window, counted by perf's
    /// `raw_syscalls:sys_enter` tracepoint (no tracer stops the server).
    pub syscalls: Option<u64>,
    pub syscalls_per_echo: Option<f64>,
    /// "not measured, because …" when `syscalls` is missing.
    pub syscalls_unavailable: Option<String>,
    /// The server's own count of `io_uring_enter` calls (the `enters` of
    /// its `stats:` line at exit) per echo of the whole run, warm-up and
    /// drain included; for servers that print one.
    pub enters_per_echo: Option<f64>,
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

/// Memory per idle connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memory {
    pub server: String,
    pub connections: usize,
    /// VmRSS after the warm-up, before the connections, KiB.
    pub baseline_kib: Option<u64>,
    /// VmRSS with every connection open and echoed once, KiB.
    pub loaded_kib: Option<u64>,
    pub per_connection_kib: Option<f64>,
    /// The kernel's side, over the same two moments.
    pub kernel: KernelMemory,
    pub error: Option<String>,
}

/// Kernel memory per idle connection: what `VmRSS` cannot see (socket
/// structures, file and epoll entries, io_uring requests).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KernelMemory {
    /// How it was measured, in words, including what the figure counts
    /// besides the server (see [`slab::METHOD`]).
    pub method: String,
    pub baseline_kib: Option<u64>,
    pub loaded_kib: Option<u64>,
    pub per_connection_kib: Option<f64>,
    /// The caches that grew most, most first: `[name, KiB]`.
    pub top: Vec<(String, i64)>,
    /// "not measured, because …" when there is no figure.
    pub unavailable: Option<String>,
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

/// CPU seconds per echo, in microseconds, or `None` without echoes.
pub fn us_per_echo(seconds: f64, echoes: u64) -> Option<f64> {
    (echoes > 0).then(|| seconds * 1e6 / echoes as f64)
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
        "server,shape,round,clients,length,pipeline,offered_per_sec,kept_up,seconds,responses,\
         requests_per_sec,p50_us,p99_us,p999_us,server_user_seconds,server_system_seconds,\
         user_us_per_echo,system_us_per_echo,client_busy,syscalls,syscalls_per_echo,\
         enters_per_echo,error\n",
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
    // Errors and reasons are one line of prose: keep one field per comma.
    let prose = |t: Option<&str>| t.unwrap_or("").replace([',', '\n'], ";");
    for r in runs {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{:.3},{},{:.1},{:.1},{:.1},{:.1},{},{},{},{},{},{},{},{},{}",
            r.server,
            r.shape,
            r.round,
            r.clients,
            r.length,
            r.pipeline,
            r.offered_per_sec
                .map(|v| format!("{v:.0}"))
                .unwrap_or_default(),
            r.kept_up.map(|k| k.to_string()).unwrap_or_default(),
            r.seconds,
            r.responses,
            r.requests_per_sec,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            opt(r.server_user_seconds),
            opt(r.server_system_seconds),
            opt(r.user_us_per_echo),
            opt(r.system_us_per_echo),
            opt(r.client_busy),
            r.syscalls.map(|n| n.to_string()).unwrap_or_default(),
            opt(r.syscalls_per_echo),
            opt(r.enters_per_echo),
            prose(r.error.as_deref()),
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

/// The CPU seconds (user, system) process `pid` has used so far, all its
/// threads together (those that exited included).
#[cfg(target_os = "linux")]
pub fn process_cpu_seconds(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (u, s) = parse_stat_ticks(&stat)?;
    let hz = clock_ticks_per_sec();
    Some((u as f64 / hz, s as f64 / hz))
}

/// The command that starts lesson or peer `name` on a free port: under
/// `taskset -c 0` when `pin`, with `prefix` (such as an strace command line)
/// between the two. `cargo bench` starts servers with it; `echo-ladder`
/// starts lessons, peers and variants alike with
/// [`servers::ServerSpec::command`], which this is the simple case of.
pub fn server_command(name: &str, pin: bool, prefix: &[&str]) -> Command {
    servers::launch(&crate::process::binary_path(name), &[], pin, prefix)
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

/// Reads `DIR/ladder.json`.
pub fn read_data(dir: &Path) -> Result<LadderData, String> {
    let path = dir.join("ladder.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not ladder data: {e}", path.display()))
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
    fn cpu_per_echo_is_in_microseconds() {
        assert_eq!(us_per_echo(0.5, 100_000), Some(5.0));
        assert_eq!(us_per_echo(0.5, 0), None);
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

    #[test]
    fn the_csv_has_one_line_per_run_and_keeps_prose_in_one_field() {
        let run = Run {
            server: "03_epoll".into(),
            shape: "pingpong-50".into(),
            error: Some("a, b\nc".into()),
            ..Run::default()
        };
        let csv = runs_csv(&[run]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2);
        let header = lines[0].split(',').count();
        assert_eq!(lines[1].split(',').count(), header, "{csv}");
        assert!(lines[1].ends_with("a; b;c"), "{csv}");
    }
}
