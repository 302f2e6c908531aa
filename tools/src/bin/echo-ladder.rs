//! echo-ladder — run every lesson and peer (and any variant) in the same
//! load shapes, in alternation, and write the data, the tables and the
//! charts the results chapter is made of.
//!
//! ```text
//! cargo run --release --bin echo-ladder -- --out chapters/data
//! cargo run --release --bin echo-ladder -- --shapes pingpong-50 --seconds 2 --rounds 1 --out /tmp/quick
//! cargo run --release --bin echo-ladder -- --server 'batch32=05_uring_multishot --batch 32' \
//!     --only 05_uring_multishot,batch32 --out /tmp/batch
//! cargo run --release --bin echo-ladder -- --redraw --out chapters/data   # tables and charts only
//! ```
//!
//! Run it with `--release`: it starts the servers from the directory it was
//! built into, so a release runner measures release servers (a debug build
//! of a server is slower by a factor that says nothing about its design).
//! Cargo builds every binary of the package before running one, so the
//! servers are always as fresh as the runner.
//!
//! What it does, and why, is in `uring_echo_tools::ladder`; the file format
//! too. In short: per round, every server once per shape, each on a fresh
//! process pinned to CPU 0 with the load generator on CPU 1, perf counting
//! its system calls over the measured window; then one `strace -c -f` run
//! per server, and one run per server with 10,000 idle connections for
//! memory per connection, the server's and the kernel's.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use uring_echo_tools::ladder::servers::{self, Variant};
use uring_echo_tools::ladder::shapes::{self, DEFAULT_RATE_SHARE, DEFAULT_SHAPES, Shape};

/// Measures every lesson, peer and variant in alternating rounds, in every
/// load shape, and writes ladder.json, ladder.csv, the tables and the charts.
#[derive(Parser)]
#[command(name = "echo-ladder", version, after_help = AFTER_HELP)]
struct Args {
    /// The load shapes, in the order each round runs them: KIND-CLIENTS,
    /// KIND one of pingpong (512 B), pipelined (512 B, 16 in flight),
    /// streaming (64 KiB messages), rate (512 B, open loop); a rate shape
    /// takes @RATE, or offers --rate-share of the slowest server's ping-pong
    /// rate at its client count in round 1.
    #[arg(long, value_delimiter = ',', value_name = "SHAPE,…",
          default_values = DEFAULT_SHAPES.iter().copied(), value_parser = shapes::parse)]
    shapes: Vec<Shape>,

    /// A variant to measure beside the lessons and peers: a label, then a
    /// lesson or peer name (or a path to another build) and its options,
    /// e.g. 'batch32=05_uring_multishot --batch 32' or
    /// 'before=/tmp/old/05_uring_multishot'. Repeatable.
    #[arg(long = "server", value_name = "LABEL=PROGRAM ARGS…", value_parser = servers::parse_variant)]
    variants: Vec<Variant>,

    /// Measure only these lessons, peers and variants (the others are
    /// recorded as not chosen).
    #[arg(long, value_delimiter = ',', value_name = "NAME,…")]
    only: Option<Vec<String>>,

    /// Seconds measured per run.
    #[arg(long, default_value_t = 5.0, value_parser = positive_seconds)]
    seconds: f64,

    /// Seconds of load before each measured window, not counted.
    #[arg(long, default_value_t = 0.5, value_parser = seconds_or_zero)]
    warmup: f64,

    /// Rounds: each runs every server once per shape, in turn.
    #[arg(long, default_value_t = 3, value_parser = at_least_one)]
    rounds: usize,

    /// The share of the slowest ping-pong rate a rate shape offers.
    #[arg(long, default_value_t = DEFAULT_RATE_SHARE, value_parser = share)]
    rate_share: f64,

    /// Clients of the strace run (system calls per request, traced).
    #[arg(long, default_value_t = 50, value_parser = at_least_one)]
    strace_clients: usize,

    /// Seconds of the strace run.
    #[arg(long, default_value_t = 2.0, value_parser = positive_seconds)]
    strace_seconds: f64,

    /// Idle connections held open for the memory measure.
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one)]
    memory_connections: usize,

    /// Where ladder.json, ladder.csv, tables/ and the SVG charts go.
    #[arg(long, default_value = "ladder-out")]
    out: PathBuf,

    /// Measure nothing: read OUT/ladder.json and write the tables and the
    /// charts again.
    #[arg(long)]
    redraw: bool,
}

const AFTER_HELP: &str = "\
A before/after comparison, one command (labels appear in every table and chart):
  echo-ladder --server 'before=/tmp/old/05_uring_multishot' --only 05_uring_multishot,before \\
      --out /tmp/before-after
An ablation of one option:
  echo-ladder --server 'batch32=05_uring_multishot --batch 32' --only 05_uring_multishot,batch32

System calls are counted untraced with perf (raw_syscalls:sys_enter) where perf can count (as
root); kernel memory is read from /proc/slabinfo (as root). Otherwise the data says why not.";

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match seconds_or_zero(text)? {
        0.0 => Err("must be more than 0 seconds".into()),
        s => Ok(s),
    }
}

fn seconds_or_zero(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.0..3600.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "`{text}` is not a number of seconds from 0 and below 3600"
        )),
    }
}

fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 1.0 => Ok(s),
        _ => Err(format!("`{text}` is not a share above 0 and at most 1")),
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
    use std::path::Path;
    use std::time::{Duration, Instant};

    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use uring_echo_tools::ladder::perf::{self, PerfCount};
    use uring_echo_tools::ladder::servers::{self, ServerSpec};
    use uring_echo_tools::ladder::shapes::{self, Shape, ShapeKind};
    use uring_echo_tools::ladder::{
        self, KernelMemory, LadderData, Memory, Pinning, Run, Settings, Syscalls, slab, tables,
    };
    use uring_echo_tools::loadgen::{self, Phase, Report};
    use uring_echo_tools::process::{ServerProcess, stat_value};

    use super::Args;

    /// How the servers are started: under `taskset -c 0` where possible.
    struct Launcher {
        taskset: bool,
        client_cpu: Option<usize>,
    }

    impl Launcher {
        fn start(&self, server: &ServerSpec) -> Result<ServerProcess, String> {
            ServerProcess::spawn(server.command(self.taskset, &[]))
                .map_err(|e| format!("cannot start {}: {e}", server.name))
        }

        fn pinning(&self) -> Pinning {
            Pinning {
                server: if self.taskset {
                    "CPU 0 (taskset -c 0)".into()
                } else {
                    "not pinned (taskset not found)".into()
                },
                client: match self.client_cpu {
                    Some(cpu) => format!("CPU {cpu} (sched_setaffinity)"),
                    None => "not pinned (one CPU)".into(),
                },
            }
        }
    }

    pub fn run(args: &Args) -> Result<(), String> {
        if args.redraw {
            let data = ladder::read_data(&args.out)?;
            derive(&args.out, &data);
            return Ok(());
        }
        shapes::check_order(&args.shapes)?;
        // 10,000 connections need more than the usual 1024 descriptors.
        uring_echo_book::limits::raise_open_file_limit()
            .map_err(|e| format!("cannot raise the open-file limit: {e}"))?;

        let machine = ladder::machine();
        let launcher = Launcher {
            taskset: ladder::on_path("taskset"),
            client_cpu: (machine.cpus >= 2).then_some(1),
        };
        let roster = servers::roster(&args.variants, args.only.as_deref())?;
        let measured: Vec<&ServerSpec> = roster.iter().filter(|s| s.skipped.is_none()).collect();
        for server in &measured {
            let binary = server.program.file_name().and_then(|n| n.to_str());
            uring_echo_tools::process::check_server_built(
                binary.unwrap_or(&server.name),
                &server.program,
            )?;
        }
        for s in roster.iter().filter(|s| s.skipped.is_some()) {
            eprintln!("skipped {}: {}", s.name, s.skipped.as_deref().unwrap_or(""));
        }
        let untraced = perf::probe();
        if let Err(why) = &untraced {
            eprintln!("system calls untraced: {why}");
        }

        let mut shapes = args.shapes.clone();
        let runs = run_rounds(&launcher, &measured, &mut shapes, args, &untraced);
        let syscalls = measured
            .iter()
            .map(|server| count_syscalls(&launcher, server, args))
            .collect();
        let memory = measured
            .iter()
            .map(|server| measure_memory(&launcher, server, args.memory_connections))
            .collect();

        let data = LadderData {
            schema: "echo-ladder".into(),
            schema_version: ladder::SCHEMA_VERSION,
            machine,
            command: std::env::args().collect(),
            settings: Settings {
                shapes,
                seconds: args.seconds,
                warmup_seconds: args.warmup,
                rounds: args.rounds,
                rate_share: args.rate_share,
                untraced_syscalls: match &untraced {
                    Ok(()) => perf::METHOD.to_string(),
                    Err(why) => why.clone(),
                },
                strace_clients: args.strace_clients,
                strace_seconds: args.strace_seconds,
                memory_connections: args.memory_connections,
            },
            pinning: launcher.pinning(),
            servers: roster.iter().map(ServerSpec::entry).collect(),
            runs,
            syscalls,
            memory,
        };
        let written = ladder::write_out(&args.out, &data)
            .map_err(|e| format!("cannot write to {}: {e}", args.out.display()))?;
        for path in written {
            eprintln!("wrote {}", path.display());
        }
        derive(&args.out, &data);
        Ok(())
    }

    /// Writes what is made from the data alone: the tables and the charts.
    /// A failure is a warning, not the loss of minutes of measurements
    /// already saved (`--redraw` tries again).
    fn derive(out: &Path, data: &LadderData) {
        match tables::write(out, data, &folder_label(out)) {
            Ok(paths) => eprintln!(
                "wrote {} tables in {}",
                paths.len(),
                out.join(tables::DIR).display()
            ),
            Err(e) => eprintln!("warning: cannot write the tables: {e}"),
        }
        match ladder::draw_charts(out, data) {
            Ok(paths) => paths
                .iter()
                .for_each(|p| eprintln!("wrote {}", p.display())),
            Err(e) => eprintln!("warning: {e}"),
        }
    }

    /// The data folder as the tables' "made by" line names it:
    /// `chapters/data`, whether it was given as `./chapters/data/` or not.
    fn folder_label(out: &Path) -> String {
        let text = out.to_string_lossy();
        let text = text.strip_prefix("./").unwrap_or(&text);
        text.trim_end_matches('/').to_string()
    }

    /// The rounds: in each, every shape, and in each shape every server
    /// once, in turn, on a fresh process. A rate shape without a rate gets
    /// one in round 1, from the ping-pong runs before it.
    fn run_rounds(
        launcher: &Launcher,
        measured: &[&ServerSpec],
        shapes: &mut [Shape],
        args: &Args,
        untraced: &Result<(), String>,
    ) -> Vec<Run> {
        let mut runs = Vec::new();
        for round in 1..=args.rounds {
            for shape in shapes.iter_mut() {
                if shape.kind == ShapeKind::Rate && shape.rate_per_sec.is_none() {
                    match shapes::choose_rate(shape, &runs, args.rate_share) {
                        Ok((rate, how)) => {
                            eprintln!("{}: {rate:.0} requests/s, {how}", shape.name);
                            shape.rate_per_sec = Some(rate);
                            shape.rate_from = Some(how);
                        }
                        Err(why) => eprintln!("{}: {why}", shape.name),
                    }
                }
                for server in measured {
                    let run = measure(launcher, server, shape, round, args, untraced);
                    report_run(&run);
                    runs.push(run);
                }
            }
        }
        runs
    }

    fn report_run(run: &Run) {
        let head = format!("round {} {:<14} {:<22}", run.round, run.shape, run.server);
        if let Some(e) = &run.error {
            eprintln!("{head} {e}");
            return;
        }
        let cpu = match (run.user_us_per_echo, run.system_us_per_echo) {
            (Some(u), Some(s)) => format!("{:6.2} µs/echo ({u:.2} user + {s:.2} system)", u + s),
            _ => "CPU not read".to_string(),
        };
        let calls = run
            .syscalls_per_echo
            .map_or(String::new(), |c| format!(", {c:.3} syscalls/echo"));
        let kept = match run.kept_up {
            Some(false) => " NOT KEPT UP",
            _ => "",
        };
        eprintln!(
            "{head} {cpu}, {:>9.0} req/s{kept}, p99 {:.0} µs{calls}, client busy {:.2}",
            run.requests_per_sec,
            run.p99_us,
            run.client_busy.unwrap_or(f64::NAN)
        );
    }

    /// One run: a fresh server, perf attached to it, the load, the server's
    /// CPU and system calls in the window, its own counters at exit.
    fn measure(
        launcher: &Launcher,
        server: &ServerSpec,
        shape: &Shape,
        round: usize,
        args: &Args,
        untraced: &Result<(), String>,
    ) -> Run {
        let mut run = Run {
            server: server.name.clone(),
            shape: shape.name.clone(),
            round,
            clients: shape.clients,
            length: shape.length,
            pipeline: shape.pipeline,
            offered_per_sec: shape.rate_per_sec,
            ..Run::default()
        };
        if shape.kind == ShapeKind::Rate && shape.rate_per_sec.is_none() {
            run.error = Some("no rate was chosen for this shape (see rate_from)".into());
            return run;
        }
        let process = match launcher.start(server) {
            Ok(p) => p,
            Err(e) => {
                run.error = Some(e);
                return run;
            }
        };
        let pid = process.pid();
        let mut perf = match untraced {
            Ok(()) => PerfCount::attach(pid)
                .map_err(|e| format!("not measured, because perf did not attach: {e}")),
            Err(why) => Err(why.clone()),
        };
        let config = loadgen::Config {
            connections: shape.clients,
            length: shape.length,
            pipeline: shape.pipeline,
            rate: shape.rate_per_sec,
            duration: Duration::from_secs_f64(args.seconds),
            // Load first, so page faults and buffers growing on first use
            // are not in the window.
            warmup: Duration::from_secs_f64(args.warmup),
            pin_cpu: launcher.client_cpu,
            ..loadgen::Config::new(process.addr())
        };
        // The callback is told of every phase change: the server's CPU clock
        // is read, and perf's counter switched, as the window opens and as it
        // closes, so connecting and draining are left out, as they are from
        // the request count.
        let mut start = None;
        let mut end = None;
        let result = loadgen::run(&config, |p| match p.phase {
            Phase::Measuring if start.is_none() => {
                if let Ok(perf) = &mut perf {
                    perf.enable();
                }
                start = ladder::process_cpu_seconds(pid);
            }
            Phase::Draining if end.is_none() => {
                end = ladder::process_cpu_seconds(pid);
                if let Ok(perf) = &mut perf {
                    perf.disable();
                }
            }
            _ => {}
        });
        let syscalls =
            perf.and_then(|p| p.finish().map_err(|e| format!("not measured, because {e}")));
        let stderr = stop(process);
        match result {
            Ok(report) => {
                fill(&mut run, &report, start.zip(end));
                match syscalls {
                    Ok(calls) => {
                        run.syscalls = Some(calls);
                        run.syscalls_per_echo =
                            (report.responses > 0).then(|| calls as f64 / report.responses as f64);
                    }
                    Err(why) => run.syscalls_unavailable = Some(why),
                }
                // 04 and 05 count their io_uring_enter calls over their
                // whole life, which the whole run's echoes divide.
                run.enters_per_echo = stat_value(&stderr, "enters")
                    .filter(|_| report.responses_in_run > 0)
                    .map(|enters| enters as f64 / report.responses_in_run as f64);
            }
            Err(e) => run.error = Some(e.to_string()),
        }
        run
    }

    /// The load generator's figures, and the server's CPU per echo.
    fn fill(run: &mut Run, report: &Report, cpu: Option<((f64, f64), (f64, f64))>) {
        run.seconds = report.seconds;
        run.responses = report.responses;
        run.requests_per_sec = report.responses_per_sec;
        run.p50_us = report.latency_us.p50;
        run.p99_us = report.latency_us.p99;
        run.p999_us = report.latency_us.p999;
        run.client_busy = report.client_cpu.map(|c| c.busy);
        run.kept_up = report.rate.map(|r| r.kept_up);
        if let Some(((u0, s0), (u1, s1))) = cpu {
            run.server_user_seconds = Some(u1 - u0);
            run.server_system_seconds = Some(s1 - s0);
            run.user_us_per_echo = ladder::us_per_echo(u1 - u0, report.responses);
            run.system_us_per_echo = ladder::us_per_echo(s1 - s0, report.responses);
        }
    }

    /// Asks the server to exit as Ctrl-C would, then makes sure it is gone
    /// (dropping the guard kills and reaps it). Returns what it wrote to
    /// stderr, where its `stats:` line is.
    fn stop(mut server: ServerProcess) -> String {
        let _ = server.interrupt();
        let _ = server.wait_timeout(Duration::from_secs(5));
        server.stderr()
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

    /// System calls per request under strace: the server started under
    /// `strace -c -f`, a short ping-pong load, then the server (not strace)
    /// interrupted, so it exits on its own and strace writes its summary as
    /// the last tracee goes.
    fn count_syscalls(launcher: &Launcher, server: &ServerSpec, args: &Args) -> Syscalls {
        let name = server.name.as_str();
        let s = strace_run(launcher, server, args);
        match (&s.per_request, &s.unavailable) {
            (Some(per), _) => eprintln!("strace   {name:<22} {per:.3} calls per request"),
            (_, Some(why)) => eprintln!("strace   {name}: unavailable: {why}"),
            _ => {}
        }
        s
    }

    fn strace_run(launcher: &Launcher, server: &ServerSpec, args: &Args) -> Syscalls {
        let name = server.name.as_str();
        let mut out = Syscalls {
            server: name.into(),
            calls: None,
            requests: None,
            per_request: None,
            top: Vec::new(),
            unavailable: None,
        };
        if !ladder::on_path("strace") {
            out.unavailable = Some("strace not found".into());
            return out;
        }
        let file = std::env::temp_dir().join(format!(
            "echo-ladder-strace-{}-{name}.txt",
            std::process::id()
        ));
        let file_arg = file.to_string_lossy().into_owned();
        let command = server.command(
            launcher.taskset,
            &["strace", "-f", "-c", "-o", &file_arg, "--"],
        );
        let mut process = match ServerProcess::spawn(command) {
            Ok(s) => s,
            Err(e) => {
                out.unavailable = Some(format!("cannot start {name} under strace: {e}"));
                return out;
            }
        };
        let config = loadgen::Config {
            connections: args.strace_clients,
            length: shapes::kind_row(ShapeKind::Pingpong).length,
            duration: Duration::from_secs_f64(args.strace_seconds),
            // Tracing stops the server at every call: be patient with it.
            timeout: Duration::from_secs(30),
            pin_cpu: launcher.client_cpu,
            ..loadgen::Config::new(process.addr())
        };
        let result = loadgen::run(&config, |_| {});
        // The guard's pid is strace's (taskset execs it); the server is its child.
        let traced = children_of(process.pid());
        for pid in &traced {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut exited = matches!(process.wait_timeout(Duration::from_secs(5)), Ok(Some(_)));
        if !exited {
            // A server that ignores SIGINT: kill it, strace still reports.
            for pid in &traced {
                let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            exited = matches!(process.wait_timeout(left), Ok(Some(_)));
        }
        drop(process);
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

    /// Memory per idle connection: warm the server up (200 clients with
    /// buffer-sized messages, so every pool and lazily grown buffer is
    /// already touched), read VmRSS and the kernel's slab caches, open the
    /// connections and echo once on each, read both again.
    fn measure_memory(launcher: &Launcher, server: &ServerSpec, connections: usize) -> Memory {
        let m = memory_run(launcher, server, connections);
        let name = &m.server;
        match (&m.per_connection_kib, &m.error) {
            (Some(kib), _) => eprintln!(
                "memory   {name:<22} {kib:.2} KiB per connection, kernel {}",
                m.kernel
                    .per_connection_kib
                    .map_or("not measured".into(), |k| format!("{k:.2} KiB"))
            ),
            (_, Some(e)) => eprintln!("memory   {name}: {e}"),
            _ => {}
        }
        m
    }

    fn memory_run(launcher: &Launcher, server: &ServerSpec, connections: usize) -> Memory {
        let mut out = Memory {
            server: server.name.clone(),
            connections,
            baseline_kib: None,
            loaded_kib: None,
            per_connection_kib: None,
            kernel: KernelMemory::default(),
            error: None,
        };
        let process = match launcher.start(server) {
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
            ..loadgen::Config::new(process.addr())
        };
        if let Err(e) = loadgen::run(&warm, |_| {}) {
            out.error = Some(format!("warm-up failed: {e}"));
            stop(process);
            return out;
        }
        // Let the server see the warm-up's connections close.
        std::thread::sleep(Duration::from_millis(300));
        let rss = |s: &ServerProcess| s.rss_kib().map_err(|e| format!("cannot read VmRSS: {e}"));
        let result = rss(&process).and_then(|base| {
            let slab_before = slab::read();
            let open = ladder::open_echoed(process.addr(), connections, &[b'm'; 64])
                .map_err(|e| e.to_string())?;
            std::thread::sleep(Duration::from_millis(200));
            let loaded = rss(&process)?;
            let slab_after = slab::read();
            drop(open);
            Ok((base, loaded, slab_before, slab_after))
        });
        stop(process);
        match result {
            Ok((base, loaded, before, after)) => {
                out.baseline_kib = Some(base);
                out.loaded_kib = Some(loaded);
                out.per_connection_kib = ladder::per_connection_kib(base, loaded, connections);
                out.kernel = kernel_memory(before, after, connections);
            }
            Err(e) => out.error = Some(e),
        }
        out
    }

    /// The slab growth between two readings, or why there is none.
    fn kernel_memory(
        before: Result<slab::Caches, String>,
        after: Result<slab::Caches, String>,
        connections: usize,
    ) -> KernelMemory {
        match (before, after) {
            (Ok(before), Ok(after)) => {
                let (base, loaded) = (slab::total_kib(&before), slab::total_kib(&after));
                KernelMemory {
                    method: slab::METHOD.to_string(),
                    baseline_kib: Some(base),
                    loaded_kib: Some(loaded),
                    per_connection_kib: ladder::per_connection_kib(base, loaded, connections),
                    top: slab::growth(&before, &after, 5),
                    unavailable: None,
                }
            }
            (Err(why), _) | (_, Err(why)) => KernelMemory {
                method: "none".to_string(),
                unavailable: Some(why),
                ..KernelMemory::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_options_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn the_default_shapes_are_the_table_s() {
        let args = Args::parse_from(["echo-ladder"]);
        let names: Vec<&str> = args.shapes.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, DEFAULT_SHAPES);
    }

    #[test]
    fn variants_and_only_parse() {
        let args = Args::parse_from([
            "echo-ladder",
            "--server",
            "batch32=05_uring_multishot --batch 32",
            "--server",
            "before=/tmp/old/05_uring_multishot",
            "--only",
            "batch32,before",
            "--shapes",
            "pingpong-50,rate-50@1000",
        ]);
        assert_eq!(args.variants.len(), 2);
        assert_eq!(args.variants[0].args, ["--batch", "32"]);
        assert_eq!(args.only.unwrap(), ["batch32", "before"]);
        assert_eq!(args.shapes[1].rate_per_sec, Some(1000.0));
    }
}
