//! resp-ladder — lesson 07 against the real `redis-server`, both driven by
//! the real `redis-benchmark`, in alternating rounds; writes `resp.json`
//! and the tables chapter 07 includes.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release --bin resp-ladder -- --rounds 5 --requests 300000 --variant 'batch1=--batch 1' \
//!     --out chapters/data/07
//! cargo run --release --bin resp-ladder -- --redraw --out chapters/data/07
//! ```
//!
//! Each run: a fresh server (pinned to CPU 0 when there are two CPUs and
//! `taskset`), one `redis-benchmark -t TEST -c 50 -P P -n N --csv` (pinned
//! to CPU 1), the server's CPU time from `/proc/PID/stat` before and after,
//! the benchmark's from `getrusage(RUSAGE_CHILDREN)`. Needs `redis-server`
//! and `redis-benchmark` (`apt-get install redis-server redis-tools`).

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use clap::Parser;
use uring_echo_tools::ladder::{machine, on_path, process_cpu_seconds};
use uring_echo_tools::process::{ServerProcess, binary_path, check_server_built};
use uring_echo_tools::resp::{RedisServer, redis_tool};
use uring_echo_tools::resp_ladder::{
    self, RespData, RespMemory, RespRun, SCHEMA, SCHEMA_VERSION, ServerEntry, parse_csv_rps,
};

/// Lesson 07 and redis-server under redis-benchmark, in alternating rounds.
#[derive(Parser)]
#[command(name = "resp-ladder", version)]
struct Args {
    /// Where resp.json and tables/ go.
    #[arg(long, default_value = "chapters/data/07")]
    out: PathBuf,
    /// Rounds; each runs every server, test and pipeline depth once.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// redis-benchmark's tests, as its -t takes them.
    #[arg(long, value_delimiter = ',', default_value = "ping_inline,set,get")]
    tests: Vec<String>,
    /// Pipeline depths (-P).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pipelines: Vec<u32>,
    /// Clients (-c).
    #[arg(long, default_value_t = 50)]
    clients: u32,
    /// Requests per run at -P 1; a pipeline of depth P runs P times as
    /// many, so each run lasts a few seconds (shorter runs swing more).
    #[arg(long, default_value_t = 300_000)]
    requests: u64,
    /// Idle connections held open (`redis-benchmark -I`) to measure each
    /// server's memory per connection after the rounds; 0 skips it.
    #[arg(long, default_value_t = 1000)]
    memory_connections: u32,
    /// A variant of lesson 07 to measure beside it: a label and the
    /// lesson's options, e.g. 'batch16=--batch 16'. Repeatable.
    #[arg(long = "variant", value_name = "LABEL=OPTIONS", value_parser = parse_variant)]
    variants: Vec<(String, Vec<String>)>,
    /// Write the tables again from resp.json, without measuring.
    #[arg(long)]
    redraw: bool,
    /// Measure only the memory per idle connection, into the resp.json
    /// already in --out (its rounds are kept; this command is recorded as
    /// the memory's own).
    #[arg(long, conflicts_with = "redraw")]
    memory_only: bool,
}

fn parse_variant(text: &str) -> Result<(String, Vec<String>), String> {
    let (label, options) = text
        .split_once('=')
        .ok_or("LABEL=OPTIONS, e.g. 'batch16=--batch 16'")?;
    let options = options.split_whitespace().map(String::from).collect();
    Ok((format!("07 {}", label.trim()), options))
}

/// Who serves a run: redis-server, or lesson 07 with these options (under
/// this name in the data).
#[derive(Clone)]
enum Who {
    Redis,
    Lesson(String, Vec<String>),
}

impl Who {
    fn name(&self) -> String {
        match self {
            Who::Redis => "redis-server".into(),
            Who::Lesson(name, _) => name.clone(),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = if args.redraw {
        resp_ladder::read(&args.out).and_then(|data| write(&args, &data))
    } else if args.memory_only {
        memory_only(&args).and_then(|data| write(&args, &data))
    } else {
        measure(&args).and_then(|data| write(&args, &data))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--memory-only`: the memory of redis-server and lesson 07, added to the
/// data already measured.
fn memory_only(args: &Args) -> Result<RespData, String> {
    let mut data = resp_ladder::read(&args.out)?;
    let bench = redis_tool("redis-benchmark")?;
    check_server_built(LESSON, &binary_path(LESSON))?;
    let prefix: &[&str] = if data.pinned {
        &["taskset", "-c", "0"]
    } else {
        &[]
    };
    // Variants change how the lesson waits, not what it holds per connection.
    let whos = [Who::Redis, Who::Lesson(LESSON.into(), Vec::new())];
    data.memory = measure_memory(&bench, &whos, prefix, args.memory_connections);
    data.memory_command = Some(std::env::args().collect());
    Ok(data)
}

/// Every server's memory per idle connection, one after the other.
fn measure_memory(
    bench: &std::path::Path,
    whos: &[Who],
    prefix: &[&str],
    n: u32,
) -> Vec<RespMemory> {
    // Enough descriptors for the idle clients (the benchmark inherits it).
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    let mut out = Vec::new();
    for who in whos {
        let m = memory(bench, who, prefix, n);
        match (&m.per_connection_kib, &m.error) {
            (Some(v), _) => eprintln!("memory {:>13}: {v:.2} KiB per idle connection", m.server),
            (_, Some(e)) => eprintln!("memory {:>13}: not measured: {e}", m.server),
            _ => {}
        }
        out.push(m);
    }
    out
}

fn write(args: &Args, data: &RespData) -> Result<(), String> {
    std::fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
    if !args.redraw {
        let json = serde_json::to_string_pretty(data).map_err(|e| e.to_string())?;
        std::fs::write(args.out.join("resp.json"), json + "\n").map_err(|e| e.to_string())?;
    }
    for path in resp_ladder::write_tables(&args.out, data).map_err(|e| e.to_string())? {
        eprintln!("wrote {}", path.display());
    }
    let chart = resp_ladder::draw_cpu_chart(&args.out, data)?;
    eprintln!("wrote {}", chart.display());
    print!(
        "{}",
        resp_ladder::comparison(data, "redis-server", "07_uring_resp")
    );
    Ok(())
}

const LESSON: &str = "07_uring_resp";

fn measure(args: &Args) -> Result<RespData, String> {
    let bench = redis_tool("redis-benchmark")?;
    redis_tool("redis-server")?;
    check_server_built(LESSON, &binary_path(LESSON))?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = cpus >= 2 && on_path("taskset");
    let server_prefix: &[&str] = if pinned { &["taskset", "-c", "0"] } else { &[] };
    let version = Command::new(redis_tool("redis-server")?)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut data = RespData {
        schema: SCHEMA.into(),
        schema_version: SCHEMA_VERSION,
        machine: machine(),
        command: std::env::args().collect(),
        clients: args.clients,
        pipelines: args.pipelines.clone(),
        tests: args.tests.iter().map(|t| t.to_uppercase()).collect(),
        rounds: args.rounds,
        pinned,
        servers: vec![
            ServerEntry {
                name: "redis-server".into(),
                // As a shell would write it (see `RedisServer::start`).
                command: "redis-server --port PORT --bind 127.0.0.1 --save '' --appendonly no \
                          --daemonize no --protected-mode no --logfile ''"
                    .split_whitespace()
                    .map(String::from)
                    .collect(),
                version,
            },
            ServerEntry {
                name: LESSON.into(),
                command: vec![format!("target/release/{LESSON}")],
                version: LESSON.into(),
            },
        ],
        runs: Vec::new(),
        memory: Vec::new(),
        memory_command: None,
    };
    let mut whos = vec![Who::Redis, Who::Lesson(LESSON.into(), Vec::new())];
    for (label, options) in &args.variants {
        let mut command = vec![format!("target/release/{LESSON}")];
        command.extend(options.iter().cloned());
        data.servers.push(ServerEntry {
            name: label.clone(),
            command,
            version: LESSON.into(),
        });
        whos.push(Who::Lesson(label.clone(), options.clone()));
    }
    for round in 1..=args.rounds {
        // Rotate which server goes first.
        let mut order = whos.clone();
        order.rotate_left((round as usize - 1) % whos.len());
        for &pipeline in &args.pipelines {
            for test in &args.tests {
                for who in &order {
                    let requests = args.requests * u64::from(pipeline.max(1));
                    let run = one_run(
                        &bench,
                        who,
                        server_prefix,
                        pinned,
                        test,
                        pipeline,
                        requests,
                        args.clients,
                        round,
                    );
                    let run =
                        run.unwrap_or_else(|e| failed(round, who, test, pipeline, requests, e));
                    eprintln!(
                        "round {round} {:>13} {:>11} -P {:<3} {:>9.0} req/s  {:.3} µs/req  server {:.0}% client {:.0}%{}",
                        run.server,
                        run.test,
                        pipeline,
                        run.rps,
                        run.us_per_request(),
                        run.server_busy() * 100.0,
                        run.client_busy() * 100.0,
                        run.error
                            .as_deref()
                            .map(|e| format!("  ERROR {e}"))
                            .unwrap_or_default()
                    );
                    data.runs.push(run);
                }
            }
        }
    }
    if args.memory_connections > 0 {
        // Variants change how the lesson waits, not what it holds per connection.
        data.memory = measure_memory(&bench, &whos[..2], server_prefix, args.memory_connections);
    }
    Ok(data)
}

fn failed(round: u32, who: &Who, test: &str, pipeline: u32, requests: u64, e: String) -> RespRun {
    RespRun {
        round,
        server: who.name(),
        test: test.to_uppercase(),
        pipeline,
        requests,
        seconds: 1.0,
        rps: 0.0,
        server_user_s: 0.0,
        server_system_s: 0.0,
        client_cpu_s: 0.0,
        error: Some(e),
    }
}

/// One server's memory per idle connection: its VmRSS after a short warm-up
/// load, then with `n` idle connections held open by `redis-benchmark -I`
/// (counted arriving by the server's open descriptors), the growth over `n`.
fn memory(bench: &std::path::Path, who: &Who, prefix: &[&str], n: u32) -> RespMemory {
    let measured = (|| -> Result<(u64, u64), String> {
        let server = start_server(who, prefix)?;
        let (pid, port) = match &server {
            Server::Lesson(s) => (s.pid(), s.addr().port()),
            Server::Redis(r) => (r.pid(), r.addr.port()),
        };
        let port = port.to_string();
        let host = ["-h", "127.0.0.1", "-p", port.as_str()];
        Command::new(bench)
            .args(host)
            .args(["-t", "set,get", "-n", "20000", "-c", "50", "-q"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run redis-benchmark: {e}"))?;
        let baseline = rss_kib(pid)?;
        let fds = open_fds(pid)?;
        let mut idle = Command::new(bench)
            .args(host)
            .args(["-c", &n.to_string(), "-I"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-benchmark -I: {e}"))?;
        // The server says nothing when a connection arrives: watch its
        // descriptors until all `n` are there.
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let arrived = loop {
            let now = open_fds(pid)?.saturating_sub(fds);
            if now >= n as usize || Instant::now() > deadline {
                break now;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let loaded = rss_kib(pid);
        let _ = idle.kill();
        let _ = idle.wait();
        if arrived < n as usize {
            return Err(format!(
                "only {arrived} of {n} idle connections arrived in 30 s"
            ));
        }
        Ok((baseline, loaded?))
    })();
    let server = who.name();
    match measured {
        Ok((baseline, loaded)) => RespMemory {
            server,
            connections: n,
            baseline_kib: Some(baseline),
            loaded_kib: Some(loaded),
            per_connection_kib: Some((loaded as f64 - baseline as f64) / f64::from(n)),
            error: None,
        },
        Err(e) => RespMemory {
            server,
            connections: n,
            baseline_kib: None,
            loaded_kib: None,
            per_connection_kib: None,
            error: Some(e),
        },
    }
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> Result<u64, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .ok_or_else(|| format!("cannot read VmRSS of process {pid}"))
}

/// How many descriptors a process has open.
fn open_fds(pid: u32) -> Result<usize, String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .map_err(|e| format!("cannot list /proc/{pid}/fd: {e}"))
}

/// A server for one run: the lesson, or redis-server; each killed when dropped.
enum Server {
    Lesson(ServerProcess),
    Redis(RedisServer),
}

/// Starts the server `who` names, fresh, pinned by `prefix`.
fn start_server(who: &Who, prefix: &[&str]) -> Result<Server, String> {
    Ok(if let Who::Lesson(_, options) = who {
        let mut command = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(binary_path(LESSON));
                c
            }
            None => Command::new(binary_path(LESSON)),
        };
        command.args(options).args(["--addr", "127.0.0.1:0"]);
        Server::Lesson(ServerProcess::spawn(command).map_err(|e| e.to_string())?)
    } else {
        Server::Redis(RedisServer::start(prefix)?)
    })
}

#[allow(clippy::too_many_arguments)]
fn one_run(
    bench: &std::path::Path,
    who: &Who,
    prefix: &[&str],
    pinned: bool,
    test: &str,
    pipeline: u32,
    requests: u64,
    clients: u32,
    round: u32,
) -> Result<RespRun, String> {
    let server = start_server(who, prefix)?;
    let (pid, port) = match &server {
        Server::Lesson(s) => (s.pid(), s.addr().port()),
        Server::Redis(r) => (r.pid(), r.addr.port()),
    };
    let mut command = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "1"]).arg(bench);
        c
    } else {
        Command::new(bench)
    };
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", test])
        .args(["-c", &clients.to_string(), "-P", &pipeline.to_string()])
        .args(["-n", &requests.to_string(), "--csv"])
        .stdin(Stdio::null());
    let before = process_cpu_seconds(pid).ok_or("cannot read the server's /proc/PID/stat")?;
    let children_before = children_cpu();
    let start = Instant::now();
    let out = command
        .output()
        .map_err(|e| format!("cannot run redis-benchmark: {e}"))?;
    let seconds = start.elapsed().as_secs_f64();
    let after = process_cpu_seconds(pid).ok_or("the server is gone")?;
    let client_cpu_s = children_cpu() - children_before;
    let csv = String::from_utf8_lossy(&out.stdout);
    let name = test.to_uppercase();
    let rps = parse_csv_rps(&csv, &name).ok_or_else(|| {
        format!(
            "no {name} line in redis-benchmark's output: {csv} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    drop(server);
    Ok(RespRun {
        round,
        server: who.name(),
        test: name,
        pipeline,
        requests,
        seconds,
        rps,
        server_user_s: after.0 - before.0,
        server_system_s: after.1 - before.1,
        client_cpu_s,
        error: None,
    })
}

/// CPU seconds of the children we have waited for (the benchmarks; the
/// servers are waited for only when they are dropped, after their run).
fn children_cpu() -> f64 {
    // SAFETY: getrusage writes one `rusage` into the struct we pass, which
    // is a zeroed, properly aligned local.
    let usage = unsafe {
        let mut usage: nix::libc::rusage = std::mem::zeroed();
        nix::libc::getrusage(nix::libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let secs = |t: nix::libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
