//! The data of `chapter-data` (the chapter experiments of lessons 02 to 05,
//! made with the repository's own load generator) and the Markdown tables
//! the chapters include.
//!
//! Each experiment is a list of cases: one lesson binary, started on a free
//! port, and one `echo-bench` command, the one the chapter prints. Each
//! round runs every case once, in order, so the servers alternate. A run
//! records its exact commands and a map of counts: the server's context
//! switches, the counters of its `stats:` line at exit, the system calls
//! `strace -c` counted while it was attached, and for `--no-read` the
//! queues `ss` showed. The tables under `tables/` are a function of
//! `chapters.json`: `--redraw` writes them again, and `tests/chapter_data.rs`
//! checks that the committed ones are what the data renders.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ladder::Machine;

pub const SCHEMA: &str = "chapter-data";
pub const SCHEMA_VERSION: u32 = 1;
/// The data file under the output folder.
pub const FILE: &str = "chapters.json";
/// The folder under the output folder that holds the tables.
pub const DIR: &str = "tables";
/// Where the command writes by default, from the repository's root.
pub const DEFAULT_OUT: &str = "chapters/data/chapters";

/// One server and one client command: a row of an experiment's table.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The row's label in the data and the table.
    pub label: &'static str,
    /// The lesson binary.
    pub server: &'static str,
    /// The lesson's options (besides `--addr 127.0.0.1:0`).
    pub server_args: &'static [&'static str],
    /// A command the server runs under, put between `taskset` and the
    /// lesson: `prlimit --nofile=32:32` gives it few descriptors. It must
    /// `exec` the lesson, so that the process we signal and measure is the
    /// lesson itself.
    pub prefix: &'static [&'static str],
    /// `echo-bench`'s options, as the chapter prints them (besides `-a`
    /// and `--pin`).
    pub client: &'static [&'static str],
    /// Whether `strace -c -f -p PID` is attached for the client's run.
    pub strace: bool,
    /// `echo-bench --hold` options for a first client that takes its
    /// connections before the measured client starts, and keeps them for
    /// its `-d` seconds while that one runs; empty for none. It is how a
    /// case fills the server's table or its descriptors, so that the
    /// measured client has to wait for them to free up.
    pub holder: &'static [&'static str],
}

/// One experiment: its name (the table's file name), the chapter that
/// quotes it, its cases, and how many rounds a run makes unless `--rounds`
/// says otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Experiment {
    pub name: &'static str,
    pub chapter: &'static str,
    pub cases: &'static [Case],
    pub rounds: u32,
}

/// The rounds of most experiments: their figures vary little from run to
/// run, and three show how much.
pub const ROUNDS: u32 = 3;

const fn case(
    label: &'static str,
    server: &'static str,
    server_args: &'static [&'static str],
    client: &'static [&'static str],
    strace: bool,
) -> Case {
    Case {
        label,
        server,
        server_args,
        prefix: &[],
        client,
        strace,
        holder: &[],
    }
}

impl Case {
    /// The same case, with the server started under `prefix`.
    const fn under(self, prefix: &'static [&'static str]) -> Case {
        Case { prefix, ..self }
    }

    /// The same case, with a first client, `echo-bench` with `holder`, that
    /// holds its connections while the measured one runs.
    const fn after(self, holder: &'static [&'static str]) -> Case {
        Case { holder, ..self }
    }
}

const ONE: &[&str] = &["-c", "1", "-l", "64", "--echoes", "10000"];
const HUNDRED: &[&str] = &["-c", "100", "-l", "64", "--echoes", "100"];
const FIFTY: &[&str] = &["-c", "50", "-l", "64", "--echoes", "200"];
const EDGE: &[&str] = &["--trigger", "edge"];
const NO_READ: &[&str] = &["-c", "1", "-d", "5", "--no-read"];
const HOLD_1000: &[&str] = &["-c", "1000", "-l", "1", "--hold"];

/// Lesson 05, the server of the hardening page.
const MULTISHOT: &str = "05_uring_multishot";
/// One peer that sends 64 KiB writes for a second and never reads an echo,
/// as the grader's `stalled` check does: the burst that a multishot
/// receive takes before the server sees any of it.
const NEVER_READS: &[&str] = &["-c", "1", "-d", "1", "-l", "65536", "--no-read"];
/// The clients that wait: 20 connect while the server is full, send, and
/// must be served once the holder hangs up.
const LATECOMERS_20: &[&str] = &["-c", "20", "-l", "64", "--echoes", "100"];

/// Every experiment, in the order a full run makes them: those that keep
/// lesson 02's hundreds of threads busy last, since runnable threads raise
/// the load average each record reads before its first run (idle ones, as
/// in `hold-memory`, do not).
pub const EXPERIMENTS: &[Experiment] = &[
    Experiment {
        name: "hold-memory",
        chapter: "03_epoll.md",
        rounds: ROUNDS,
        cases: &[
            case("02_threads, 1,000", "02_threads", &[], HOLD_1000, false),
            case("03_epoll, 1,000", "03_epoll", &[], HOLD_1000, false),
            case(
                "03_epoll, 10,000",
                "03_epoll",
                &[],
                &["-c", "10000", "-l", "1", "--hold"],
                false,
            ),
        ],
    },
    Experiment {
        name: "epoll-strace",
        chapter: "03_epoll.md, 04_uring.md",
        rounds: ROUNDS,
        cases: &[case("level", "03_epoll", &[], ONE, true)],
    },
    Experiment {
        name: "epoll-triggers",
        chapter: "03_epoll.md",
        rounds: ROUNDS,
        cases: &[
            case("level, under strace", "03_epoll", &[], ONE, true),
            case("level, no strace", "03_epoll", &[], ONE, false),
            case("edge, under strace", "03_epoll", EDGE, ONE, true),
            case("edge, no strace", "03_epoll", EDGE, ONE, false),
        ],
    },
    Experiment {
        name: "epoll-triggers-100",
        chapter: "03_epoll.md",
        rounds: ROUNDS,
        cases: &[
            case("level", "03_epoll", &[], HUNDRED, false),
            case("edge", "03_epoll", EDGE, HUNDRED, false),
        ],
    },
    Experiment {
        name: "epoll-no-read",
        chapter: "03_epoll.md",
        rounds: ROUNDS,
        cases: &[
            case("262,144 (the default)", "03_epoll", &[], NO_READ, false),
            case(
                "67,108,864 (64 MiB)",
                "03_epoll",
                &["--max-queued-bytes", "67108864"],
                NO_READ,
                false,
            ),
        ],
    },
    Experiment {
        name: "uring-syscalls",
        chapter: "04_uring.md",
        rounds: ROUNDS,
        cases: &[
            case("1 × 10,000, under strace", "03_epoll", &[], ONE, true),
            case("1 × 10,000, under strace", "04_uring", &[], ONE, true),
            case("50 × 200, under strace", "03_epoll", &[], FIFTY, true),
            case("50 × 200, under strace", "04_uring", &[], FIFTY, true),
            case("50 × 200, no strace", "03_epoll", &[], FIFTY, false),
            case("50 × 200, no strace", "04_uring", &[], FIFTY, false),
        ],
    },
    Experiment {
        name: "epoll-switches",
        chapter: "03_epoll.md",
        rounds: ROUNDS,
        cases: &[
            case("02_threads", "02_threads", &[], HUNDRED, false),
            case("03_epoll", "03_epoll", &[], HUNDRED, false),
        ],
    },
    Experiment {
        name: "multishot-burst",
        chapter: "05_uring_multishot_hardening.md",
        // The overshoot varies from run to run, and the page speaks of
        // most runs and the largest: ten show both.
        rounds: 10,
        cases: &[
            case("defaults", MULTISHOT, &[], NEVER_READS, false),
            case(
                "one buffer per connection",
                MULTISHOT,
                &["--max-buffers-per-conn", "1"],
                NEVER_READS,
                false,
            ),
            case(
                "256-byte buffers",
                MULTISHOT,
                &["--buffer-size", "256"],
                NEVER_READS,
                false,
            ),
            case(
                "1,024-byte buffers",
                MULTISHOT,
                &["--buffer-size", "1024"],
                NEVER_READS,
                false,
            ),
        ],
    },
    Experiment {
        name: "multishot-dry",
        chapter: "05_uring_multishot_hardening.md",
        rounds: ROUNDS,
        cases: &[case(
            "4 buffers of 64 bytes",
            MULTISHOT,
            &["--buffers", "4", "--buffer-size", "64"],
            &["-c", "50", "-l", "64", "--echoes", "2000"],
            false,
        )],
    },
    Experiment {
        name: "multishot-accept",
        chapter: "05_uring_multishot_hardening.md",
        rounds: ROUNDS,
        cases: &[
            // Eight hold every slot for two seconds; eight more connect
            // meanwhile and wait in the listen queue.
            case(
                "a cap of 8 connections",
                MULTISHOT,
                &["--max-conns", "8"],
                &["-c", "8", "-l", "64", "--echoes", "100"],
                false,
            )
            .after(&["-c", "8", "-l", "64", "--hold", "-d", "2"]),
            // 32 descriptors: stdin, stdout, stderr, the ring, the listener
            // and the signalfd leave 26 for clients. Twenty hold theirs for
            // two seconds, so 6 of the 20 latecomers fit and 14 find none.
            case("32 descriptors", MULTISHOT, &[], LATECOMERS_20, false)
                .under(&["prlimit", "--nofile=32:32"])
                .after(&["-c", "20", "-l", "64", "--hold", "-d", "2"]),
        ],
    },
    Experiment {
        name: "threads-switches",
        chapter: "02_threads.md",
        rounds: ROUNDS,
        cases: &[
            case("01, 1 × 10,000", "01_blocking", &[], ONE, false),
            case("02, 1 × 10,000", "02_threads", &[], ONE, false),
            case("02, 100 × 100", "02_threads", &[], HUNDRED, false),
            case(
                "02, 1,000 × 10",
                "02_threads",
                &[],
                &["-c", "1000", "-l", "64", "--echoes", "10"],
                false,
            ),
            case(
                "02, 1,000 × 1",
                "02_threads",
                &[],
                &["-c", "1000", "-l", "64", "--echoes", "1"],
                false,
            ),
        ],
    },
];

/// The experiment called `name`.
pub fn experiment(name: &str) -> Option<&'static Experiment> {
    EXPERIMENTS.iter().find(|e| e.name == name)
}

/// The echoes a client command makes: `-c` times `--echoes`, or 0 when it
/// makes no counted echoes (`--no-read`).
pub fn echoes(client: &[&str]) -> u64 {
    let value = |flag: &str| {
        client
            .windows(2)
            .find(|w| w[0] == flag)
            .and_then(|w| w[1].parse::<u64>().ok())
    };
    match (value("-c"), value("--echoes")) {
        (Some(c), Some(n)) => c * n,
        _ => 0,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChapterData {
    pub schema: String,
    pub schema_version: u32,
    /// One record per experiment measured, in the order of [`EXPERIMENTS`]
    /// (`--only` replaces the named ones and keeps the others).
    pub experiments: Vec<Record>,
}

/// One experiment's runs, and where and how they were made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub machine: Machine,
    /// The command line that made these runs.
    pub command: Vec<String>,
    pub rounds: u32,
    /// Whether servers ran on CPU 0 and the client on CPU 1.
    pub pinned: bool,
    /// Why strace counts are missing, when they are (no `strace`).
    pub strace_skipped: Option<String>,
    pub runs: Vec<Run>,
}

/// One case, once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub case: String,
    pub round: u32,
    pub server: String,
    /// The exact commands: the server's, strace's when attached, the client's.
    pub server_command: Vec<String>,
    pub strace_command: Option<Vec<String>>,
    /// The first client's, when the case has one that holds connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_command: Option<Vec<String>>,
    pub client_command: Vec<String>,
    /// Echoes the client made (clients × `--echoes`), 0 for `--no-read`.
    pub echoes: u64,
    /// The counts, by name:
    /// - `voluntary_ctxt_switches`, `nonvoluntary_ctxt_switches`: the
    ///   server's, every thread from start to exit (`getrusage` of the
    ///   reaped child);
    /// - `run.voluntary_ctxt_switches`, `run.nonvoluntary_ctxt_switches`:
    ///   the main thread's over the client's run (`/proc/PID/status`
    ///   before and after);
    /// - `stats.NAME`: the server's `stats:` line at exit;
    /// - `startup.NAME`: lesson 05's start-up line (see [`parse_startup`]);
    /// - `strace.NAME`, `strace.total`: `strace -c` while attached;
    /// - `sent_bytes`: `--no-read`'s `Sent:` line; `rss_before_kib`,
    ///   `rss_stalled_kib`: the server's VmRSS before the client and at
    ///   the last `ss` sample; `ss.server_recv_q`, `ss.server_send_q`,
    ///   `ss.client_recv_q`, `ss.client_send_q`: that sample's queues;
    /// - for `--hold`: `rss_before_kib`, `vmsize_before_kib`,
    ///   `threads_before` when the server is listening, `rss_held_kib`,
    ///   `vmsize_held_kib`, `threads_held` once the client says it holds
    ///   every connection, and `kernel_stack_growth_kib`, the growth of
    ///   `KernelStack` in `/proc/meminfo` (system-wide) between the two.
    pub counts: BTreeMap<String, u64>,
    /// Why the run has no figures, when it failed.
    pub error: Option<String>,
}

impl Run {
    pub fn count(&self, name: &str) -> Option<u64> {
        self.counts.get(name).copied()
    }
}

/// Parses `strace -c` output: every row's call count by name, and the
/// total, under the key `total`.
pub fn parse_strace_counts(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors,] syscall.
        if !(5..=6).contains(&cols.len()) || cols[0].parse::<f64>().is_err() {
            continue;
        }
        if let Ok(calls) = cols[3].parse::<u64>() {
            counts.insert(cols[cols.len() - 1].to_string(), calls);
        }
    }
    counts
}

/// Every `NAME VALUE` pair of the `stats:` line in a server's stderr.
pub fn parse_stats_line(stderr: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let Some(line) = stderr.lines().find_map(|l| l.strip_prefix("stats:")) else {
        return counts;
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    for pair in words.chunks(2) {
        if let [name, value] = pair
            && let Ok(value) = value.parse()
        {
            counts.insert(name.to_string(), value);
        }
    }
    counts
}

/// Lesson 05's `io_uring:` start-up line, which says how the pool was set
/// up after the server applied its own limits: `startup.open_buffers`,
/// `startup.buffer_size`, `startup.reserve_buffers`, `startup.share` (the
/// "at most N per connection", which may be less than the option asked
/// for) and `startup.multishot_recv`, 1 for multishot receives and 0 for
/// one-buffer ones. Empty when there is no such line.
pub fn parse_startup(stderr: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let Some(line) = stderr.lines().find_map(|l| l.strip_prefix("io_uring:")) else {
        return counts;
    };
    let words: Vec<&str> = line
        .split_whitespace()
        .map(|w| w.trim_end_matches(','))
        .collect();
    let mut put = |name: &str, word: Option<&&str>| {
        // The first mention is the figure; the reason in parentheses that
        // follows may have numbers of its own.
        if let Some(value) = word.and_then(|w| w.parse::<u64>().ok()) {
            counts.entry(format!("startup.{name}")).or_insert(value);
        }
    };
    for (i, pair) in words.windows(2).enumerate() {
        match pair {
            ["buffers", "of"] => put("open_buffers", i.checked_sub(1).and_then(|j| words.get(j))),
            [_, "bytes"] => put("buffer_size", words.get(i)),
            ["reserve", "of"] => put("reserve_buffers", words.get(i + 2)),
            ["at", "most"] => put("share", words.get(i + 2)),
            _ => {}
        }
    }
    if let Some(mode) = words
        .windows(2)
        .find(|pair| pair[1] == "receives")
        .map(|pair| pair[0])
    {
        counts.insert(
            "startup.multishot_recv".into(),
            u64::from(mode == "multishot"),
        );
    }
    counts
}

/// The queues of one TCP connection in `ss -tnH` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queues {
    pub recv_q: u64,
    pub send_q: u64,
}

/// From `ss -tnH` output, the queues of the server's end (local port
/// `port`) and of the client's end (peer port `port`).
pub fn parse_ss(text: &str, port: u16) -> (Option<Queues>, Option<Queues>) {
    let (mut server, mut client) = (None, None);
    let ends_with_port =
        |addr: &str| addr.rsplit_once(':').map(|(_, p)| p) == Some(&*port.to_string());
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // State, Recv-Q, Send-Q, local, peer (with -H, no header).
        if cols.len() < 5 {
            continue;
        }
        let (Ok(recv_q), Ok(send_q)) = (cols[1].parse(), cols[2].parse()) else {
            continue;
        };
        let queues = Some(Queues { recv_q, send_q });
        if ends_with_port(cols[3]) {
            server = queues;
        } else if ends_with_port(cols[4]) {
            client = queues;
        }
    }
    (server, client)
}

/// The `Sent: N bytes` line of `echo-bench --no-read`.
pub fn parse_sent(stdout: &str) -> Option<u64> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Sent:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

pub fn read(dir: &Path) -> Result<ChapterData, String> {
    let path = dir.join(FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the data and its tables; returns the files written.
pub fn write_out(dir: &Path, data: &ChapterData) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir.join(DIR))?;
    let path = dir.join(FILE);
    let json = serde_json::to_string_pretty(data).map_err(io::Error::other)?;
    std::fs::write(&path, json + "\n")?;
    let mut written = vec![path];
    written.extend(write_tables(dir, data)?);
    Ok(written)
}

pub fn write_tables(dir: &Path, data: &ChapterData) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir.join(DIR))?;
    let mut written = Vec::new();
    for (name, text) in render(data) {
        let path = dir.join(DIR).join(name);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// Every table the data holds runs for: (file name, Markdown).
pub fn render(data: &ChapterData) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for exp in EXPERIMENTS {
        let Some(record) = data.experiments.iter().find(|r| r.name == exp.name) else {
            continue;
        };
        let body = match exp.name {
            "threads-switches" | "epoll-switches" => switches(record, exp),
            "epoll-strace" => strace_table(record, exp),
            "epoll-triggers" | "epoll-triggers-100" => triggers(record, exp),
            "epoll-no-read" => no_read(record, exp),
            "hold-memory" => hold(record, exp),
            "uring-syscalls" => uring(record, exp),
            "multishot-burst" => burst(record, exp),
            "multishot-dry" => dry(record, exp),
            "multishot-accept" => accept(record, exp),
            _ => String::new(),
        };
        out.push((format!("{}.md", exp.name), body + &footer(record)));
    }
    if let Some(figures) = hardening_figures(data) {
        out.push((FIGURES.to_string(), figures));
    }
    out
}

/// The file of single figures that the hardening page's prose includes,
/// one mdBook anchor each, from lesson 05's experiments.
pub const FIGURES: &str = "hardening-figures.md";

fn footer(record: &Record) -> String {
    let m = &record.machine;
    let load = m
        .load_average
        .map_or("unknown".to_string(), |l| format!("{l:.2}"));
    let pinned = if record.pinned {
        "server on CPU 0 (`taskset -c 0`), client on CPU 1 (`--pin 1`)"
    } else {
        "not pinned"
    };
    let strace = record
        .strace_skipped
        .as_ref()
        .map_or(String::new(), |why| format!(" No strace counts: {why}."));
    format!(
        "\n{} round{}, the cases alternating in each; {pinned}. {} CPUs ({}), Linux {}, {}, \
         load average {load} before the first run.{strace}\n\n\
         *Generated from `{DEFAULT_OUT}/{FILE}` by `cargo run --release --bin chapter-data -- \
         --only {}` (`--redraw` to re-render); do not edit by hand.*\n",
        record.rounds,
        if record.rounds == 1 { "" } else { "s" },
        m.cpus,
        m.model,
        m.kernel,
        m.date,
        record.name
    )
}

/// The good runs of one case, in round order.
fn good<'a>(record: &'a Record, case: &Case) -> Vec<&'a Run> {
    record
        .runs
        .iter()
        .filter(|r| r.case == case.label && r.server == case.server)
        .filter(|r| r.error.is_none())
        .collect()
}

/// A number with thousands separators.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The smallest and largest of a figure over runs, as `a` or `a–b`;
/// `—` when no run has it.
fn range_of(runs: &[&Run], figure: impl Fn(&Run) -> Option<u64>) -> String {
    let values: Vec<u64> = runs.iter().filter_map(|r| figure(r)).collect();
    match (values.iter().min(), values.iter().max()) {
        (Some(lo), Some(hi)) if lo == hi => thousands(*lo),
        (Some(lo), Some(hi)) => format!("{}–{}", thousands(*lo), thousands(*hi)),
        _ => "—".to_string(),
    }
}

/// The same for a ratio, with `places` decimals.
fn ratio_range(runs: &[&Run], places: usize, figure: impl Fn(&Run) -> Option<f64>) -> String {
    let values: Vec<f64> = runs.iter().filter_map(|r| figure(r)).collect();
    if values.is_empty() {
        return "—".to_string();
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (a, b) = (format!("{lo:.places$}"), format!("{hi:.places$}"));
    if a == b { a } else { format!("{a}–{b}") }
}

fn per_echo(run: &Run, count: Option<u64>) -> Option<f64> {
    (run.echoes > 0).then_some(count? as f64 / run.echoes as f64)
}

fn client_line(case: &Case) -> String {
    format!("`echo-bench {}`", case.client.join(" "))
}

/// The server's command as a table shows it: the prefix, if any, the
/// lesson and its options.
fn server_line(case: &Case) -> String {
    let words: Vec<&str> = case
        .prefix
        .iter()
        .chain(std::iter::once(&case.server))
        .chain(case.server_args)
        .copied()
        .collect();
    format!("`{}`", words.join(" "))
}

fn switches(data: &Record, exp: &Experiment) -> String {
    let mut t = String::from(
        "| server | client | echoes | voluntary switches | per echo | involuntary switches |\n\
         |---|---|---:|---:|---:|---:|\n",
    );
    for case in exp.cases {
        let runs = good(data, case);
        let v = "voluntary_ctxt_switches";
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} |",
            server_line(case),
            client_line(case),
            thousands(echoes(case.client)),
            range_of(&runs, |r| r.count(v)),
            ratio_range(&runs, 2, |r| per_echo(r, r.count(v))),
            range_of(&runs, |r| r.count("nonvoluntary_ctxt_switches")),
        );
    }
    t.push_str(
        "\nSwitches of every thread of the server from start to exit (`getrusage` of the \
         reaped server), start-up and shutdown included.\n",
    );
    t
}

fn strace_table(data: &Record, exp: &Experiment) -> String {
    let case = &exp.cases[0];
    let runs = good(data, case);
    let mut names: Vec<(String, u64)> = Vec::new();
    if let Some(first) = runs.first() {
        for (key, &calls) in &first.counts {
            if let Some(name) = key.strip_prefix("strace.")
                && name != "total"
            {
                names.push((name.to_string(), calls));
            }
        }
    }
    names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut t = format!(
        "| system call | calls under `strace -c -f -p PID`: {} with {} |\n|---|---:|\n",
        server_line(case),
        client_line(case)
    );
    for (name, _) in &names {
        let key = format!("strace.{name}");
        let _ = writeln!(t, "| `{name}` | {} |", range_of(&runs, |r| r.count(&key)));
    }
    let _ = writeln!(
        t,
        "| total | {} |",
        range_of(&runs, |r| r.count("strace.total"))
    );
    let _ = writeln!(
        t,
        "\nThe server's own `stats:` line in the same runs: `epoll_waits` {}, `reads` {}, \
         `writes` {}. strace was attached after the server printed its address and \
         detached before it was stopped, so start-up and exit are not counted, nor the call the \
         server was already waiting in when strace attached.",
        range_of(&runs, |r| r.count("stats.epoll_waits")),
        range_of(&runs, |r| r.count("stats.reads")),
        range_of(&runs, |r| r.count("stats.writes")),
    );
    t
}

fn triggers(data: &Record, exp: &Experiment) -> String {
    let mut t = format!(
        "| {} | `epoll_wait` | `read` | of which `EAGAIN` | `write` | per echo |\n\
         |---|---:|---:|---:|---:|---:|\n",
        exp.cases
            .first()
            .map_or(String::new(), |c| format!("{} of 64 B", client_line(c)))
    );
    for case in exp.cases {
        let runs = good(data, case);
        let sum = |r: &Run| {
            Some(
                r.count("stats.epoll_waits")?
                    + r.count("stats.reads")?
                    + r.count("stats.writes")?,
            )
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} |",
            case.label,
            range_of(&runs, |r| r.count("stats.epoll_waits")),
            range_of(&runs, |r| r.count("stats.reads")),
            range_of(&runs, |r| r.count("stats.eagain")),
            range_of(&runs, |r| r.count("stats.writes")),
            ratio_range(&runs, 2, |r| per_echo(r, sum(r))),
        );
    }
    t.push_str(if exp.cases.iter().any(|c| c.strace) {
        "\nThe counts are the server's own (`stats:` line at exit), with and without \
         `strace -c -f -p PID` attached for the client's run.\n"
    } else {
        "\nThe counts are the server's own (`stats:` line at exit), no strace attached.\n"
    });
    t
}

fn no_read(data: &Record, exp: &Experiment) -> String {
    let mut t = String::from(
        "| `--max-queued-bytes` | round | client sent | server VmRSS before | server VmRSS, \
         stalled | client `Send-Q` | server `Recv-Q` | server `Send-Q` | client `Recv-Q` | \
         `short_writes`, `backpressure_pauses` |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    // One row per run: the queues of one sample add up only with each other.
    for case in exp.cases {
        for run in good(data, case) {
            let n = |key: &str| run.count(key).map_or("—".to_string(), thousands);
            let mib = run.count("sent_bytes").map_or("—".to_string(), |b| {
                format!("{:.1} MiB", b as f64 / 1_048_576.0)
            });
            let _ = writeln!(
                t,
                "| {} | {} | {mib} | {} kB | {} kB | {} | {} | {} | {} | {}, {} |",
                case.label,
                run.round,
                n("rss_before_kib"),
                n("rss_stalled_kib"),
                n("ss.client_send_q"),
                n("ss.server_recv_q"),
                n("ss.server_send_q"),
                n("ss.client_recv_q"),
                n("stats.short_writes"),
                n("stats.backpressure_pauses"),
            );
        }
    }
    let client = exp.cases.first().map_or(String::new(), client_line);
    let _ = writeln!(
        t,
        "\nThe client is {client}. Queues in bytes, from `ss -tnH` sampled every 200 ms while \
         it ran; each row gives its run's last sample taken while the client was still \
         running, with the server's VmRSS read at the same moment."
    );
    t
}

fn hold(data: &Record, exp: &Experiment) -> String {
    let mut t = String::from(
        "| server | connections held | VmRSS listening | VmRSS holding | growth per connection | \
         threads holding | VmSize listening | VmSize holding | `KernelStack` growth |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for case in exp.cases {
        let runs = good(data, case);
        let held = case
            .client
            .windows(2)
            .find(|w| w[0] == "-c")
            .and_then(|w| w[1].parse::<u64>().ok())
            .unwrap_or(1);
        let kb = |key: &'static str| format!("{} kB", range_of(&runs, |r| r.count(key)));
        let per = ratio_range(&runs, 3, |r| {
            let grew = r.count("rss_held_kib")? as f64 - r.count("rss_before_kib")? as f64;
            Some(grew / held as f64)
        });
        let _ = writeln!(
            t,
            "| `{}` | {} | {} | {} | **{per} kB** | {} | {} | {} | {} |",
            case.server,
            thousands(held),
            kb("rss_before_kib"),
            kb("rss_held_kib"),
            range_of(&runs, |r| r.count("threads_held")),
            kb("vmsize_before_kib"),
            kb("vmsize_held_kib"),
            kb("kernel_stack_growth_kib"),
        );
    }
    let client = exp.cases.first().map_or(String::new(), client_line);
    let _ = writeln!(
        t,
        "\nThe client is {client} (and `-c 10000` for the last row): it connects every \
         client, echoes one byte on each, says `Holding:` and keeps them open and idle. \
         `/proc/PID/status` is read when the server is listening, before any connection, \
         and again once the client holds them all, so the growth includes what the first \
         connection sets up. `KernelStack` is the machine's, from `/proc/meminfo`: other \
         processes starting threads meanwhile would show in it."
    );
    t
}

fn uring(data: &Record, exp: &Experiment) -> String {
    let mut t = String::from(
        "| 10,000 echoes of 64 B | server | system calls per echo counted | calls | per echo |\n\
         |---|---|---|---:|---:|\n",
    );
    for case in exp.cases {
        let runs = good(data, case);
        let traced = case.strace;
        let (what, sum): (&str, fn(&Run) -> Option<u64>) = match (case.server, traced) {
            ("04_uring", true) => ("strace: `io_uring_enter`", |r| {
                r.count("strace.io_uring_enter")
            }),
            ("04_uring", false) => ("own count: `enters`", |r| r.count("stats.enters")),
            (_, true) => ("strace: `epoll_wait` + `recvfrom` + `sendto`", |r| {
                Some(
                    r.count("strace.epoll_wait")?
                        + r.count("strace.recvfrom")?
                        + r.count("strace.sendto")?,
                )
            }),
            (_, false) => ("own count: `epoll_waits` + `reads` + `writes`", |r| {
                Some(
                    r.count("stats.epoll_waits")?
                        + r.count("stats.reads")?
                        + r.count("stats.writes")?,
                )
            }),
        };
        let _ = writeln!(
            t,
            "| {} | `{}` | {what} | {} | **{}** |",
            case.label,
            case.server,
            range_of(&runs, sum),
            ratio_range(&runs, 2, |r| per_echo(r, sum(r))),
        );
    }
    t.push_str(
        "\n`1 × 10,000` is `echo-bench -c 1 -l 64 --echoes 10000`, `50 × 200` is `echo-bench \
         -c 50 -l 64 --echoes 200`; strace, when there, is `strace -c -f -p PID`, attached \
         for the client's run only.\n",
    );
    t
}

/// A case's name in an anchor: lower case, words joined by `-`, no commas
/// ("1,024-byte buffers" is `1024-byte-buffers`).
pub fn slug(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars().filter(|c| *c != ',') {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// How far past its share one connection got: `max_held` minus the share
/// the server announced.
fn overshoot(run: &Run) -> Option<u64> {
    Some(
        run.count("stats.max_held")?
            .saturating_sub(run.count("startup.share")?),
    )
}

/// The value most runs had, and in how many runs; the larger value on a tie.
fn most_common(runs: &[&Run], figure: impl Fn(&Run) -> Option<u64>) -> Option<(u64, usize)> {
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for value in runs.iter().filter_map(|r| figure(r)) {
        *seen.entry(value).or_default() += 1;
    }
    seen.into_iter()
        .max_by_key(|&(value, times)| (times, value))
}

fn burst(data: &Record, exp: &Experiment) -> String {
    let mut t = String::from(
        "| case | server | receives | share | `max_held`, run by run | `max_held` | \
         overshoot past the share |\n\
         |---|---|---|---:|---|---:|---:|\n",
    );
    for case in exp.cases {
        let runs = good(data, case);
        let each: Vec<String> = runs
            .iter()
            .map(|r| r.count("stats.max_held").map_or("—".to_string(), thousands))
            .collect();
        let mode = match runs
            .iter()
            .filter_map(|r| r.count("startup.multishot_recv"))
            .max()
        {
            Some(1) => "multishot",
            Some(_) => "one-buffer",
            None => "—",
        };
        let _ = writeln!(
            t,
            "| {} | {} | {mode} | {} | {} | {} | **{}** |",
            case.label,
            server_line(case),
            range_of(&runs, |r| r.count("startup.share")),
            each.join(", "),
            range_of(&runs, |r| r.count("stats.max_held")),
            range_of(&runs, overshoot),
        );
    }
    let client = exp.cases.first().map_or(String::new(), client_line);
    let _ = writeln!(
        t,
        "\nThe client is {client}: one peer that sends 64 KiB writes for a second and never \
         reads an echo. The share and the kind of receive are what the server's start-up \
         line said; `max_held` is the most buffers one connection held at once (its \
         `stats:` line at exit), and the overshoot is `max_held` minus the share."
    );
    t
}

fn dry(data: &Record, exp: &Experiment) -> String {
    let mut t = String::from(
        "| server | client | echoes | `enobufs` | per echo | `waits` | `reserve_recvs` | \
         `backpressure_pauses` | `max_held` | `allocations_after_startup` |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for case in exp.cases {
        let runs = good(data, case);
        let n = |key: &'static str| range_of(&runs, |r| r.count(key));
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            server_line(case),
            client_line(case),
            thousands(echoes(case.client)),
            n("stats.enobufs"),
            ratio_range(&runs, 2, |r| per_echo(r, r.count("stats.enobufs"))),
            n("stats.waits"),
            n("stats.reserve_recvs"),
            n("stats.backpressure_pauses"),
            n("stats.max_held"),
            n("stats.allocations_after_startup"),
        );
    }
    t.push_str(
        "\nThe counts are the server's own (`stats:` line at exit). The client checks every \
         byte of every echo; a run with a wrong or missing byte would have failed.\n",
    );
    t
}

fn accept(data: &Record, exp: &Experiment) -> String {
    let mut t = String::from(
        "| case | server | first client, holding | then, measured | echoes, all checked | \
         `accepted` | `refused` | `closed` | `conn_errors` | `accept_pauses` | `enters` |\n\
         |---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for case in exp.cases {
        let runs = good(data, case);
        let n = |key: &'static str| range_of(&runs, |r| r.count(key));
        let _ = writeln!(
            t,
            "| {} | {} | `echo-bench {}` | {} | {} | {} | {} | {} | {} | {} | {} |",
            case.label,
            server_line(case),
            case.holder.join(" "),
            client_line(case),
            thousands(echoes(case.client)),
            n("stats.accepted"),
            n("stats.refused"),
            n("stats.closed"),
            n("stats.conn_errors"),
            n("stats.accept_pauses"),
            n("stats.enters"),
        );
    }
    t.push_str(
        "\nThe first client connects every one of its clients, has each echoed once, and \
         holds them all, idle, for its `-d` seconds; the measured client starts once it holds \
         them, and those of its clients that find no room wait until the first ones hang up. \
         The measured client fails \
         the run if any echo is wrong or takes more than 10 s. The counts are the server's \
         own (`stats:` line at exit), over both clients.\n",
    );
    t
}

/// Lesson 05's single figures, one anchor each, for the hardening page's
/// prose; `None` when none of its experiments has been measured.
fn hardening_figures(data: &ChapterData) -> Option<String> {
    let record = |name: &str| data.experiments.iter().find(|r| r.name == name);
    let mut anchors: Vec<(String, String)> = Vec::new();
    let mut measured = Vec::new();
    if let (Some(exp), Some(rec)) = (experiment("multishot-burst"), record("multishot-burst")) {
        measured.push(rec);
        // The largest overshoot of any case: what `BURST` in lesson 05's
        // `choose_recv` must cover.
        let all: Vec<&Run> = exp.cases.iter().flat_map(|c| good(rec, c)).collect();
        let high = all.iter().filter_map(|r| overshoot(r)).max();
        anchors.push((
            "burst-overshoot-high-all".into(),
            high.map_or("—".into(), thousands),
        ));
        for case in exp.cases {
            let runs = good(rec, case);
            let name = |what: &str| format!("burst-{}-{what}", slug(case.label));
            let max_held = |r: &Run| r.count("stats.max_held");
            anchors.push((name("runs"), runs.len().to_string()));
            anchors.push((name("share"), range_of(&runs, |r| r.count("startup.share"))));
            anchors.push((name("max-held"), range_of(&runs, max_held)));
            anchors.push((name("overshoot"), range_of(&runs, overshoot)));
            let high = runs.iter().filter_map(|r| max_held(r)).max();
            anchors.push((name("max-held-high"), high.map_or("—".into(), thousands)));
            let over_high = runs.iter().filter_map(|r| overshoot(r)).max();
            anchors.push((
                name("overshoot-high"),
                over_high.map_or("—".into(), thousands),
            ));
            let common = most_common(&runs, max_held);
            anchors.push((
                name("max-held-usual"),
                common.map_or("—".into(), |(v, _)| thousands(v)),
            ));
            anchors.push((
                name("max-held-usual-runs"),
                common.map_or("—".into(), |(_, n)| n.to_string()),
            ));
        }
    }
    if let (Some(exp), Some(rec)) = (experiment("multishot-dry"), record("multishot-dry")) {
        measured.push(rec);
        for case in exp.cases {
            let runs = good(rec, case);
            anchors.push(("dry-runs".into(), runs.len().to_string()));
            anchors.push(("dry-echoes".into(), thousands(echoes(case.client))));
            for key in [
                "enobufs",
                "waits",
                "reserve_recvs",
                "backpressure_pauses",
                "max_held",
                "recv_completions",
                "allocations_after_startup",
            ] {
                let stat = format!("stats.{key}");
                anchors.push((
                    format!("dry-{}", key.replace('_', "-")),
                    range_of(&runs, |r| r.count(&stat)),
                ));
            }
            anchors.push((
                "dry-enobufs-per-echo".into(),
                ratio_range(&runs, 2, |r| per_echo(r, r.count("stats.enobufs"))),
            ));
        }
    }
    if let (Some(exp), Some(rec)) = (experiment("multishot-accept"), record("multishot-accept")) {
        measured.push(rec);
        for case in exp.cases {
            let runs = good(rec, case);
            let prefix = if case.prefix.is_empty() { "cap" } else { "fds" };
            anchors.push((format!("{prefix}-runs"), runs.len().to_string()));
            anchors.push((format!("{prefix}-echoes"), thousands(echoes(case.client))));
            for key in [
                "accepted",
                "refused",
                "closed",
                "conn_errors",
                "accept_pauses",
            ] {
                let stat = format!("stats.{key}");
                anchors.push((
                    format!("{prefix}-{}", key.replace('_', "-")),
                    range_of(&runs, |r| r.count(&stat)),
                ));
            }
        }
    }
    let first = measured.first()?;
    let mut t = String::from(
        "Lesson 05's figures from `multishot-burst`, `multishot-dry` and `multishot-accept`, \
         one per anchor, for the hardening page's prose to include inline.\n\n",
    );
    for (name, value) in anchors {
        let _ = writeln!(t, "ANCHOR: {name}\n{value}\nANCHOR_END: {name}");
    }
    let m = &first.machine;
    let _ = writeln!(
        t,
        "\n{} CPUs ({}), Linux {}, {}.\n\n\
         *Generated from `{DEFAULT_OUT}/{FILE}` by `cargo run --release --bin chapter-data` \
         (`--redraw` to re-render); do not edit by hand.*",
        m.cpus, m.model, m.kernel, m.date
    );
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strace_rows_and_total_are_read() {
        let text = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ------------------
 41.63    0.172120          17     10000           sendto
 30.76    0.127179          12     10003           epoll_wait
  0.00    0.000000           0         2         1 accept4
------ ----------- ----------- --------- --------- ------------------
100.00    0.453421          15     20005         1 total
";
        let c = parse_strace_counts(text);
        assert_eq!(c.get("sendto"), Some(&10000));
        assert_eq!(c.get("epoll_wait"), Some(&10003));
        assert_eq!(c.get("accept4"), Some(&2));
        assert_eq!(c.get("total"), Some(&20005));
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn the_stats_line_is_read_whole() {
        let stderr = "signal 2 received\nclosed 0 connections\n\
             stats: accepted 1 closed 1 epoll_waits 10003 reads 10001 eagain 0\n";
        let c = parse_stats_line(stderr);
        assert_eq!(c.get("epoll_waits"), Some(&10003));
        assert_eq!(c.get("eagain"), Some(&0));
        assert_eq!(c.len(), 5);
        assert!(parse_stats_line("no counters here").is_empty());
    }

    #[test]
    fn ss_lines_are_told_apart_by_port() {
        let text = "ESTAB 1449136 4115456 127.0.0.1:40000 127.0.0.1:51234\n\
                    ESTAB 128512 4182561 127.0.0.1:51234 127.0.0.1:40000\n";
        let (server, client) = parse_ss(text, 40000);
        assert_eq!(
            server,
            Some(Queues {
                recv_q: 1449136,
                send_q: 4115456
            })
        );
        assert_eq!(
            client,
            Some(Queues {
                recv_q: 128512,
                send_q: 4182561
            })
        );
    }

    #[test]
    fn the_sent_line_and_echo_counts_are_read() {
        assert_eq!(
            parse_sent("x\nSent: 1234 bytes, no echo read\n"),
            Some(1234)
        );
        assert_eq!(echoes(&["-c", "50", "-l", "64", "--echoes", "200"]), 10_000);
        assert_eq!(echoes(NO_READ), 0);
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn lesson_05s_start_up_line_is_read() {
        let stderr = "--max-buffers-per-conn 64 is more than a quarter of the 3 open buffers; \
             using 1\nio_uring: taskrun defer, 3 buffers of 64 bytes and a reserve of 1, at \
             most 1 per connection, one-buffer receives (the open pool is too small for \
             multishot bursts), 65536 completion entries, waits for 1 completion\n";
        let c = parse_startup(stderr);
        assert_eq!(c.get("startup.open_buffers"), Some(&3));
        assert_eq!(c.get("startup.buffer_size"), Some(&64));
        assert_eq!(c.get("startup.reserve_buffers"), Some(&1));
        assert_eq!(c.get("startup.share"), Some(&1));
        assert_eq!(c.get("startup.multishot_recv"), Some(&0));
        let multishot = "io_uring: taskrun defer, 768 buffers of 4096 bytes and a reserve of \
             256, at most 64 per connection, multishot receives (Linux 6.8 or newer)\n";
        let c = parse_startup(multishot);
        assert_eq!(c.get("startup.share"), Some(&64));
        assert_eq!(c.get("startup.multishot_recv"), Some(&1));
        assert!(parse_startup("listening on 127.0.0.1:1").is_empty());
        assert_eq!(slug("1,024-byte buffers"), "1024-byte-buffers");
        assert_eq!(
            slug("one buffer per connection"),
            "one-buffer-per-connection"
        );
    }
}
