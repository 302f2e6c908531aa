//! echo-ladder — run every lesson and peer under the same load, in
//! alternation, and write the data the results chapter is made of.
//!
//! ```text
//! cargo run --release --bin echo-ladder -- --out chapters/data
//! cargo run --release --bin echo-ladder -- --clients 50 --seconds 2 --rounds 1 --out /tmp/quick
//! cargo run --release --bin echo-ladder -- --out chapters/data --redraw   # charts only
//! ```
//!
//! Run it with `--release`: it starts the servers from the directory it was
//! built into, so a release runner measures release servers (a debug build
//! of a server is slower by a factor that says nothing about its design).
//! Cargo builds every binary of the package before running one, so the
//! servers are always as fresh as the runner.
//!
//! What it does, and why, is in `uring_echo_tools::ladder`; the file format
//! too. In short: per round, every server once per client count, each on a
//! fresh process pinned to CPU 0 with the load generator on CPU 1; then one
//! `strace -c -f` run per server for system calls per request, and one run
//! per server with 10,000 connections for memory per connection.

use std::process::ExitCode;

use clap::Parser;

/// Measures every lesson and peer in alternating rounds and writes
/// ladder.json and ladder.csv.
#[derive(Parser)]
#[command(name = "echo-ladder", version)]
struct Args {
    /// Client counts to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "50,1000", value_parser = at_least_one)]
    clients: Vec<usize>,

    /// Bytes per message.
    #[arg(long, default_value_t = 512, value_parser = at_least_one)]
    length: usize,

    /// Seconds measured per run.
    #[arg(long, default_value_t = 5.0, value_parser = positive_seconds)]
    seconds: f64,

    /// Rounds: each runs every server once per client count, in turn.
    #[arg(long, default_value_t = 3, value_parser = at_least_one)]
    rounds: usize,

    /// Clients of the strace run (system calls per request).
    #[arg(long, default_value_t = 50, value_parser = at_least_one)]
    strace_clients: usize,

    /// Seconds of the strace run.
    #[arg(long, default_value_t = 2.0, value_parser = positive_seconds)]
    strace_seconds: f64,

    /// Connections held open for the memory measure.
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one)]
    memory_connections: usize,

    /// Where ladder.json, ladder.csv and the SVG charts go.
    #[arg(long, default_value = "ladder-out")]
    out: std::path::PathBuf,

    /// Measure nothing: read OUT/ladder.json and draw the charts again.
    #[arg(long)]
    redraw: bool,
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s < 3600.0 => Ok(s),
        _ => Err(format!(
            "`{text}` is not a number of seconds above 0 and below 3600"
        )),
    }
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("echo-ladder needs Linux (epoll, /proc)");
    ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args = Args::parse();
    match linux::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use uring_echo_tools::ladder::{self, LadderData, Memory, Pinning, Run, Settings, Syscalls};
    use uring_echo_tools::loadgen::{self, Phase};
    use uring_echo_tools::process::{ServerProcess, binary_path};
    use uring_echo_tools::{LESSONS, PEERS};

    use super::Args;

    /// How the servers are started: under `taskset -c 0` where possible.
    struct Launcher {
        taskset: bool,
        client_cpu: Option<usize>,
    }

    impl Launcher {
        /// `prefix` goes between taskset and the server (strace, for one run).
        fn command(&self, name: &str, prefix: &[&str]) -> Command {
            ladder::server_command(name, self.taskset, prefix)
        }

        fn start(&self, name: &str) -> Result<ServerProcess, String> {
            ServerProcess::spawn(self.command(name, &[]))
                .map_err(|e| format!("cannot start {name}: {e}"))
        }
    }

    pub fn run(args: &Args) -> Result<(), String> {
        if args.redraw {
            let path = args.out.join("ladder.json");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let data: LadderData = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not ladder data: {e}", path.display()))?;
            for path in ladder::draw_charts(&args.out, &data)? {
                eprintln!("wrote {}", path.display());
            }
            return Ok(());
        }
        // 10,000 connections need more than the usual 1024 descriptors.
        uring_echo_book::limits::raise_open_file_limit()
            .map_err(|e| format!("cannot raise the open-file limit: {e}"))?;

        let machine = ladder::machine();
        let taskset = ladder::on_path("taskset");
        let launcher = Launcher {
            taskset,
            client_cpu: (machine.cpus >= 2).then_some(1),
        };
        let pinning = Pinning {
            server: if taskset {
                "CPU 0 (taskset -c 0)".into()
            } else {
                "not pinned (taskset not found)".into()
            },
            client: match launcher.client_cpu {
                Some(cpu) => format!("CPU {cpu} (sched_setaffinity)"),
                None => "not pinned (one CPU)".into(),
            },
        };

        // Every lesson is listed; those that cannot serve a concurrent load,
        // or cannot run here, are kept with the reason rather than dropped, so
        // the data says why a rung is missing.
        let mut servers = Vec::new();
        for lesson in LESSONS {
            let skipped = lesson.why_not_here().or_else(|| {
                lesson
                    .expected_failure("concurrent")
                    .map(|e| format!("fails the `concurrent` check: {}", e.why))
            });
            servers.push(ladder::ServerEntry {
                name: lesson.name.into(),
                kind: "lesson".into(),
                model: lesson.model.into(),
                skipped,
            });
        }
        for peer in PEERS {
            servers.push(ladder::ServerEntry {
                name: peer.name.into(),
                kind: "peer".into(),
                model: peer.model.into(),
                skipped: peer.why_not_here(),
            });
        }
        let measured: Vec<String> = servers
            .iter()
            .filter(|s| s.skipped.is_none())
            .map(|s| s.name.clone())
            .collect();
        for name in &measured {
            let path = binary_path(name);
            if !path.is_file() {
                return Err(format!(
                    "{} is missing: run `cargo run --release --bin echo-ladder`, which builds it",
                    path.display()
                ));
            }
        }
        for s in servers.iter().filter(|s| s.skipped.is_some()) {
            eprintln!("skipped {}: {}", s.name, s.skipped.as_deref().unwrap_or(""));
        }

        let mut runs = Vec::new();
        for round in 1..=args.rounds {
            for &clients in &args.clients {
                // Alternation: every server once, in turn, within the round.
                for name in &measured {
                    let run = measure(&launcher, name, round, clients, args);
                    match &run.error {
                        None => eprintln!(
                            "round {round} {clients:>5} clients {name:<20} {:>9.0} req/s \
                             p99 {:>8.1} µs client busy {:.2}",
                            run.requests_per_sec,
                            run.p99_us,
                            run.client_busy.unwrap_or(f64::NAN)
                        ),
                        Some(e) => eprintln!("round {round} {clients} clients {name}: {e}"),
                    }
                    runs.push(run);
                }
            }
        }

        let strace = ladder::on_path("strace");
        let syscalls: Vec<Syscalls> = measured
            .iter()
            .map(|name| {
                let s = count_syscalls(&launcher, name, strace, args);
                match (&s.per_request, &s.unavailable) {
                    (Some(per), _) => eprintln!("syscalls {name:<20} {per:.3} per request"),
                    (_, Some(why)) => eprintln!("syscalls {name}: unavailable: {why}"),
                    _ => {}
                }
                s
            })
            .collect();

        let memory: Vec<Memory> = measured
            .iter()
            .map(|name| {
                let m = measure_memory(&launcher, name, args.memory_connections);
                match (&m.per_connection_kib, &m.error) {
                    (Some(kib), _) => eprintln!("memory   {name:<20} {kib:.2} KiB per connection"),
                    (_, Some(e)) => eprintln!("memory   {name}: {e}"),
                    _ => {}
                }
                m
            })
            .collect();

        let data = LadderData {
            schema: "echo-ladder".into(),
            schema_version: ladder::SCHEMA_VERSION,
            machine,
            command: std::env::args().collect(),
            settings: Settings {
                clients: args.clients.clone(),
                length: args.length,
                seconds: args.seconds,
                rounds: args.rounds,
                strace_clients: args.strace_clients,
                strace_seconds: args.strace_seconds,
                memory_connections: args.memory_connections,
            },
            pinning,
            servers,
            runs,
            syscalls,
            memory,
        };
        let written = ladder::write_out(&args.out, &data)
            .map_err(|e| format!("cannot write to {}: {e}", args.out.display()))?;
        for path in written {
            eprintln!("wrote {}", path.display());
        }
        // Charts are a view of the data: a failure to draw them is worth a
        // warning, not the loss of minutes of measurements already saved.
        match ladder::draw_charts(&args.out, &data) {
            Ok(paths) => paths
                .iter()
                .for_each(|p| eprintln!("wrote {}", p.display())),
            Err(e) => eprintln!("warning: {e}"),
        }
        Ok(())
    }

    /// One run: a fresh server, the load, the server's CPU in the window.
    fn measure(launcher: &Launcher, name: &str, round: usize, clients: usize, args: &Args) -> Run {
        let mut run = Run {
            server: name.into(),
            round,
            clients,
            length: args.length,
            seconds: 0.0,
            requests_per_sec: 0.0,
            p50_us: 0.0,
            p99_us: 0.0,
            p999_us: 0.0,
            server_user_seconds: None,
            server_system_seconds: None,
            client_busy: None,
            error: None,
        };
        let server = match launcher.start(name) {
            Ok(s) => s,
            Err(e) => {
                run.error = Some(e);
                return run;
            }
        };
        let pid = server.pid();
        let config = loadgen::Config {
            connections: clients,
            length: args.length,
            duration: Duration::from_secs_f64(args.seconds),
            // Half a second of load first, so page faults and buffers growing
            // on first use are not in the window.
            warmup: Duration::from_millis(500),
            pin_cpu: launcher.client_cpu,
            ..loadgen::Config::new(server.addr())
        };
        // The callback is told of every phase change: the server's CPU clock
        // is read as the window opens and as it closes, so connecting and
        // draining are left out, as they are from the request count.
        let mut start = None;
        let mut end = None;
        let result = loadgen::run(&config, |p| match p.phase {
            Phase::Measuring if start.is_none() => start = ladder::process_cpu_seconds(pid),
            Phase::Draining if end.is_none() => end = ladder::process_cpu_seconds(pid),
            _ => {}
        });
        stop(server);
        match result {
            Ok(report) => {
                run.seconds = report.seconds;
                run.requests_per_sec = report.responses_per_sec;
                run.p50_us = report.latency_us.p50;
                run.p99_us = report.latency_us.p99;
                run.p999_us = report.latency_us.p999;
                run.client_busy = report.client_cpu.map(|c| c.busy);
                if let (Some((u0, s0)), Some((u1, s1))) = (start, end) {
                    run.server_user_seconds = Some(u1 - u0);
                    run.server_system_seconds = Some(s1 - s0);
                }
            }
            Err(e) => run.error = Some(e.to_string()),
        }
        run
    }

    /// Asks the server to exit as Ctrl-C would, then makes sure it is gone
    /// (dropping the guard kills and reaps it).
    fn stop(mut server: ServerProcess) {
        let _ = server.interrupt();
        let _ = server.wait_timeout(Duration::from_secs(5));
    }

    /// The direct children of `parent`, found by scanning `/proc` (field 4 of
    /// `/proc/PID/stat` is the parent's pid).
    fn children_of(parent: u32) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| {
                        let after = &stat[stat.rfind(')')? + 1..];
                        after.split_whitespace().nth(1)?.parse::<u32>().ok()
                    })
                    == Some(parent)
            })
            .collect()
    }

    /// System calls per request: the server started under `strace -c -f`,
    /// a short load, then the server (not strace) interrupted, so it exits on
    /// its own and strace writes its summary as the last tracee goes.
    fn count_syscalls(launcher: &Launcher, name: &str, strace: bool, args: &Args) -> Syscalls {
        let mut out = Syscalls {
            server: name.into(),
            calls: None,
            requests: None,
            per_request: None,
            top: Vec::new(),
            unavailable: None,
        };
        if !strace {
            out.unavailable = Some("strace not found".into());
            return out;
        }
        let file = std::env::temp_dir().join(format!(
            "echo-ladder-strace-{}-{name}.txt",
            std::process::id()
        ));
        let file_arg = file.to_string_lossy().into_owned();
        let command = launcher.command(name, &["strace", "-f", "-c", "-o", &file_arg, "--"]);
        let mut server = match ServerProcess::spawn(command) {
            Ok(s) => s,
            Err(e) => {
                out.unavailable = Some(format!("cannot start {name} under strace: {e}"));
                return out;
            }
        };
        let config = loadgen::Config {
            connections: args.strace_clients,
            length: args.length,
            duration: Duration::from_secs_f64(args.strace_seconds),
            // Tracing stops the server at every call: be patient with it.
            timeout: Duration::from_secs(30),
            pin_cpu: launcher.client_cpu,
            ..loadgen::Config::new(server.addr())
        };
        let result = loadgen::run(&config, |_| {});
        // The guard's pid is strace's (taskset execs it); the server is its child.
        let traced = children_of(server.pid());
        for pid in &traced {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut exited = matches!(server.wait_timeout(Duration::from_secs(5)), Ok(Some(_)));
        if !exited {
            // A server that ignores SIGINT: kill it, strace still reports.
            for pid in &traced {
                let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            exited = matches!(server.wait_timeout(left), Ok(Some(_)));
        }
        drop(server);
        let summary = std::fs::read_to_string(&file);
        let _ = std::fs::remove_file(&file);
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                out.unavailable = Some(format!("the traced run failed: {e}"));
                return out;
            }
        };
        match summary.ok().and_then(|t| ladder::parse_strace_summary(&t)) {
            Some((calls, top)) if report.responses > 0 => {
                out.calls = Some(calls);
                out.requests = Some(report.responses);
                out.per_request = Some(calls as f64 / report.responses as f64);
                out.top = top;
            }
            _ => {
                out.unavailable = Some(format!(
                    "no strace summary (strace exited: {exited}; ptrace may be forbidden here)"
                ))
            }
        }
        out
    }

    /// Memory per connection: warm the server up (200 clients with
    /// buffer-sized messages, so every pool and lazily grown buffer is
    /// already touched), read VmRSS, open the connections and echo once on
    /// each, read VmRSS again.
    fn measure_memory(launcher: &Launcher, name: &str, connections: usize) -> Memory {
        let mut out = Memory {
            server: name.into(),
            connections,
            baseline_kib: None,
            loaded_kib: None,
            per_connection_kib: None,
            error: None,
        };
        let server = match launcher.start(name) {
            Ok(s) => s,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        };
        let warm = loadgen::Config {
            connections: 200,
            length: 4096,
            duration: Duration::from_secs(1),
            pin_cpu: launcher.client_cpu,
            ..loadgen::Config::new(server.addr())
        };
        if let Err(e) = loadgen::run(&warm, |_| {}) {
            out.error = Some(format!("warm-up failed: {e}"));
            stop(server);
            return out;
        }
        // Let the server see the warm-up's connections close.
        std::thread::sleep(Duration::from_millis(300));
        let rss = |s: &ServerProcess| s.rss_kib().map_err(|e| format!("cannot read VmRSS: {e}"));
        let result = rss(&server).and_then(|base| {
            let open = ladder::open_echoed(server.addr(), connections, &[b'm'; 64])
                .map_err(|e| e.to_string())?;
            std::thread::sleep(Duration::from_millis(200));
            let loaded = rss(&server)?;
            drop(open);
            Ok((base, loaded))
        });
        stop(server);
        match result {
            Ok((base, loaded)) => {
                out.baseline_kib = Some(base);
                out.loaded_kib = Some(loaded);
                out.per_connection_kib = ladder::per_connection_kib(base, loaded, connections);
            }
            Err(e) => out.error = Some(e),
        }
        out
    }
}
