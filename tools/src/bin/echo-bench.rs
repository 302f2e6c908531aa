//! echo-bench — load any TCP echo server, check every byte, and say how fast
//! it answered.
//!
//! ```text
//! cargo run --release --bin echo-bench -- -a 127.0.0.1:7878 -c 50 -d 10 -l 512
//! cargo run --release --bin echo-bench -- --pipeline 8 --warmup 1 --pin 1
//! cargo run --release --bin echo-bench -- -c 50 --rate 20000   # open loop
//! cargo run --release --bin echo-bench -- --json > run.json
//! ```
//!
//! The flags are rust_echo_bench's, so the classic tables can be repeated as
//! written; the default duration is 10 s instead of its 60. One thread drives
//! every connection through epoll (see `uring_echo_tools::loadgen`, which also
//! documents the output). Exit status: 0 when the run finished and every
//! byte was right, 1 when a check failed or the run broke off, 2 on bad
//! usage or an address that does not answer.

#[cfg(target_os = "linux")]
use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use uring_echo_book::cli::{DEFAULT_ADDR, parse_addr};
#[cfg(target_os = "linux")]
use uring_echo_tools::loadgen;
use uring_echo_tools::loadgen::{DEFAULT_CONNECTIONS, DEFAULT_LENGTH, DEFAULT_PIPELINE};

/// Loads a TCP echo server from many connections on one thread, checks every
/// byte of every echo, and reports requests/s, bytes/s and latency
/// percentiles.
#[derive(Parser)]
#[command(name = "echo-bench", version, after_help = AFTER_HELP)]
struct Args {
    /// The echo server's address.
    #[arg(short = 'a', long, default_value = DEFAULT_ADDR, value_parser = parse_addr)]
    address: SocketAddr,

    /// Number of clients: connections, all open at the same time.
    #[arg(short = 'c', long, value_name = "CLIENTS", default_value_t = DEFAULT_CONNECTIONS,
          value_parser = at_least_one)]
    number: usize,

    /// Seconds to measure for (fractions allowed); default 10.
    /// rust_echo_bench's default is 60; 10 is the length of the classic
    /// tables. With --hold: how long to hold the connections (default: until
    /// Ctrl-C). With --no-read: how long to send.
    #[arg(short = 'd', long, value_name = "SECONDS", value_parser = parse_seconds)]
    duration: Option<Duration>,

    /// Bytes in each message.
    #[arg(short = 'l', long, value_name = "BYTES", default_value_t = DEFAULT_LENGTH,
          value_parser = at_least_one)]
    length: usize,

    /// Messages each connection keeps in flight. 1 is a strict ping-pong:
    /// send, wait for the whole echo, send the next.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PIPELINE,
          value_parser = at_least_one)]
    pipeline: usize,

    /// Run the load for this many seconds first and throw those numbers away
    /// (page faults, buffers growing, CPU clocks ramping up).
    #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = parse_seconds_or_zero)]
    warmup: Duration,

    /// Pin the client to this CPU (sched_setaffinity). Pin the server to
    /// another, e.g. `taskset -c 0 target/release/03_epoll`.
    #[arg(long, value_name = "CPU")]
    pin: Option<usize>,

    /// Time limit, in seconds, for connecting every client and for any one
    /// echo; a server that misses it fails the run.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    timeout: Duration,

    /// Open loop: offer this many requests per second, spread evenly over
    /// the connections, whatever the server does (as wrk2 does), with each
    /// latency counted from the time its message was due. At most
    /// --pipeline messages wait per connection; a server that answers less
    /// than 95% of RATE is reported as not keeping up. Without it, a closed
    /// loop: each echo back sends the next message.
    #[arg(long, value_name = "RATE", value_parser = positive_rate)]
    rate: Option<f64>,

    /// Each connection makes exactly N round trips, then the run ends and
    /// reports (instead of running for -d seconds). With -c C, the server
    /// sees exactly C × N echoes, so its counters and `strace -c` divide
    /// exactly per echo. A closed loop: not with --rate or --warmup.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..),
          conflicts_with_all = ["rate", "warmup"])]
    echoes: Option<u64>,

    /// Connect every client, make --echoes round trips on each (default 1),
    /// print one `Holding:` line, then keep every connection open and idle
    /// for -d seconds, or until Ctrl-C. For reading what idle clients cost
    /// the server (`/proc/PID/status`, `ps -o nlwp`).
    #[arg(long, conflicts_with_all = ["rate", "warmup", "json", "no_read"])]
    hold: bool,

    /// How each connection ends after the run: `fin`, an ordinary close the
    /// server reads as end of file; `reset`, an abortive close
    /// (SO_LINGER with a zero timeout) that the server's next read sees as
    /// ECONNRESET, as when a client crashes.
    #[arg(long, value_enum, value_name = "HOW", default_value_t = CloseArg::Fin)]
    close: CloseArg,

    /// Send for -d seconds and never read an echo back: the client that
    /// backpressure is for. With --rate R, R messages of -l bytes a second
    /// over all connections; without it, as fast as the kernel takes them.
    /// Prints how much was sent and when the writes last made progress.
    #[arg(long, conflicts_with_all = ["echoes", "warmup", "json", "pipeline"])]
    no_read: bool,

    /// Print one JSON object instead of the table (schema version 2,
    /// documented in `uring_echo_tools::loadgen::report`).
    #[arg(long)]
    json: bool,
}

/// `--close`: how the connections end.
#[derive(Clone, Copy, clap::ValueEnum)]
enum CloseArg {
    Fin,
    Reset,
}

const AFTER_HELP: &str = "\
Three other shapes, for experiments in the chapters rather than for speed:
  --echoes N   exactly N round trips per connection, then the report (exact counts per echo)
  --hold       connect, echo, print `Holding: C connections open, each echoed N time(s)`, idle
  --no-read    send and never read; prints `Sent:` and `Last progress:` lines

With --rate R the load is an open loop (R requests/s over all connections, latency from each
message's due time) and one more line says whether the server kept up with R.

Output: rust_echo_bench's lines (`Speed: N request/sec, N response/sec`, `Requests: N`,
`Responses: N`), then bytes/s, latency p50/p90/p99/p99.9/max in microseconds and the client's
own CPU time. A progress bar on stderr when it is a terminal, a line a second otherwise.

Every echo is checked byte for byte against position-dependent data; a wrong byte, a closed or
reset connection, or an echo later than --timeout ends the run with one line on stderr.

Exit status: 0 the run finished and every byte was right, 1 a check failed or the run broke off,
2 bad usage or an address that does not answer.

Fair numbers on a machine with two or more CPUs: server and client on CPUs of their own, e.g.
  taskset -c 0 target/release/05_uring_multishot &
  target/release/echo-bench -a 127.0.0.1:7878 -c 50 -d 10 -l 512 --pin 1";

/// A count of 1 or more (clients, bytes, messages in flight).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// Requests per second: a number above zero (fractions allowed).
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "`{text}` is not a number of requests per second above 0"
        )),
    }
}

fn parse_seconds_or_zero(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("`{text}` is not a number of seconds from 0 up"))
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let d = parse_seconds_or_zero(text)?;
    if d.is_zero() {
        return Err("must be more than 0 seconds".into());
    }
    Ok(d)
}

/// epoll is a Linux system call; the rest of the world gets a clear word.
#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("echo-bench needs Linux (epoll)");
    ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    // clap exits with 2 on bad usage and 0 for --help, as promised.
    let args = Args::parse();
    // One descriptor per client: -c 10000 needs more than the usual 1024.
    uring_echo_book::limits::raise_open_file_limit_or_warn();

    let ten_seconds = Duration::from_secs(10);
    let config = loadgen::Config {
        addr: args.address,
        connections: args.number,
        length: args.length,
        pipeline: args.pipeline,
        duration: args.duration.unwrap_or(ten_seconds),
        warmup: args.warmup,
        timeout: args.timeout,
        pin_cpu: args.pin,
        rate: args.rate,
        echoes: args.echoes.or(args.hold.then_some(1)),
        close: match args.close {
            CloseArg::Fin => loadgen::Close::Fin,
            CloseArg::Reset => loadgen::Close::Reset,
        },
    };
    if args.no_read {
        return no_read(&config);
    }
    let mut shown = progress::Shown::new(&config);
    if args.hold {
        let result = loadgen::run_and_keep(&config, |p| shown.update(p));
        shown.finish();
        return match result {
            Ok((report, streams)) => {
                hold(&report, streams, args.duration);
                ExitCode::SUCCESS
            }
            Err(e) => failed(&e),
        };
    }
    let result = loadgen::run(&config, |p| shown.update(p));
    shown.finish();

    match result {
        Ok(report) => {
            let text = if args.json {
                // The table has the rate's line; JSON readers get the
                // field, and whoever watches stderr a clear word.
                if let Some(rate) = report.rate.filter(|r| !r.kept_up) {
                    eprintln!("echo-bench: {}", loadgen::report::rate_verdict(&rate));
                }
                loadgen::report::json(&report) + "\n"
            } else {
                loadgen::report::table(&report)
            };
            // Not `print!`, which panics when stdout is a closed pipe
            // (`echo-bench | head -1`): a reader that left needs no answer.
            let _ = io::stdout().lock().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

/// One line on stderr, and the documented exit status: 2 for bad usage or a
/// server that never answered, 1 for a run that started and then failed.
#[cfg(target_os = "linux")]
fn failed(e: &loadgen::LoadError) -> ExitCode {
    eprintln!("error: {e}");
    if e.is_usage_or_unreachable() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// `--hold`: says that every connection is open and has been echoed, then
/// keeps them open and idle, for `duration` or until the process is stopped
/// (Ctrl-C's default action ends it, and the kernel closes the sockets).
#[cfg(target_os = "linux")]
fn hold(report: &loadgen::Report, streams: Vec<std::net::TcpStream>, duration: Option<Duration>) {
    let until = match duration {
        Some(d) => format!("closing them in {:.1} s", d.as_secs_f64()),
        None => "Ctrl-C closes them".to_string(),
    };
    let per = report.responses_in_run / streams.len().max(1) as u64;
    let line = format!(
        "Holding: {} connections open, each echoed {per} time{}; {until}\n",
        streams.len(),
        if per == 1 { "" } else { "s" }
    );
    // Flushed at once: whoever waits for this line (a test, a script) must
    // get it while the connections are held, not when the process ends.
    let mut out = io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
    drop(out);
    match duration {
        Some(d) => std::thread::sleep(d),
        // `park` may return spuriously: park again.
        None => loop {
            std::thread::park();
        },
    }
    drop(streams);
}

/// `--no-read`: sends and never reads, then says how much went out and
/// when the writes stopped making progress.
#[cfg(target_os = "linux")]
fn no_read(config: &loadgen::Config) -> ExitCode {
    let mut shown = progress::Shown::new(config);
    let result = loadgen::flood(config, |p| shown.update(p));
    shown.finish();
    match result {
        Ok(flood) => {
            let pace = match config.rate {
                Some(r) => format!("{r} messages/s in all"),
                None => "as fast as the kernel takes them".to_string(),
            };
            let last = match flood.last_progress_seconds {
                Some(s) => format!("{s:.2} s of {:.2} s", flood.seconds),
                None => "never (nothing could be written)".to_string(),
            };
            let text = format!(
                "Not reading: {}\n{} clients, sending {} bytes at a time, {pace}\n\n\
                 Sent: {} bytes, no echo read\n\
                 Last progress: {last}\n",
                flood.address, flood.connections, config.length, flood.bytes_sent
            );
            let _ = io::stdout().lock().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

/// What the user sees while the run goes on, on stderr (stdout is for the
/// result, so `--json > file` and pipes stay clean).
#[cfg(target_os = "linux")]
mod progress {
    use std::io::{self, IsTerminal};
    use std::time::Duration;

    use indicatif::{ProgressBar, ProgressStyle};
    use uring_echo_tools::loadgen::{Config, Phase, Progress};

    /// A bar on a terminal; on a pipe or a log file, where a bar would be a
    /// mess of carriage returns, a plain line when the phase changes and
    /// one a second while measuring.
    pub enum Shown {
        Bar(ProgressBar),
        Lines {
            phase: Option<Phase>,
            last_second: u64,
        },
    }

    impl Shown {
        pub fn new(config: &Config) -> Shown {
            if !io::stderr().is_terminal() {
                let rate = config
                    .rate
                    .map(|r| format!(", open loop at {r:.0}/s"))
                    .unwrap_or_default();
                let length = match config.echoes {
                    Some(n) => format!("{n} echoes each"),
                    None => format!("{:.1} s", config.duration.as_secs_f64()),
                };
                eprintln!(
                    "echo-bench: {} clients, {} bytes, pipeline {}{rate}, {length} against {}",
                    config.connections, config.length, config.pipeline, config.addr
                );
                return Shown::Lines {
                    phase: None,
                    last_second: 0,
                };
            }
            let bar = ProgressBar::new(1000);
            let style = ProgressStyle::with_template("{msg:<38} [{bar:25}] {percent:>3}%")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            Shown::Bar(bar)
        }

        pub fn update(&mut self, p: &Progress) {
            let word = match p.phase {
                Phase::Connecting => "connecting",
                Phase::WarmingUp => "warming up",
                Phase::Measuring => "measuring",
                Phase::Draining => "draining",
            };
            match self {
                Shown::Bar(bar) => {
                    let message = match p.phase {
                        Phase::Connecting => {
                            format!("{word}: {} of {}", p.connected, p.connections)
                        }
                        Phase::Draining => word.to_string(),
                        Phase::WarmingUp | Phase::Measuring => format!(
                            "{word}: {:.1} s, {:.0} responses/s",
                            p.elapsed.as_secs_f64(),
                            rate(p.responses, p.elapsed)
                        ),
                    };
                    bar.set_message(message);
                    bar.set_position(permille(p.elapsed, p.planned));
                }
                Shown::Lines { phase, last_second } => {
                    if *phase != Some(p.phase) {
                        *phase = Some(p.phase);
                        *last_second = 0;
                        let detail = match p.phase {
                            Phase::Connecting => format!(" {} clients", p.connections),
                            _ => String::new(),
                        };
                        eprintln!("echo-bench: {word}{detail}");
                    }
                    let second = p.elapsed.as_secs();
                    if p.phase == Phase::Measuring && second > *last_second {
                        *last_second = second;
                        eprintln!(
                            "echo-bench: {second} s, {} responses, {:.0}/s",
                            p.responses,
                            rate(p.responses, p.elapsed)
                        );
                    }
                }
            }
        }

        pub fn finish(self) {
            if let Shown::Bar(bar) = self {
                bar.finish_and_clear();
            }
        }
    }

    fn rate(n: u64, over: Duration) -> f64 {
        if over.is_zero() {
            0.0
        } else {
            n as f64 / over.as_secs_f64()
        }
    }

    fn permille(part: Duration, whole: Duration) -> u64 {
        if whole.is_zero() {
            return 1000;
        }
        ((part.as_secs_f64() / whole.as_secs_f64()) * 1000.0).clamp(0.0, 1000.0) as u64
    }
}
