//! The load generator behind `echo-bench`: many connections, one thread,
//! every echo checked.
//!
//! A benchmark client has one job besides making load: to stay out of the
//! way. A client with a thread per connection (as the classic
//! `rust_echo_bench` has) pays a context switch for every response, and on a
//! two-core machine it then measures itself as much as the server. So this
//! one drives every connection from **one thread**, through epoll and
//! nonblocking sockets, the same design as lesson 03 seen from the other end
//! of the wire.
//!
//! By default it is a **closed loop**: each connection sends a message of
//! `length` bytes, waits for the whole echo, checks it byte for byte,
//! records the round trip in an HDR histogram, and only then sends the next
//! one. With `pipeline` N, each connection keeps N messages in flight
//! instead of one.
//!
//! With `rate` R it is an **open loop**, as wrk2 is: messages are due at a
//! fixed schedule, R per second spread evenly over the connections (each
//! connection one every `connections / R` seconds, the connections offset
//! from each other so the sends do not bunch), whatever the server does. A
//! message is sent when it is due and its connection has fewer than
//! `pipeline` messages in flight; its latency runs from the time it was
//! *due*, not from when it was sent. A closed loop measured that way would
//! hide a slow server: while an echo is late the client sends nothing, so
//! the messages that should have waited behind it are never measured
//! ("coordinated omission"). When the server cannot keep up, the sends fall
//! behind the schedule, the latencies grow with the backlog, and the report
//! says so ([`RateReport::kept_up`]).
//! The bytes are [`crate::pattern`]'s position-dependent streams, one stream
//! per connection, so a byte lost, duplicated, reordered or crossed over
//! from another connection is found, and named by connection and offset. A
//! run with a wrong byte returns an error, never a number: a fast server that
//! corrupts data has not won anything.
//!
//! A run has four phases: connect every client (all at once, nonblocking,
//! within the time limit), warm up (optional: load whose numbers are thrown
//! away, so the first measured second does not include page faults and
//! growing buffers), measure for `duration`, then drain: stop starting new
//! messages and wait for every echo still in flight, so that every byte sent
//! has been checked before the sockets close.
//!
//! # From the command line
//!
//! ```text
//! cargo run --release --bin 03_epoll &                   # a server on 127.0.0.1:7878
//! cargo run --release --bin echo-bench                   # 50 clients × 512 B × 10 s
//! cargo run --release --bin echo-bench -- -a 127.0.0.1:7878 -c 50 -d 10 -l 512
//! cargo run --release --bin echo-bench -- -c 50 --pipeline 8 --warmup 1
//! cargo run --release --bin echo-bench -- -c 50 --rate 20000     # open loop, 20,000/s
//! cargo run --release --bin echo-bench -- --pin 1 --json > result.json
//! taskset -c 0 target/release/05_uring_multishot &       # the server on CPU 0 ...
//! target/release/echo-bench --pin 1                      # ... the client on CPU 1
//! ```
//!
//! The flags are `rust_echo_bench`'s (`-a/--address`, `-c/--number`,
//! `-d/--duration`, `-l/--length`) so its published tables can be repeated
//! as written; the one difference is the default duration, 10 s here (the
//! classic table's length) instead of 60. The output keeps its lines too:
//!
//! ```text
//! Benchmarking: 127.0.0.1:7878
//! 50 clients, running 512 bytes, 5 sec.
//!
//! Speed: 162641 request/sec, 162631 response/sec
//! Requests: 813215
//! Responses: 813165
//! ```
//!
//! followed by bytes per second, latency percentiles and the client's own
//! CPU time, or, with `--json`, one JSON object ([`report`] documents the
//! schema). Exit status: 0 when the run finished and every byte was right,
//! 1 when a check failed or the run broke off, 2 on bad usage or an address
//! that does not answer.
//!
//! # Shapes for experiments
//!
//! Three more shapes serve the chapters' experiments rather than speed:
//! [`Config::echoes`] (`--echoes N`) makes exactly N round trips per
//! connection and ends the window when all are back, so a server's counters
//! divide exactly per echo; [`run_and_keep`] (`--hold`) hands the connections
//! back open, for measuring what idle clients cost; [`flood`] (`--no-read`)
//! sends and never reads, the client that backpressure is for. And
//! [`Config::close`] (`--close reset`) ends the connections with a reset
//! instead of a FIN.
//!
//! # Reading the numbers
//!
//! - *requests* are messages written completely, *responses* echoes received
//!   completely and verified, both counted inside the measured window; they
//!   differ by at most `clients × pipeline`, the messages in flight at its end.
//! - The latency of a message runs from the moment the client had it ready to
//!   send (with `--rate`, the moment it was due) to the moment its last byte
//!   came back, so it includes time spent waiting for room in the socket's
//!   send buffer (and, with `--rate`, behind a server that fell behind).
//! - *client CPU* near 100% of one core means the client, not the server, may
//!   be the limit: on loopback the sending side does much of the receiver's
//!   TCP work, so this happens sooner than one might think.
//!
//! # From Rust
//!
//! ```no_run
//! # #[cfg(target_os = "linux")]
//! # fn main() -> Result<(), uring_echo_tools::loadgen::LoadError> {
//! use std::time::Duration;
//! use uring_echo_tools::loadgen::{self, Config};
//!
//! let config = Config {
//!     connections: 8,
//!     duration: Duration::from_millis(500),
//!     ..Config::new("127.0.0.1:7878".parse().unwrap())
//! };
//! let report = loadgen::run(&config, |_progress| {})?;
//! println!("{:.0} requests/s, p99 {:.1} µs", report.requests_per_sec, report.latency_us.p99);
//! # Ok(())
//! # }
//! # #[cfg(not(target_os = "linux"))]
//! # fn main() {}
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hdrhistogram::Histogram;

#[cfg(target_os = "linux")]
mod engine;
#[cfg(target_os = "linux")]
mod os;
pub mod report;

#[cfg(target_os = "linux")]
pub use engine::{Flood, flood, run, run_and_keep};
#[cfg(target_os = "linux")]
pub use os::pin_current_thread;

/// `-c`: fifty clients, as in the classic tables.
pub const DEFAULT_CONNECTIONS: usize = 50;
/// `-l`: 512-byte messages, as in the classic tables.
pub const DEFAULT_LENGTH: usize = 512;
/// `-d`: ten seconds. `rust_echo_bench` defaults to 60, but the tables people
/// quote were taken over 10, and 10 is long enough to see the noise.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// `--pipeline`: one message in flight per connection, a strict ping-pong.
pub const DEFAULT_PIPELINE: usize = 1;
/// `--timeout`: how long connecting, and any one echo, may take. Generous,
/// because a debug build on two busy cores can be slow; a server that is
/// merely slow should give a bad number, not an error.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// With `rate`, the share of the offered rate a server must answer in the
/// window to count as keeping up: below 95%, the sends are falling behind
/// the schedule and the latencies measure the backlog.
pub const KEPT_UP_SHARE: f64 = 0.95;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The echo server.
    pub addr: SocketAddr,
    /// Clients: connections open at the same time.
    pub connections: usize,
    /// Bytes in one message.
    pub length: usize,
    /// Messages each connection keeps in flight (1: send, wait, send again).
    pub pipeline: usize,
    /// How long to measure.
    pub duration: Duration,
    /// Load before measuring whose numbers are thrown away.
    pub warmup: Duration,
    /// The limit for connecting every client, and for any one message's echo
    /// (a connection whose oldest message waits longer fails the run).
    pub timeout: Duration,
    /// Pin the calling thread (the one that runs the load) to this CPU first.
    pub pin_cpu: Option<usize>,
    /// An open loop at this many requests per second over all connections
    /// (see the module's documentation); `None` for a closed loop.
    pub rate: Option<f64>,
    /// Closed loop only: each connection makes exactly this many round
    /// trips, and the window ends when every connection has made them
    /// (`duration` is then not used). A fixed count makes a server's own
    /// counters, or an `strace -c` table, divide exactly per echo.
    pub echoes: Option<u64>,
    /// How the connections end after the run.
    pub close: Close,
}

/// How a connection ends when the run is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Close {
    /// An ordinary close: a FIN, which the server reads as end of file
    /// (`read` returns 0).
    #[default]
    Fin,
    /// An abortive close: `SO_LINGER` on with a zero timeout makes `close`
    /// send a reset (RST) instead, and drop whatever was not yet sent. The
    /// server's next `read` fails with `ECONNRESET`: the path a server takes
    /// when a client crashes or a middlebox gives up on the connection.
    Reset,
}

impl Config {
    /// The classic run against `addr`: 50 clients, 512 bytes, 10 s, no
    /// pipelining, no warm-up, no pinning, a closed loop.
    pub fn new(addr: SocketAddr) -> Config {
        Config {
            addr,
            connections: DEFAULT_CONNECTIONS,
            length: DEFAULT_LENGTH,
            pipeline: DEFAULT_PIPELINE,
            duration: DEFAULT_DURATION,
            warmup: Duration::ZERO,
            timeout: DEFAULT_TIMEOUT,
            pin_cpu: None,
            rate: None,
            echoes: None,
            close: Close::Fin,
        }
    }

    /// Says what is wrong with the numbers, if anything.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |what: &str| Err(LoadError::Config(what.to_string()));
        if self.connections == 0 {
            return bad("at least one client is needed");
        }
        if self.length == 0 {
            return bad("a message needs at least one byte");
        }
        if self.pipeline == 0 {
            return bad("the pipeline needs room for at least one message");
        }
        if self.duration.is_zero() {
            return bad("the duration must be more than zero");
        }
        if self.timeout.is_zero() {
            return bad("the timeout must be more than zero");
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return bad("the rate must be a number of requests per second above zero");
        }
        if let Some(echoes) = self.echoes {
            if echoes == 0 {
                return bad("a connection needs at least one echo");
            }
            if self.rate.is_some() {
                return bad("a fixed number of echoes is a closed loop: it cannot have a rate");
            }
            if !self.warmup.is_zero() {
                return bad("a fixed number of echoes counts them all: it cannot have a warm-up");
            }
        }
        // Deadlines are `Instant`s; a year keeps their sums far from overflow.
        let year = Duration::from_secs(365 * 24 * 3600);
        if self.duration > year || self.warmup > year || self.timeout > year {
            return bad("durations, warm-ups and timeouts are limited to a year");
        }
        Ok(())
    }
}

/// Which part of a run is going on, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Opening the connections.
    Connecting,
    /// Load whose numbers are thrown away.
    WarmingUp,
    /// The measured window.
    Measuring,
    /// Waiting for the echoes still in flight.
    Draining,
}

/// A snapshot passed to the progress callback, about ten times a second and
/// whenever the phase changes.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// The current phase.
    pub phase: Phase,
    /// Time spent in this phase so far.
    pub elapsed: Duration,
    /// How long the phase is planned to take (for connecting and draining,
    /// the time limit).
    pub planned: Duration,
    /// Connections open.
    pub connected: usize,
    /// Connections asked for.
    pub connections: usize,
    /// Echoes completed and verified in this phase.
    pub responses: u64,
}

/// Round-trip latency, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Latency {
    /// How many round trips were recorded (the responses of the window).
    pub samples: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    /// The 99.9th percentile.
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// Reads the percentiles out of a histogram of nanoseconds.
    pub fn from_nanos(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            samples: h.len(),
            min: us(h.min()),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// CPU time the client's own thread used during the measured window.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ClientCpu {
    /// Seconds in user space: building and checking messages, the loop.
    pub user_seconds: f64,
    /// Seconds in the kernel: system calls, and on loopback much of the TCP
    /// work of both ends.
    pub system_seconds: f64,
    /// `(user + system) / seconds`: 1.0 is one core fully busy.
    pub busy: f64,
}

/// How an open-loop run went against its schedule.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RateReport {
    /// The rate asked for, requests per second over all connections.
    pub offered_per_sec: f64,
    /// Responses per second in the window (the same as `responses_per_sec`).
    pub achieved_per_sec: f64,
    /// `achieved_per_sec / offered_per_sec`.
    pub achieved_share: f64,
    /// Messages that were due by the end of the window and not yet sent:
    /// the backlog of a server that fell behind (a few, at most one per
    /// connection, for one that kept up).
    pub behind_at_end: u64,
    /// Whether the server kept up: `achieved_share` at least
    /// [`KEPT_UP_SHARE`]. When it did not, the latencies measure the
    /// backlog, and the rate was too high for this server.
    pub kept_up: bool,
}

impl RateReport {
    /// The verdict on `achieved` of `offered` requests/s with `behind` sends
    /// late at the end.
    pub fn new(offered: f64, achieved: f64, behind: u64) -> RateReport {
        let share = achieved / offered;
        RateReport {
            offered_per_sec: offered,
            achieved_per_sec: achieved,
            achieved_share: share,
            behind_at_end: behind,
            kept_up: share >= KEPT_UP_SHARE,
        }
    }
}

/// What a finished run measured. Every count is of the measured window only
/// (not the warm-up, not the drain), except `responses_in_run`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The server.
    pub address: SocketAddr,
    /// Clients (connections).
    pub connections: usize,
    /// Bytes per message.
    pub length: usize,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// The warm-up before the window, in seconds.
    pub warmup_seconds: f64,
    /// The measured window, in seconds (as long as asked, give or take the
    /// time one batch of events takes).
    pub seconds: f64,
    /// Messages written completely.
    pub requests: u64,
    /// Echoes received completely and verified.
    pub responses: u64,
    /// Echoed bytes received and verified (one direction).
    pub bytes: u64,
    pub requests_per_sec: f64,
    pub responses_per_sec: f64,
    pub bytes_per_sec: f64,
    /// Round-trip times of the window's responses.
    pub latency_us: Latency,
    /// Errors during the window. Always 0 in a report: any error (a wrong
    /// byte, a reset, a stall) ends the run with a [`LoadError`] instead of
    /// a report. The field is kept so the table and the JSON say so.
    pub errors: u64,
    /// The CPU the client ran pinned to, if it was.
    pub pinned_cpu: Option<usize>,
    /// The client thread's CPU time in the window, where it could be read.
    pub client_cpu: Option<ClientCpu>,
    /// For an open-loop run (`rate`), how it kept to its schedule.
    pub rate: Option<RateReport>,
    /// Every echo verified in the whole run, warm-up and drain included: what
    /// a server's own counters for its whole life (such as the `enters` a
    /// lesson prints at exit) are divided by.
    pub responses_in_run: u64,
    /// The latency histogram itself, in nanoseconds, for callers that want
    /// other percentiles or to merge runs. Not in the JSON.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

/// Why a run ended without a report.
#[derive(Debug)]
pub enum LoadError {
    /// The configuration cannot be run (zero clients, ...).
    Config(String),
    /// `--pin` failed: no such CPU, or not one this process may use.
    Pin { cpu: usize, err: io::Error },
    /// The machinery failed: epoll could not be created, and so on.
    Setup { what: &'static str, err: io::Error },
    /// Not every client could connect; `connected` did.
    Connect {
        connected: usize,
        wanted: usize,
        err: io::Error,
    },
    /// A byte came back that is not the one sent at that position.
    Mismatch {
        conn: usize,
        offset: u64,
        got: u8,
        wanted: u8,
    },
    /// More bytes came back than were sent.
    Extra {
        conn: usize,
        received: u64,
        sent: u64,
    },
    /// The server closed a connection (EOF) with echoes still owed, or in
    /// the middle of the run.
    Closed {
        conn: usize,
        received: u64,
        sent: u64,
    },
    /// A read or write failed (a reset, ...).
    Io {
        conn: usize,
        during: &'static str,
        err: io::Error,
    },
    /// A message's echo did not come back within the time limit.
    Stalled {
        conn: usize,
        waited: Duration,
        received: u64,
        sent: u64,
    },
}

impl LoadError {
    /// Whether this is the caller's mistake or a server that does not
    /// answer at all (nothing connected): `echo-bench` exits with 2 for
    /// these, and with 1 for a run that started and then failed.
    pub fn is_usage_or_unreachable(&self) -> bool {
        match self {
            LoadError::Config(_) | LoadError::Pin { .. } => true,
            LoadError::Connect { connected, .. } => *connected == 0,
            _ => false,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Config(why) => write!(f, "{why}"),
            LoadError::Pin { cpu, err } => write!(f, "cannot pin the client to CPU {cpu}: {err}"),
            LoadError::Setup { what, err } => write!(f, "cannot {what}: {err}"),
            LoadError::Connect {
                connected,
                wanted,
                err,
            } => write!(
                f,
                "connected {connected} of {wanted} clients: {err}{}",
                if *connected == 0 {
                    " (is the server running, and listening on this address?)"
                } else {
                    ""
                }
            ),
            LoadError::Mismatch {
                conn,
                offset,
                got,
                wanted,
            } => write!(
                f,
                "connection {conn}: byte {offset} of the echo is {got:#04x}, {wanted:#04x} was \
                 sent there (a byte lost, duplicated, reordered or corrupted before it)"
            ),
            LoadError::Extra {
                conn,
                received,
                sent,
            } => write!(
                f,
                "connection {conn}: {received} bytes came back, only {sent} were sent"
            ),
            LoadError::Closed {
                conn,
                received,
                sent,
            } => write!(
                f,
                "connection {conn}: the server closed the connection during the run, \
                 after {received} of {sent} bytes sent came back"
            ),
            LoadError::Io { conn, during, err } => {
                write!(f, "connection {conn}: {during} failed: {err}")
            }
            LoadError::Stalled {
                conn,
                waited,
                received,
                sent,
            } => write!(
                f,
                "connection {conn}: no complete echo for {:.1} s ({received} of {sent} bytes \
                 sent came back); is the server serving every client at once?",
                waited.as_secs_f64()
            ),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Pin { err, .. }
            | LoadError::Setup { err, .. }
            | LoadError::Connect { err, .. }
            | LoadError::Io { err, .. } => Some(err),
            _ => None,
        }
    }
}
