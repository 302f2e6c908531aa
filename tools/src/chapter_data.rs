//! The data of `chapter-data` (the chapter experiments of lessons 01 to 05,
//! made with the repository's own load generator) and the Markdown tables
//! the chapters include, with a figures file beside some of them whose
//! anchors the chapters' prose includes inline.
//!
//! Each experiment is a list of cases: one lesson binary, started on a free
//! port, and one `echo-bench` command, the one the chapter prints. Each
//! round runs every case once, in order, so the servers alternate. A run
//! records its exact commands and a map of counts: the server's context
//! switches, the counters of its `stats:` line at exit, the system calls
//! `strace -c` counted while it was attached, and for `--no-read` the
//! queues `ss` showed; for `--hold`, the server's memory figures while it
//! listened, while the client held its connections and after it left. The
//! tables under `tables/` are a function of
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
    /// A second client, for a `--hold` first one: see [`Then`].
    pub then: Option<Then>,
}

/// A second `echo-bench`, started as soon as the first one (a `--hold`
/// client) prints its `Holding:` line, so that its connections arrive while
/// the first client's are open: lesson 01's client B, which waits behind
/// client A. While it runs, the listening socket's queue is sampled with
/// `ss`; when it is done, the first client is stopped.
#[derive(Debug, Clone, Copy)]
pub struct Then {
    /// `echo-bench`'s options (besides `-a` and `--pin`).
    pub client: &'static [&'static str],
    /// Whether this client is meant to fail (give up with an error): its
    /// exit status is then recorded rather than counted as a failed run.
    pub fails: bool,
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
        then: None,
    }
}

/// A case whose `--hold` client is followed by a second client, [`Then`].
const fn then_case(
    label: &'static str,
    server: &'static str,
    client: &'static [&'static str],
    then: &'static [&'static str],
    fails: bool,
) -> Case {
    Case {
        then: Some(Then {
            client: then,
            fails,
        }),
        ..case(label, server, &[], client, false)
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
const HOLD_100: &[&str] = &["-c", "100", "-l", "1", "--hold"];
const HOLD_10000: &[&str] = &["-c", "10000", "-l", "1", "--hold"];

/// Lesson 05, the server of the hardening page.
const MULTISHOT: &str = "05_uring_multishot";
/// One peer that sends 64 KiB writes for a second and never reads an echo,
/// as the grader's `stalled` check does: the burst that a multishot
/// receive takes before the server sees any of it.
const NEVER_READS: &[&str] = &["-c", "1", "-d", "1", "-l", "65536", "--no-read"];
/// The clients that wait: 20 connect while the server is full, send, and
/// must be served once the holder hangs up.
const FIFTY_2000: &[&str] = &["-c", "50", "-l", "512", "--echoes", "2000"];
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
    // What multishot saves: requests. The same 100,000 echoes from 50
    // clients against 04 and 05, counted by the servers themselves.
    Experiment {
        name: "multishot-requests",
        chapter: "05_uring_multishot.md",
        rounds: ROUNDS,
        cases: &[
            case("50 × 2,000", "04_uring", &[], FIFTY_2000, false),
            case("50 × 2,000", MULTISHOT, &[], FIFTY_2000, false),
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
    // Lesson 02 under strace: the same 10,000 echoes over 10 and over 20
    // connections, so that the difference is what 10 more connections
    // cost in system calls, and the rest is the echoes'.
    Experiment {
        name: "threads-strace",
        chapter: "02_threads.md",
        rounds: ROUNDS,
        cases: &[
            case(
                "10 clients × 1,000 echoes",
                "02_threads",
                &[],
                &["-c", "10", "-l", "64", "--echoes", "1000"],
                true,
            ),
            case(
                "20 clients × 500 echoes",
                "02_threads",
                &[],
                &["-c", "20", "-l", "64", "--echoes", "500"],
                true,
            ),
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
    Experiment {
        name: "blocking-syscalls",
        chapter: "01_blocking.md",
        cases: &[
            case(
                "16 B",
                "01_blocking",
                &[],
                &["-c", "1", "-l", "16", "--echoes", "10000"],
                true,
            ),
            case(
                "10,000 B",
                "01_blocking",
                &[],
                &["-c", "1", "-l", "10000", "--echoes", "1000"],
                true,
            ),
        ],
        rounds: ROUNDS,
    },
    // Client A connects and stays; client B comes while A is served.
    Experiment {
        name: "blocking-wait",
        chapter: "01_blocking.md",
        cases: &[
            then_case(
                "A stays 2 s",
                "01_blocking",
                &["-c", "1", "-l", "1", "--hold", "-d", "2"],
                &["-c", "1", "--echoes", "1"],
                false,
            ),
            then_case(
                "A stays 5 s",
                "01_blocking",
                &["-c", "1", "-l", "1", "--hold", "-d", "5"],
                &["-c", "1", "--echoes", "1"],
                false,
            ),
            // B is 200 clients that give up after 2 s: enough to fill the
            // accept queue and find where it ends.
            then_case(
                "200 clients behind A",
                "01_blocking",
                &["-c", "1", "-l", "1", "--hold"],
                &["-c", "200", "-l", "1", "--echoes", "1", "--timeout", "2"],
                true,
            ),
        ],
        rounds: ROUNDS,
    },
    Experiment {
        name: "blocking-no-read",
        chapter: "01_blocking.md",
        cases: &[case("01_blocking", "01_blocking", &[], NO_READ, false)],
        rounds: ROUNDS,
    },
    Experiment {
        name: "uring-memory",
        chapter: "04_uring.md",
        cases: &[
            case("03_epoll", "03_epoll", &[], HOLD_1000, false),
            case("04_uring", "04_uring", &[], HOLD_1000, false),
            // A ring sized for 1,000 connections instead of the default.
            case(
                "04_uring, --max-conns 1000",
                "04_uring",
                &["--max-conns", "1000"],
                HOLD_1000,
                false,
            ),
        ],
        rounds: ROUNDS,
    },
    // Lesson 02's memory: one fresh server for each count of idle
    // connections (the table's row of 0 is the servers before any client).
    // Last: starting and ending 10,000 threads raises the load average
    // that the next record would read.
    Experiment {
        name: "threads-memory",
        chapter: "02_threads.md",
        cases: &[
            case("100", "02_threads", &[], HOLD_100, false),
            case("1,000", "02_threads", &[], HOLD_1000, false),
            case("10,000", "02_threads", &[], HOLD_10000, false),
        ],
        rounds: ROUNDS,
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
    /// The second client's command, for a case with one ([`Then`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then_command: Option<Vec<String>>,
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
    ///   `KernelStack` in `/proc/meminfo` (system-wide) between the two;
    ///   with them `vmpte_before_kib`, `maps_before` (lines of
    ///   `/proc/PID/maps`), `fds_before` (entries of `/proc/PID/fd`) and
    ///   their `_held` twins; the same six again as `rss_closed_kib` ...
    ///   `fds_closed`, read once the client has gone and the server is back
    ///   to its descriptors and threads from before (or after 30 s), with
    ///   `closed_wait_ms`; and `max_map_count`, `vm.max_map_count`; with a
    ///   ring, `ring_maps_before_kib` (and `_held`, `_closed`): the
    ///   `anon_inode:[io_uring]` mappings of `/proc/PID/maps`;
    /// - for a second client ([`Then`]): `then.exit_code`,
    ///   `then.max_latency_us` (its `max` latency), `then.connected` (from
    ///   its error line, when it gave up connecting), `listen.recv_q_max`
    ///   and `listen.send_q` (the listening socket in `ss -ltnH` while it
    ///   ran), and `rss_waiting_kib`, the server's VmRSS once a connection
    ///   waited in its accept queue;
    /// - for `--no-read`, also `syscall.nr`, `syscall.fd`, `syscall.count`:
    ///   the system call the server's main thread was in at the last sample
    ///   (`/proc/PID/syscall`: its number, first and third arguments; its
    ///   kernel function is in `texts`);
    /// - `client.responses_per_s`: the client's `Speed:` line, when it has one.
    pub counts: BTreeMap<String, u64>,
    /// What is read as words, not numbers, by name: for `--no-read`,
    /// `wchan`, the kernel function the server's main thread slept in at
    /// the last sample (`/proc/PID/wchan`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub texts: BTreeMap<String, String>,
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

/// The queues of the socket listening on `port` in `ss -ltnH` output: for
/// a listening socket `Recv-Q` is the connections waiting in the accept
/// queue and `Send-Q` the backlog it was given.
pub fn parse_listen(text: &str, port: u16) -> Option<Queues> {
    text.lines().find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 5 || cols[0] != "LISTEN" {
            return None;
        }
        let local_port = cols[3].rsplit_once(':')?.1;
        (local_port == port.to_string()).then_some(Queues {
            recv_q: cols[1].parse().ok()?,
            send_q: cols[2].parse().ok()?,
        })
    })
}

/// The `max` of `echo-bench`'s `latency (µs)` line, in whole microseconds.
pub fn parse_max_latency_us(stdout: &str) -> Option<u64> {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("latency"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "max")?;
    let value: f64 = words.get(at + 1)?.parse().ok()?;
    Some(value.round() as u64)
}

/// N of the error `connected N of C clients: ...` that `echo-bench` prints
/// when some clients could not connect.
pub fn parse_connected(stderr: &str) -> Option<u64> {
    let rest = stderr.split("connected ").nth(1)?;
    let (n, rest) = rest.split_once(' ')?;
    rest.starts_with("of ").then(|| n.parse().ok())?
}

/// From `/proc/PID/syscall`: the number of the system call the thread is
/// in, and its first and third arguments (for `sendto`, the descriptor and
/// the bytes asked for). `None` when it is running, not in a call.
pub fn parse_syscall(text: &str) -> Option<(u64, u64, u64)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let hex = |w: &str| u64::from_str_radix(w.strip_prefix("0x")?, 16).ok();
    Some((
        words.first()?.parse().ok()?,
        hex(words.get(1)?)?,
        hex(words.get(3)?)?,
    ))
}

/// The kB of address space that `/proc/PID/maps` shows mapped from an
/// io_uring instance (`anon_inode:[io_uring]`): the rings the kernel
/// shares with the process, sized by the ring's entries.
pub fn ring_mappings_kib(maps: &str) -> u64 {
    maps.lines()
        .filter(|l| l.trim_end().ends_with("anon_inode:[io_uring]"))
        .filter_map(|l| {
            let (start, end) = l.split_whitespace().next()?.split_once('-')?;
            let start = u64::from_str_radix(start, 16).ok()?;
            let end = u64::from_str_radix(end, 16).ok()?;
            Some((end.saturating_sub(start)) / 1024)
        })
        .sum()
}

/// The responses per second of `echo-bench`'s `Speed:` line.
pub fn parse_speed(stdout: &str) -> Option<u64> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("Speed:"))?;
    let (_, responses) = line.split_once(',')?;
    responses.split_whitespace().next()?.parse().ok()
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
            "threads-strace" => threads_strace(record, exp),
            "epoll-triggers" | "epoll-triggers-100" => triggers(record, exp),
            "epoll-no-read" => no_read(record, exp),
            "hold-memory" => hold(record, exp),
            "uring-syscalls" => uring(record, exp),
            "multishot-requests" => requests(record, exp),
            "multishot-burst" => burst(record, exp),
            "multishot-dry" => dry(record, exp),
            "multishot-accept" => accept(record, exp),
            "threads-memory" => threads_memory(record, exp),
            "blocking-syscalls" => blocking_syscalls(record, exp),
            "blocking-wait" => blocking_wait(record, exp),
            "blocking-no-read" => blocking_no_read(record, exp),
            "uring-memory" => uring_memory(record, exp),
            _ => String::new(),
        };
        out.push((format!("{}.md", exp.name), body + &footer(record)));
        // The figures the chapters quote in their prose, one per anchor.
        let figures = match exp.name {
            "threads-strace" => threads_strace_figures(record, exp),
            "multishot-requests" => requests_figures(record, exp),
            "threads-memory" => threads_memory_figures(record, exp),
            "blocking-syscalls" | "blocking-wait" | "blocking-no-read" => {
                blocking_figures(record, exp)
            }
            "uring-memory" => uring_memory_figures(record, exp, data),
            _ => Vec::new(),
        };
        if !figures.is_empty() {
            out.push((
                format!("{}-figures.md", exp.name),
                anchors(record, &figures),
            ));
        }
    }
    if let Some(figures) = hardening_figures(data) {
        out.push((FIGURES.to_string(), figures));
    }
    out
}

/// A figures file: each figure between `ANCHOR: name` and `ANCHOR_END:
/// name` lines, so that a chapter includes it inline with
/// `{{#include file.md:name}}`.
fn anchors(record: &Record, figures: &[(String, String)]) -> String {
    let mut out = format!(
        "Figures of the `{}` experiment, one per anchor, for the chapters' prose to \
         include inline; a single value is the median over the rounds.\n\n",
        record.name
    );
    for (name, value) in figures {
        let _ = write!(out, "ANCHOR: {name}\n{value}\nANCHOR_END: {name}\n");
    }
    let _ = write!(
        out,
        "\n*Generated from `{DEFAULT_OUT}/{FILE}` by `cargo run --release --bin chapter-data -- \
         --only {}` (`--redraw` to re-render); do not edit by hand.*\n",
        record.name
    );
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

/// The requests a run's server submitted: for 04 every receive and send is
/// one; for 05 the sends, plus one multishot receive per connection and
/// one per re-arm.
fn submitted(run: &Run) -> Option<u64> {
    if run.server == "04_uring" {
        Some(run.count("stats.recvs")? + run.count("stats.sends")?)
    } else {
        Some(run.count("stats.sends")? + run.count("stats.accepted")? + run.count("stats.rearms")?)
    }
}

/// 04 against 05, the same echoes: requests, completions and enters, each
/// per echo, from the servers' own counters.
fn requests(data: &Record, exp: &Experiment) -> String {
    let mut t = String::from(
        "| server | echoes | requests submitted | per echo | completions | per echo | \
         `io_uring_enter` calls | per echo |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for case in exp.cases {
        let runs = good(data, case);
        let count = |key: &'static str| move |r: &Run| r.count(key);
        let per = |key: &'static str| move |r: &Run| per_echo(r, r.count(key));
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            server_line(case),
            thousands(echoes(case.client)),
            range_of(&runs, submitted),
            ratio_range(&runs, 2, |r| per_echo(r, submitted(r))),
            range_of(&runs, count("stats.completions")),
            ratio_range(&runs, 2, per("stats.completions")),
            range_of(&runs, count("stats.enters")),
            ratio_range(&runs, 3, per("stats.enters")),
        );
    }
    let client = exp.cases.first().map_or(String::new(), client_line);
    let _ = writeln!(
        t,
        "\nThe client is {client}. Requests submitted are, for 04, its `recvs` and `sends`; \
         for 05, its `sends` and the receives it armed: one multishot receive per connection \
         (`accepted`) and one per re-arm (`rearms`). All from the `stats:` line each server \
         prints when it stops."
    );
    t
}

fn requests_figures(data: &Record, exp: &Experiment) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for case in exp.cases {
        let runs = good(data, case);
        let who = if case.server == "04_uring" {
            "04"
        } else {
            "05"
        };
        out.push((
            format!("requests-per-echo-{who}"),
            ratio_range(&runs, 2, |r| per_echo(r, submitted(r))),
        ));
        out.push((
            format!("completions-per-echo-{who}"),
            ratio_range(&runs, 2, |r| per_echo(r, r.count("stats.completions"))),
        ));
        out.push((
            format!("rearms-{who}"),
            range_of(&runs, |r| r.count("stats.rearms")),
        ));
    }
    out
}

/// The median count of one system call in a case's runs.
fn calls(data: &Record, case: &Case, name: &str) -> Option<f64> {
    let key = format!("strace.{name}");
    median_of(&good(data, case), |r| r.count(&key).map(|c| c as f64))
}

/// Every system call strace counted in any run of the experiment, the most
/// frequent (in the first case) first.
fn call_names(data: &Record, exp: &Experiment) -> Vec<String> {
    let mut names: Vec<String> = data
        .runs
        .iter()
        .flat_map(|r| r.counts.keys())
        .filter_map(|k| k.strip_prefix("strace."))
        .filter(|n| *n != "total")
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    let first = &exp.cases[0];
    names.sort_by(|a, b| {
        let (x, y) = (calls(data, first, a), calls(data, first, b));
        y.unwrap_or(0.0).total_cmp(&x.unwrap_or(0.0)).then(a.cmp(b))
    });
    names
}

/// Lesson 02 under strace, 10,000 echoes over 10 and over 20 connections:
/// each call's count in both, and the difference per added connection.
fn threads_strace(data: &Record, exp: &Experiment) -> String {
    let [few, many] = [&exp.cases[0], &exp.cases[1]];
    let added = (connections(many.client) - connections(few.client)) as f64;
    let mut t = format!(
        "| system call | {} | {} | per added connection |\n|---|---:|---:|---:|\n",
        few.label, many.label
    );
    for name in call_names(data, exp)
        .iter()
        .chain(["total".to_string()].iter())
    {
        let (a, b) = (calls(data, few, name), calls(data, many, name));
        let per = match (a, b) {
            (Some(a), Some(b)) => format!("{:.1}", (b - a) / added),
            (None, Some(b)) => format!("{:.1}", b / added),
            _ => "—".to_string(),
        };
        let shown = |v: Option<f64>| v.map_or("—".to_string(), |v| thousands(v.round() as u64));
        let label = if name == "total" {
            "total".to_string()
        } else {
            format!("`{name}`")
        };
        let _ = writeln!(t, "| {label} | {} | {} | {per} |", shown(a), shown(b));
    }
    let _ = writeln!(
        t,
        "\nThe median count of each call over the rounds, under `strace -c -f -p PID`, \
         attached after the server printed its address and detached before it was stopped \
         (so start-up and exit are not counted). Both clients make 10,000 round trips of \
         64 bytes; the second spreads them over twice as many connections, so the last \
         column, the difference divided by the connections added, is what one connection \
         costs whatever it echoes."
    );
    t
}

/// How many connections an `echo-bench` command opens (`-c N`).
fn connections(client: &[&str]) -> u64 {
    client
        .windows(2)
        .find(|w| w[0] == "-c")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(1)
}

fn threads_strace_figures(data: &Record, exp: &Experiment) -> Vec<(String, String)> {
    let [few, many] = [&exp.cases[0], &exp.cases[1]];
    let added = (connections(many.client) - connections(few.client)) as f64;
    let runs = good(data, few);
    let mut out = Vec::new();
    let both = |r: &Run| Some(r.count("strace.sendto")? + r.count("strace.recvfrom")?);
    out.push((
        "calls-per-echo".to_string(),
        ratio_range(&runs, 2, |r| per_echo(r, both(r))),
    ));
    // The reads beyond one per echo: one per client, the read that found
    // the client had hung up.
    out.push((
        "extra-recvfrom".to_string(),
        range_of(&runs, |r| r.count("strace.recvfrom")?.checked_sub(r.echoes)),
    ));
    out.push(("clients".to_string(), connections(few.client).to_string()));
    let per = |name: &str| match (calls(data, few, name), calls(data, many, name)) {
        (Some(a), Some(b)) => Some((b - a) / added),
        (None, Some(b)) => Some(b / added),
        _ => None,
    };
    out.push(("per-connection".to_string(), fixed(per("total"), 0)));
    for name in ["clone3", "accept4", "mmap", "mprotect"] {
        out.push((format!("per-connection-{name}"), fixed(per(name), 1)));
    }
    let echo_calls = 2.0;
    out.push((
        "per-connection-over-echo".to_string(),
        fixed(per("total").map(|p| p / echo_calls), 0),
    ));
    out
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

/// The clients of a client command (`-c`, 1 when not given).
fn clients(client: &[&str]) -> u64 {
    client
        .windows(2)
        .find(|w| w[0] == "-c")
        .and_then(|w| w[1].parse::<u64>().ok())
        .unwrap_or(1)
}

/// The median of a figure over runs; `None` when no run has it.
fn median_of(runs: &[&Run], figure: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
    let mut values: Vec<f64> = runs.iter().filter_map(|r| figure(r)).collect();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// A figure with `places` decimals, or `—`.
fn fixed(value: Option<f64>, places: usize) -> String {
    value.map_or("—".to_string(), |v| format!("{v:.places$}"))
}

/// A whole figure with thousands separators, or `—`.
fn whole(value: Option<f64>) -> String {
    value.map_or("—".to_string(), |v| thousands(v.round() as u64))
}

/// `count(name) / by`, as a float, for one run.
fn per(run: &Run, name: &str, by: u64) -> Option<f64> {
    Some(run.count(name)? as f64 / by as f64)
}

/// Growth of a figure from `NAME_before_kib` to `NAME_held_kib`, per connection.
fn growth_per(run: &Run, name: &str, by: u64) -> Option<f64> {
    let grew = run.count(&format!("{name}_held_kib"))? as f64
        - run.count(&format!("{name}_before_kib"))? as f64;
    Some(grew / by as f64)
}

/// One row of the memory figures of `/proc/PID/status` and `/proc/PID/maps`
/// read at one moment (`when`: `before`, `held` or `closed`).
fn memory_cells(runs: &[&Run], when: &str) -> String {
    let kb = |what: &str| {
        let key = format!("{what}_{when}_kib");
        format!("{} kB", range_of(runs, |r| r.count(&key)))
    };
    let threads = format!("threads_{when}");
    let maps = format!("maps_{when}");
    format!(
        "{} | {} | {} | {} | {}",
        range_of(runs, |r| r.count(&threads)),
        kb("vmsize"),
        kb("rss"),
        kb("vmpte"),
        range_of(runs, |r| r.count(&maps)),
    )
}

fn threads_memory(data: &Record, exp: &Experiment) -> String {
    let mut t = String::from(
        "| idle connections | Threads | VmSize (reserved) | VmRSS (resident) | VmPTE (page \
         tables) | memory maps | VmRSS per connection | `KernelStack` growth |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let all: Vec<&Run> = exp.cases.iter().flat_map(|c| good(data, c)).collect();
    let _ = writeln!(t, "| 0 | {} | — | — |", memory_cells(&all, "before"));
    for case in exp.cases {
        let runs = good(data, case);
        let n = clients(case.client);
        let _ = writeln!(
            t,
            "| {} | {} | {} kB | {} kB |",
            thousands(n),
            memory_cells(&runs, "held"),
            ratio_range(&runs, 1, |r| growth_per(r, "rss", n)),
            range_of(&runs, |r| r.count("kernel_stack_growth_kib")),
        );
    }
    t.push_str(
        "\nThe same servers once the client had closed every connection, read when the \
         server was back to the descriptors and threads it had before the client came:\n\n\
         | connections closed | Threads | VmSize (reserved) | VmRSS (resident) | VmPTE (page \
         tables) | memory maps |\n\
         |---:|---:|---:|---:|---:|---:|\n",
    );
    for case in exp.cases {
        let runs = good(data, case);
        let _ = writeln!(
            t,
            "| {} | {} |",
            thousands(clients(case.client)),
            memory_cells(&runs, "closed")
        );
    }
    let _ = writeln!(
        t,
        "\nA fresh server for each run. The client is `echo-bench -c N -l 1 --hold`: it \
         connects N clients, echoes one byte on each (so every server thread has started and \
         run), says `Holding:` and keeps them open and idle. Row 0 is every server before its \
         client came, while it listened. \"Per connection\" is the growth of VmRSS over the \
         same server's figure before the client, divided by N. \"Memory maps\" is the number \
         of lines of `/proc/PID/maps`. `KernelStack` is the machine's, from `/proc/meminfo`, \
         read before the client and while it held: the kernel stacks of the new threads, and \
         of any other process's threads started meanwhile."
    );
    t
}

fn threads_memory_figures(data: &Record, exp: &Experiment) -> Vec<(String, String)> {
    let [hundred, thousand, ten_thousand] = exp.cases else {
        return Vec::new();
    };
    let (r100, r1k, r10k) = (
        good(data, hundred),
        good(data, thousand),
        good(data, ten_thousand),
    );
    let n = clients(ten_thousand.client);
    let all: Vec<&Run> = exp.cases.iter().flat_map(|c| good(data, c)).collect();
    // Two servers of the same round: the growth from 1,000 to 10,000.
    let between = |r: &Run, key: &str| {
        let small = r1k.iter().find(|s| s.round == r.round)?;
        let grown = r.count(key)? as f64 - small.count(key)? as f64;
        Some(grown / (n - clients(thousand.client)) as f64)
    };
    let maps_per_thread = median_of(&r10k, |r| between(r, "maps_held")).map(f64::round);
    let maps_other = maps_per_thread.and_then(|each| {
        median_of(&r10k, |r| {
            Some(r.count("maps_held")? as f64 - each * n as f64)
        })
    });
    let map_limit = median_of(&all, |r| Some(r.count("max_map_count")? as f64));
    let thread_limit = match (map_limit, maps_other, maps_per_thread) {
        (Some(limit), Some(other), Some(each)) if each > 0.0 => {
            Some(((limit - other) / each).floor())
        }
        _ => None,
    };
    let rss = |r: &Run| growth_per(r, "rss", n);
    let pte = |r: &Run| growth_per(r, "vmpte", n);
    let stack = |r: &Run| per(r, "kernel_stack_growth_kib", n);
    let mib = 1024.0 * 1024.0;
    [
        ("rss-before", range_of(&all, |r| r.count("rss_before_kib"))),
        (
            "threads-10000",
            range_of(&r10k, |r| r.count("threads_held")),
        ),
        ("rss-per-connection-10000", fixed(median_of(&r10k, rss), 1)),
        (
            "rss-per-connection-1000",
            fixed(
                median_of(&r1k, |r| growth_per(r, "rss", clients(thousand.client))),
                1,
            ),
        ),
        (
            "vmsize-per-thread",
            whole(median_of(&r10k, |r| between(r, "vmsize_held_kib"))),
        ),
        (
            "vmsize-10000-gib",
            fixed(
                median_of(&r10k, |r| per(r, "vmsize_held_kib", 1)).map(|k| k / mib),
                1,
            ),
        ),
        (
            "vmsize-100-gb",
            fixed(
                median_of(&r100, |r| per(r, "vmsize_held_kib", 1_000_000)),
                1,
            ),
        ),
        (
            "closed-vmsize-10000-gb",
            fixed(
                median_of(&r10k, |r| per(r, "vmsize_closed_kib", 1_000_000)),
                1,
            ),
        ),
        (
            "vmpte-10000-mb",
            fixed(median_of(&r10k, |r| per(r, "vmpte_held_kib", 1000)), 0),
        ),
        ("vmpte-per-connection", fixed(median_of(&r10k, pte), 1)),
        (
            "kernel-stack-10000-mb",
            fixed(
                median_of(&r10k, |r| per(r, "kernel_stack_growth_kib", 1000)),
                0,
            ),
        ),
        (
            "kernel-stack-per-connection",
            fixed(median_of(&r10k, stack), 1),
        ),
        (
            "idle-per-connection",
            fixed(median_of(&r10k, |r| Some(rss(r)? + pte(r)? + stack(r)?)), 0),
        ),
        ("maps-per-thread", whole(maps_per_thread)),
        ("maps-other", whole(maps_other)),
        ("max-map-count", whole(map_limit)),
        ("map-count-threads", whole(thread_limit)),
        (
            "closed-threads-10000",
            range_of(&r10k, |r| r.count("threads_closed")),
        ),
        (
            "closed-rss-10000-mb",
            fixed(median_of(&r10k, |r| per(r, "rss_closed_kib", 1000)), 1),
        ),
        (
            "before-rss-mb",
            fixed(median_of(&all, |r| per(r, "rss_before_kib", 1000)), 1),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

fn blocking_syscalls(data: &Record, exp: &Experiment) -> String {
    let mut t = String::from(
        "| client | echoes | `sendto` | `recvfrom` | both, per echo |\n|---|---:|---:|---:|---:|\n",
    );
    for case in exp.cases {
        let runs = good(data, case);
        let both = |r: &Run| Some(r.count("strace.sendto")? + r.count("strace.recvfrom")?);
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | **{}** |",
            client_line(case),
            thousands(echoes(case.client)),
            range_of(&runs, |r| r.count("strace.sendto")),
            range_of(&runs, |r| r.count("strace.recvfrom")),
            ratio_range(&runs, 2, |r| per_echo(r, both(r))),
        );
    }
    t.push_str(
        "\nCounted by `strace -c -f -p PID`, attached to `01_blocking` while it waited in \
         `accept` and detached once the client was done, so start-up and exit are not \
         counted.\n",
    );
    t
}

/// Microseconds as seconds, three decimals.
fn seconds(runs: &[&Run], key: &str) -> String {
    ratio_range(runs, 3, |r| Some(r.count(key)? as f64 / 1e6))
}

fn blocking_wait(data: &Record, exp: &Experiment) -> String {
    let mut t = String::from(
        "| client A | then client B | B's wait (its `max` latency) | B's clients connected | \
         accept queue (`Recv-Q`), at most | backlog (`Send-Q`) | VmRSS: listening | with A | \
         with A and B waiting | Threads |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for case in exp.cases {
        let runs = good(data, case);
        let Some(then) = case.then else { continue };
        let kb = |key: &str| format!("{} kB", range_of(&runs, |r| r.count(key)));
        let connected = range_of(&runs, |r| {
            r.count("then.connected").or(r
                .count("then.exit_code")
                .filter(|c| *c == 0)
                .map(|_| clients(then.client)))
        });
        let _ = writeln!(
            t,
            "| {} | `echo-bench {}` | {} | {connected} | {} | {} | {} | {} | {} | {} |",
            client_line(case),
            then.client.join(" "),
            if then.fails {
                "gave up".to_string()
            } else {
                format!("{} s", seconds(&runs, "then.max_latency_us"))
            },
            range_of(&runs, |r| r.count("listen.recv_q_max")),
            range_of(&runs, |r| r.count("listen.send_q")),
            kb("rss_before_kib"),
            kb("rss_held_kib"),
            kb("rss_waiting_kib"),
            range_of(&runs, |r| r.count("threads_held")),
        );
    }
    t.push_str(
        "\nClient B is started as soon as A prints its `Holding:` line, that is once A's \
         connection is accepted and echoed. B's wait is the `max` of its latency line: its \
         one echo, from sending to having it back. The listening socket's queues are from \
         `ss -ltnH`, sampled every 50 ms while B ran; the server's VmRSS \"with A and B \
         waiting\" was read at the first sample that had a connection in the accept queue. \
         With `--timeout 2`, B gives up on connecting after 2 s and prints how many of its \
         clients had connected.\n",
    );
    t
}

fn blocking_no_read(data: &Record, exp: &Experiment) -> String {
    let mut t = String::from(
        "| round | client sent | server VmRSS before | server VmRSS, stalled | server's system \
         call | on descriptor | bytes asked | in kernel function | client `Send-Q` | server \
         `Recv-Q` | server `Send-Q` | client `Recv-Q` |\n\
         |---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n",
    );
    for case in exp.cases {
        for run in good(data, case) {
            let n = |key: &str| run.count(key).map_or("—".to_string(), thousands);
            let mib = run.count("sent_bytes").map_or("—".to_string(), |b| {
                format!("{:.1} MiB", b as f64 / 1_048_576.0)
            });
            let _ = writeln!(
                t,
                "| {} | {mib} | {} kB | {} kB | {} | {} | {} | {} | {} | {} | {} | {} |",
                run.round,
                n("rss_before_kib"),
                n("rss_stalled_kib"),
                n("syscall.nr"),
                n("syscall.fd"),
                n("syscall.count"),
                run.texts
                    .get("wchan")
                    .map_or("—".to_string(), |f| format!("`{f}`")),
                n("ss.client_send_q"),
                n("ss.server_recv_q"),
                n("ss.server_send_q"),
                n("ss.client_recv_q"),
            );
        }
    }
    let client = exp.cases.first().map_or(String::new(), client_line);
    let _ = writeln!(
        t,
        "\nThe server is `01_blocking`, the client {client}. Each row is its run's last \
         sample (every 200 ms) taken while the client was still running: the queues in bytes \
         from `ss -tnH`, the server's VmRSS, and from `/proc/PID/syscall` the system call its \
         main thread was in (its number; 44 is `sendto` on x86-64), with that call's \
         descriptor and byte count, and from `/proc/PID/wchan` the kernel function it slept \
         in."
    );
    t
}

fn blocking_figures(data: &Record, exp: &Experiment) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |name: &str, value: String| out.push((name.to_string(), value));
    match exp.name {
        "blocking-syscalls" => {
            for (case, tag) in exp.cases.iter().zip(["small", "large"]) {
                let runs = good(data, case);
                put(&format!("echoes-{tag}"), thousands(echoes(case.client)));
                put(
                    &format!("sendto-{tag}"),
                    range_of(&runs, |r| r.count("strace.sendto")),
                );
                put(
                    &format!("recvfrom-{tag}"),
                    range_of(&runs, |r| r.count("strace.recvfrom")),
                );
                let both = |r: &Run| Some(r.count("strace.sendto")? + r.count("strace.recvfrom")?);
                put(
                    &format!("per-echo-{tag}"),
                    ratio_range(&runs, 0, |r| per_echo(r, both(r))),
                );
            }
        }
        "blocking-wait" => {
            let all: Vec<&Run> = exp.cases.iter().flat_map(|c| good(data, c)).collect();
            put(
                "rss-listening",
                range_of(&all, |r| r.count("rss_before_kib")),
            );
            put(
                "rss-one-client",
                range_of(&all, |r| r.count("rss_held_kib")),
            );
            put(
                "rss-waiting",
                range_of(&all, |r| r.count("rss_waiting_kib")),
            );
            // What A, then B waiting in the queue, added to each server.
            let grew =
                |r: &Run, key: &str| Some(r.count(key)? as f64 - r.count("rss_before_kib")? as f64);
            put(
                "rss-growth-one-client",
                ratio_range(&all, 0, |r| grew(r, "rss_held_kib")),
            );
            put(
                "rss-growth-waiting",
                ratio_range(&all, 0, |r| grew(r, "rss_waiting_kib")),
            );
            put("threads", range_of(&all, |r| r.count("threads_held")));
            for (case, tag) in exp.cases.iter().zip(["wait-2", "wait-5"]) {
                put(tag, seconds(&good(data, case), "then.max_latency_us"));
            }
            if let Some(case) = exp.cases.get(2) {
                let runs = good(data, case);
                put("queue", range_of(&runs, |r| r.count("listen.recv_q_max")));
                put("backlog", range_of(&runs, |r| r.count("listen.send_q")));
                put(
                    "queue-connected",
                    range_of(&runs, |r| r.count("then.connected")),
                );
                put(
                    "queue-clients",
                    thousands(case.then.map_or(0, |t| clients(t.client))),
                );
            }
        }
        _ => {
            let runs: Vec<&Run> = exp.cases.iter().flat_map(|c| good(data, c)).collect();
            put(
                "sent-mib",
                fixed(median_of(&runs, |r| per(r, "sent_bytes", 1_048_576)), 1),
            );
            put(
                "sent-range-mib",
                ratio_range(&runs, 1, |r| per(r, "sent_bytes", 1_048_576)),
            );
            put("syscall", range_of(&runs, |r| r.count("syscall.nr")));
            put("syscall-fd", range_of(&runs, |r| r.count("syscall.fd")));
            put(
                "syscall-count",
                range_of(&runs, |r| r.count("syscall.count")),
            );
            // The kernel function, when every run slept in the same one.
            let mut functions: Vec<&str> = runs
                .iter()
                .filter_map(|r| r.texts.get("wchan").map(String::as_str))
                .collect();
            functions.dedup();
            put(
                "wchan",
                match functions[..] {
                    [one] => format!("`{one}`"),
                    _ => "—".to_string(),
                },
            );
        }
    }
    out
}

fn uring_memory(data: &Record, exp: &Experiment) -> String {
    let mut t = String::from(
        "| server | VmRSS at start | with 1,000 idle connections | per connection | \
         `anon_inode:[io_uring]` mapped |\n\
         |---|---:|---:|---:|---:|\n",
    );
    for case in exp.cases {
        let runs = good(data, case);
        let n = clients(case.client);
        let ring = range_of(&runs, |r| r.count("ring_maps_held_kib"));
        let _ = writeln!(
            t,
            "| {} | {} kB | {} kB | **{} kB** | {} |",
            server_line(case),
            range_of(&runs, |r| r.count("rss_before_kib")),
            range_of(&runs, |r| r.count("rss_held_kib")),
            ratio_range(&runs, 2, |r| growth_per(r, "rss", n)),
            if ring == "—" {
                ring
            } else {
                format!("{ring} kB")
            },
        );
    }
    let client = exp.cases.first().map_or(String::new(), client_line);
    let _ = writeln!(
        t,
        "\nThe client is {client}: it connects 1,000 clients, echoes one byte on each and \
         keeps them open and idle. VmRSS is read from `/proc/PID/status` while the server \
         listens, before any client, and once the client holds them all; per connection is \
         the growth divided by 1,000. The last column adds up the `anon_inode:[io_uring]` \
         lines of `/proc/PID/maps`: the rings the kernel shares with the server."
    );
    t
}

fn uring_memory_figures(
    data: &Record,
    exp: &Experiment,
    all: &ChapterData,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (case, tag) in exp
        .cases
        .iter()
        .zip(["03_epoll", "04_uring", "04_uring-1000"])
    {
        let runs = good(data, case);
        let n = clients(case.client);
        out.push((
            format!("per-connection-{tag}"),
            fixed(median_of(&runs, |r| growth_per(r, "rss", n)), 2),
        ));
        out.push((
            format!("ring-maps-{tag}"),
            range_of(&runs, |r| r.count("ring_maps_held_kib")),
        ));
        out.push((
            format!("start-{tag}"),
            whole(median_of(&runs, |r| per(r, "rss_before_kib", 1))),
        ));
    }
    // The completions of the 10,000 echoes of `uring-syscalls`' first
    // 04_uring row, which chapter 04 quotes under its table.
    if let (Some(exp), Some(record)) = (
        experiment("uring-syscalls"),
        all.experiments.iter().find(|r| r.name == "uring-syscalls"),
    ) && let Some(case) = exp.cases.iter().find(|c| c.server == "04_uring")
    {
        let runs = good(record, case);
        out.push((
            "completions-10000".to_string(),
            range_of(&runs, |r| r.count("stats.completions")),
        ));
    }
    out
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
    fn the_listening_socket_the_latency_and_the_syscall_are_read() {
        let ss = "LISTEN 0 4096 127.0.0.1:40001 0.0.0.0:*\n\
                  LISTEN 129 128 127.0.0.1:40000 0.0.0.0:*\n";
        assert_eq!(
            parse_listen(ss, 40000),
            Some(Queues {
                recv_q: 129,
                send_q: 128
            })
        );
        assert_eq!(parse_listen(ss, 40002), None);
        let table = "  latency (µs)  p50 5.0  p90 5.5  p99 6.7  p99.9 54.8  max 2000912.6\n";
        assert_eq!(parse_max_latency_us(table), Some(2_000_913));
        assert_eq!(
            parse_connected("error: connected 129 of 200 clients: the others did not connect"),
            Some(129)
        );
        assert_eq!(parse_connected("error: timed out"), None);
        assert_eq!(
            parse_syscall("44 0x4 0x7ffd1234 0x1000 0x4000 0x0 0x0 0x7ffd 0x7f12\n"),
            Some((44, 4, 4096))
        );
        assert_eq!(parse_syscall("running\n"), None);
        let maps = "7f00a000-7f00b000 rw-s 00000000 00:0f 1234  anon_inode:[io_uring]\n\
                    7f00b000-7f10c000 rw-s 10000000 00:0f 1234  anon_inode:[io_uring]\n\
                    7f10c000-7f10d000 r--p 00000000 08:01 42  /usr/lib/libc.so.6\n";
        assert_eq!(ring_mappings_kib(maps), 4 + 1028);
        let speed = "Speed: 160818 request/sec, 160817 response/sec\n";
        assert_eq!(parse_speed(speed), Some(160_817));
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
