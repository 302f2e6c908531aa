//! chapter-data — the experiments chapters 01 to 05 quote, made with the
//! repository's own lessons and `echo-bench`; writes `chapters.json`, one
//! Markdown table per experiment for the chapters to include, and
//! `hardening-figures.md`, lesson 05's single figures for its prose.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release --bin chapter-data                  # every experiment, 3 rounds (burst: 10)
//! cargo run --release --bin chapter-data -- --only epoll-triggers --rounds 5
//! cargo run --release --bin chapter-data -- --redraw      # tables again from the JSON
//! ```
//!
//! Each run: a fresh lesson on a free port (under `taskset -c 0` when there
//! are two CPUs and `taskset`, and under the case's prefix, such as
//! `prlimit --nofile=32:32`), then `echo-bench` with the options the chapter
//! prints (plus `-a ADDR`, and `--pin 1` when pinned); for a case with a
//! holder, a first `echo-bench --hold` that takes its connections before,
//! and keeps them while, the measured one runs. Recorded:
//! the server's context switches (every thread, start to exit, from
//! `getrusage(RUSAGE_CHILDREN)` around reaping it; the main thread's over
//! the client's run from `/proc/PID/status`), the counters of its `stats:`
//! line after SIGINT, `strace -c -f -p PID` attached for the client's run
//! where the chapter quotes strace (skipped, with the reason recorded, when
//! there is no strace), and for `--no-read` the queues of `ss -tnH` and the
//! server's VmRSS, sampled every 200 ms while the client runs; for lesson
//! 05, also its start-up line (its share of the pool, its kind of receive).
//! A `--hold` client is read around instead: the server's
//! `/proc/PID/status`, maps and descriptors while it listens, once the
//! client holds its connections, and once they are closed; a case may start
//! a second client once the first holds (lesson 01's client B behind client
//! A), and sample the listening socket's accept queue with `ss -ltnH` while
//! it runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use uring_echo_tools::chapter_data::{self, DEFAULT_OUT};

/// The chapter experiments of lessons 01 to 05.
#[derive(Parser)]
#[command(name = "chapter-data", version)]
// Off Linux only `--redraw` runs, and the measuring options go unread.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
struct Args {
    /// Where chapters.json and tables/ go.
    #[arg(long, default_value = DEFAULT_OUT)]
    out: PathBuf,
    /// Only these experiments (the others already in the data are kept):
    /// hold-memory, threads-switches, epoll-switches, epoll-strace, epoll-triggers,
    /// epoll-triggers-100, epoll-no-read, uring-syscalls, multishot-burst,
    /// multishot-dry, multishot-accept, threads-memory, blocking-syscalls,
    /// blocking-wait, blocking-no-read, uring-memory.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    only: Option<Vec<String>>,
    /// Rounds; each runs every case of an experiment once, in order. By
    /// default each experiment's own: 3, and 10 for multishot-burst.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: Option<u32>,
    /// Write the tables again from chapters.json, without measuring.
    #[arg(long)]
    redraw: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chapter-data: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if args.redraw {
        let data = chapter_data::read(&args.out)?;
        let written = chapter_data::write_tables(&args.out, &data).map_err(|e| e.to_string())?;
        for path in written {
            println!("{}", path.display());
        }
        return Ok(());
    }
    measure_all(&args)
}

#[cfg(not(target_os = "linux"))]
fn measure_all(_: &Args) -> Result<(), String> {
    Err(
        "measuring needs Linux (/proc, getrusage of the server, strace, ss); \
         --redraw works anywhere"
            .to_string(),
    )
}

#[cfg(target_os = "linux")]
fn measure_all(args: &Args) -> Result<(), String> {
    linux::measure_all(args)
}

/// The measuring half: Linux only.
#[cfg(target_os = "linux")]
mod linux {
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use nix::sys::resource::{UsageWho, getrusage};
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use uring_echo_tools::chapter_data::{
        self, Case, ChapterData, EXPERIMENTS, Experiment, Record, Run, SCHEMA, SCHEMA_VERSION,
        Then, echoes, parse_connected, parse_listen, parse_max_latency_us, parse_sent, parse_speed,
        parse_ss, parse_startup, parse_stats_line, parse_strace_counts, parse_syscall,
        ring_mappings_kib,
    };
    use uring_echo_tools::ladder::servers::launch;
    use uring_echo_tools::ladder::{machine, on_path};
    use uring_echo_tools::process::{ServerProcess, binary_path, check_server_built, tool_path};

    use super::Args;

    pub(super) fn measure_all(args: &Args) -> Result<(), String> {
        let chosen: Vec<&Experiment> = match &args.only {
            None => EXPERIMENTS.iter().collect(),
            Some(names) => names
                .iter()
                .map(|n| chapter_data::experiment(n).ok_or(format!("no experiment called {n}")))
                .collect::<Result<_, _>>()?,
        };
        let bench = tool_path("echo-bench");
        for exp in &chosen {
            for case in exp.cases {
                check_server_built(case.server, &binary_path(case.server))?;
            }
        }
        let pin = machine().cpus >= 2 && on_path("taskset");
        let strace_skipped = (!on_path("strace")).then(|| "strace is not installed".to_string());
        let command: Vec<String> = std::env::args().collect();

        let mut data = chapter_data::read(&args.out).unwrap_or(ChapterData {
            schema: SCHEMA.to_string(),
            schema_version: SCHEMA_VERSION,
            experiments: Vec::new(),
        });
        if (data.schema.as_str(), data.schema_version) != (SCHEMA, SCHEMA_VERSION) {
            data.experiments.clear();
            data.schema = SCHEMA.to_string();
            data.schema_version = SCHEMA_VERSION;
        }
        for exp in chosen {
            let rounds = args.rounds.unwrap_or(exp.rounds);
            let mut record = Record {
                name: exp.name.to_string(),
                machine: machine(),
                command: command.clone(),
                rounds,
                pinned: pin,
                strace_skipped: strace_skipped.clone(),
                runs: Vec::new(),
            };
            for round in 1..=rounds {
                for case in exp.cases {
                    eprintln!(
                        "{} round {round}: {} with echo-bench {}",
                        exp.name,
                        case.server,
                        case.client.join(" ")
                    );
                    let strace = case.strace && strace_skipped.is_none();
                    let run = measure(case, round, pin, strace, &bench);
                    if let Some(e) = &run.error {
                        eprintln!("  failed: {e}");
                    }
                    record.runs.push(run);
                }
            }
            data.experiments.retain(|r| r.name != exp.name);
            data.experiments.push(record);
        }
        data.experiments.sort_by_key(|r| {
            EXPERIMENTS
                .iter()
                .position(|e| e.name == r.name)
                .unwrap_or(usize::MAX)
        });
        let written = chapter_data::write_out(&args.out, &data).map_err(|e| e.to_string())?;
        for path in written {
            println!("{}", path.display());
        }
        Ok(())
    }

    /// One run of one case; a failure is recorded in the run, not returned.
    fn measure(case: &Case, round: u32, pin: bool, strace: bool, bench: &std::path::Path) -> Run {
        let server_args: Vec<String> = case.server_args.iter().map(|s| s.to_string()).collect();
        let command = launch(&binary_path(case.server), &server_args, pin, case.prefix);
        let server_command: Vec<String> = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let mut run = Run {
            case: case.label.to_string(),
            round,
            server: case.server.to_string(),
            server_command,
            strace_command: None,
            holder_command: None,
            client_command: Vec::new(),
            then_command: None,
            echoes: echoes(case.client),
            counts: BTreeMap::new(),
            texts: BTreeMap::new(),
            error: None,
        };
        if let Err(e) = measure_into(&mut run, command, case, pin, strace, bench) {
            run.error = Some(e);
        }
        run
    }

    fn measure_into(
        run: &mut Run,
        command: Command,
        case: &Case,
        pin: bool,
        strace: bool,
        bench: &std::path::Path,
    ) -> Result<(), String> {
        let mut server = ServerProcess::spawn(command).map_err(|e| e.to_string())?;
        let pid = server.pid();
        let port = server.addr().port();
        let before = thread_switches(pid)?;
        let rss_before = server.rss_kib().map_err(|e| e.to_string())?;

        let mut tracer = None;
        if strace {
            let file = std::env::temp_dir().join(format!("chapter-data-{pid}.strace"));
            let argv: Vec<String> = ["strace", "-c", "-f", "-o"]
                .iter()
                .map(|s| s.to_string())
                .chain([
                    file.to_string_lossy().into_owned(),
                    "-p".into(),
                    pid.to_string(),
                ])
                .collect();
            run.strace_command = Some(argv.clone());
            tracer = Some((attach(&argv)?, file));
        }

        let argv = bench_argv(case.client, &server, pin);
        run.client_command = std::iter::once(bench.to_string_lossy().into_owned())
            .chain(argv.iter().cloned())
            .collect();
        if case.client.contains(&"--hold") {
            return hold(run, case, server, bench, argv, pin);
        }
        let holder = if case.holder.is_empty() {
            None
        } else {
            let holder_argv = bench_argv(case.holder, &server, pin);
            run.holder_command = Some(
                std::iter::once(bench.to_string_lossy().into_owned())
                    .chain(holder_argv.iter().cloned())
                    .collect(),
            );
            Some(start_holder(bench, &holder_argv)?)
        };
        let mut client = Command::new(bench)
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start echo-bench: {e}"))?;
        let no_read = case.client.contains(&"--no-read");
        let (mut stdout, mut stderr) = (String::new(), String::new());
        let (out_pipe, err_pipe) = (client.stdout.take(), client.stderr.take());
        let err_reader = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = err_pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        });
        let out_reader = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = out_pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        });
        let status = loop {
            if let Some(status) = client.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if no_read
                && let Some(sample) = sample_queues(port, &server)
                // Kept only when the client was still running after it was
                // taken: its exit tears the connection down and frees the
                // server's queue, and a sample that straddles it mixes the two.
                && client.try_wait().map_err(|e| e.to_string())?.is_none()
            {
                run.counts.extend(sample);
                // Where the server's main thread is waiting: lesson 01's
                // is in the `sendto` that the client's full buffers stopped.
                if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/syscall"))
                    && let Some((nr, fd, count)) = parse_syscall(&text)
                {
                    run.counts.insert("syscall.nr".into(), nr);
                    run.counts.insert("syscall.fd".into(), fd);
                    run.counts.insert("syscall.count".into(), count);
                }
                if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/wchan"))
                    && !text.trim().is_empty()
                    && text.trim() != "0"
                {
                    run.texts.insert("wchan".into(), text.trim().to_string());
                }
            }
            // A sampling period while the client runs (it exits on its own
            // clock), not a wait for an event.
            std::thread::sleep(Duration::from_millis(200));
        };
        stdout.push_str(&out_reader.join().unwrap_or_default());
        stderr.push_str(&err_reader.join().unwrap_or_default());
        if let Some(mut holder) = holder {
            // It hangs up on its own clock (`-d`); reaped here, before the
            // server's usage is read, so that it is not counted as the
            // server's.
            let held = holder.wait().map_err(|e| e.to_string())?;
            if !held.success() {
                return Err(format!("the holding echo-bench failed ({held})"));
            }
        }
        let after = thread_switches(pid)?;
        run.counts
            .insert("run.voluntary_ctxt_switches".into(), after.0 - before.0);
        run.counts
            .insert("run.nonvoluntary_ctxt_switches".into(), after.1 - before.1);
        if let Some(rate) = parse_speed(&stdout) {
            run.counts.insert("client.responses_per_s".into(), rate);
        }
        if no_read {
            run.counts.insert("rss_before_kib".into(), rss_before);
            if let Some(sent) = parse_sent(&stdout) {
                run.counts.insert("sent_bytes".into(), sent);
            }
        }

        if let Some((mut child, file)) = tracer {
            // SIGINT makes strace detach and write its table.
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
            let _ = child.wait();
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let _ = std::fs::remove_file(&file);
            let counts = parse_strace_counts(&text);
            if !counts.contains_key("total") {
                return Err(format!("no total in strace's table:\n{text}"));
            }
            for (name, calls) in counts {
                run.counts.insert(format!("strace.{name}"), calls);
            }
        }
        if !status.success() {
            return Err(format!("echo-bench failed ({status}): {stderr}"));
        }

        // Every other child (echo-bench, strace, ss) is reaped by now, so the
        // children's usage grows by the server's alone when it is reaped.
        let usage = |who| getrusage(who).map_err(|e| e.to_string());
        let kids_before = usage(UsageWho::RUSAGE_CHILDREN)?;
        server.interrupt().map_err(|e| e.to_string())?;
        let exit = server
            .wait_timeout(Duration::from_secs(30))
            .map_err(|e| e.to_string())?
            .ok_or("the server did not exit within 30 s of SIGINT")?;
        let kids_after = usage(UsageWho::RUSAGE_CHILDREN)?;
        if !exit.success() {
            return Err(format!(
                "the server exited with {exit}: {}",
                server.stderr()
            ));
        }
        let diff = |a: i64, b: i64| u64::try_from(a - b).unwrap_or(0);
        run.counts.insert(
            "voluntary_ctxt_switches".into(),
            diff(
                kids_after.voluntary_context_switches(),
                kids_before.voluntary_context_switches(),
            ),
        );
        run.counts.insert(
            "nonvoluntary_ctxt_switches".into(),
            diff(
                kids_after.involuntary_context_switches(),
                kids_before.involuntary_context_switches(),
            ),
        );
        let stderr = server.stderr();
        for (name, value) in parse_stats_line(&stderr) {
            run.counts.insert(format!("stats.{name}"), value);
        }
        run.counts.extend(parse_startup(&stderr));
        Ok(())
    }

    /// `echo-bench`'s arguments: a case's options, the server's address and,
    /// when pinned, the client's CPU.
    fn bench_argv(options: &[&str], server: &ServerProcess, pin: bool) -> Vec<String> {
        let mut argv: Vec<String> = options.iter().map(|s| s.to_string()).collect();
        argv.extend(["-a".to_string(), server.addr().to_string()]);
        if pin {
            argv.extend(["--pin".to_string(), "1".to_string()]);
        }
        argv
    }

    /// Starts an `echo-bench --hold` (a case's holder, or a `--hold` case's
    /// own client) and returns once it says it holds every connection (its
    /// `Holding:` line): then the server is full, or its memory can be read
    /// with every connection open. Its stdout is drained after that, so
    /// that a later line never meets a closed pipe.
    fn start_holder(bench: &std::path::Path, argv: &[String]) -> Result<Child, String> {
        let mut child = Command::new(bench)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the holding echo-bench: {e}"))?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let holding = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.starts_with("Holding:"));
        if !holding {
            let status = child.wait().map_err(|e| e.to_string())?;
            return Err(format!(
                "the holding echo-bench ended ({status}) without a `Holding:` line"
            ));
        }
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Ok(child)
    }

    /// A `--hold` run: reads the server's memory figures (and the machine's
    /// `KernelStack`) while it listens, starts the client, waits for its
    /// `Holding:` line, reads them again; runs the case's second client if
    /// it has one; then stops the client, reads the figures once more when
    /// the server has let the connections go, and stops the server.
    fn hold(
        run: &mut Run,
        case: &Case,
        mut server: ServerProcess,
        bench: &std::path::Path,
        argv: Vec<String>,
        pin: bool,
    ) -> Result<(), String> {
        let pid = server.pid();
        // Just after `listening on`, the server may still be setting up (its
        // signal helper thread, that thread's allocator arena): read until
        // two reads 50 ms apart agree, for at most 2 s.
        let mut before = snapshot(pid)?;
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(50));
            let again = snapshot(pid)?;
            let settled = (again.vmsize, again.maps) == (before.vmsize, before.maps);
            before = again;
            if settled {
                break;
            }
        }
        let stack_before = kernel_stack_kib()?;
        let client = start_holder(bench, &argv);
        let mut result = if client.is_ok() {
            let held = snapshot(pid)?;
            let stack_after = kernel_stack_kib()?;
            record(run, "before", &before);
            record(run, "held", &held);
            run.counts.insert(
                "kernel_stack_growth_kib".into(),
                stack_after.saturating_sub(stack_before),
            );
            if let Ok(text) = std::fs::read_to_string("/proc/sys/vm/max_map_count")
                && let Ok(limit) = text.trim().parse()
            {
                run.counts.insert("max_map_count".into(), limit);
            }
            Ok(())
        } else {
            client.as_ref().map(|_| ()).map_err(Clone::clone)
        };
        if let (Ok(()), Some(then)) = (&result, case.then) {
            result = second_client(run, &server, then, bench, pin);
        }
        if let Ok(mut client) = client {
            let _ = client.kill();
            let _ = client.wait();
        }
        if result.is_ok() {
            result = closed(run, pid, &before);
        }
        let usage = |who| getrusage(who).map_err(|e| e.to_string());
        let kids_before = usage(UsageWho::RUSAGE_CHILDREN)?;
        server.interrupt().map_err(|e| e.to_string())?;
        server
            .wait_timeout(Duration::from_secs(30))
            .map_err(|e| e.to_string())?
            .ok_or("the server did not exit within 30 s of SIGINT")?;
        let kids_after = usage(UsageWho::RUSAGE_CHILDREN)?;
        let diff = |a: i64, b: i64| u64::try_from(a - b).unwrap_or(0);
        run.counts.insert(
            "voluntary_ctxt_switches".into(),
            diff(
                kids_after.voluntary_context_switches(),
                kids_before.voluntary_context_switches(),
            ),
        );
        for (name, value) in parse_stats_line(&server.stderr()) {
            run.counts.insert(format!("stats.{name}"), value);
        }
        result
    }

    /// The second client of a `--hold` case, started while the first holds
    /// its connections. While it runs, the listening socket's queues are
    /// sampled, and the server's VmRSS read once a connection waits in the
    /// accept queue; then its exit status, its `max` latency and, when it
    /// gave up connecting, how many of its clients had connected.
    fn second_client(
        run: &mut Run,
        server: &ServerProcess,
        then: Then,
        bench: &std::path::Path,
        pin: bool,
    ) -> Result<(), String> {
        let argv = bench_argv(then.client, server, pin);
        let mut child = Command::new(bench)
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the second echo-bench: {e}"))?;
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_string(&mut text);
                }
                text
            })
        };
        let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let port = server.addr().port();
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if let Ok(ss) = Command::new("ss").arg("-ltnH").output()
                && let Some(queues) = parse_listen(&String::from_utf8_lossy(&ss.stdout), port)
            {
                let most = run.counts.entry("listen.recv_q_max".into()).or_insert(0);
                *most = (*most).max(queues.recv_q);
                run.counts.insert("listen.send_q".into(), queues.send_q);
                if queues.recv_q > 0 && !run.counts.contains_key("rss_waiting_kib") {
                    let rss = server.rss_kib().map_err(|e| e.to_string())?;
                    run.counts.insert("rss_waiting_kib".into(), rss);
                }
            }
            // A sampling period while the client runs (it ends on its own
            // clock), not a wait for an event.
            std::thread::sleep(Duration::from_millis(50));
        };
        let (stdout, stderr) = (
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        );
        run.then_command = Some(
            std::iter::once(bench.to_string_lossy().into_owned())
                .chain(argv)
                .collect(),
        );
        let code = status.code().map_or(u64::MAX, |c| c as u64);
        run.counts.insert("then.exit_code".into(), code);
        if let Some(max) = parse_max_latency_us(&stdout) {
            run.counts.insert("then.max_latency_us".into(), max);
        }
        if let Some(connected) = parse_connected(&stderr) {
            run.counts.insert("then.connected".into(), connected);
        }
        match (status.success(), then.fails) {
            (true, false) | (false, true) => Ok(()),
            (true, true) => Err("the second echo-bench was meant to give up, and did not".into()),
            (false, false) => Err(format!("the second echo-bench failed ({status}): {stderr}")),
        }
    }

    /// Once the client has gone: waits (up to 30 s) until the server is back
    /// to the descriptors and threads it had before the client came, then
    /// reads its memory figures again. What it keeps is what it did not
    /// give back.
    fn closed(run: &mut Run, pid: u32, before: &Snapshot) -> Result<(), String> {
        let started = std::time::Instant::now();
        let mut now = snapshot(pid)?;
        while (now.fds > before.fds || now.threads > before.threads)
            && started.elapsed() < Duration::from_secs(30)
        {
            // Polling: nothing announces that the last thread has exited.
            std::thread::sleep(Duration::from_millis(50));
            now = snapshot(pid)?;
        }
        run.counts.insert(
            "closed_wait_ms".into(),
            started.elapsed().as_millis() as u64,
        );
        record(run, "closed", &now);
        Ok(())
    }

    /// The memory figures of one moment: VmRSS, VmSize and VmPTE (kB) and
    /// Threads of `/proc/PID/status`, the lines of `/proc/PID/maps` (one per
    /// mapping) and the entries of `/proc/PID/fd` (open descriptors), and
    /// the size of the io_uring mappings among the maps.
    struct Snapshot {
        rss: u64,
        vmsize: u64,
        vmpte: u64,
        threads: u64,
        maps: u64,
        fds: u64,
        /// The io_uring rings mapped into the process (0 without a ring).
        ring_kib: u64,
    }

    fn snapshot(pid: u32) -> Result<Snapshot, String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .ok_or(format!("no {name} in /proc/{pid}/status"))
        };
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map_err(|e| format!("/proc/{pid}/maps: {e}"))?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map_err(|e| format!("/proc/{pid}/fd: {e}"))?
            .count() as u64;
        Ok(Snapshot {
            rss: field("VmRSS:")?,
            vmsize: field("VmSize:")?,
            vmpte: field("VmPTE:")?,
            threads: field("Threads:")?,
            ring_kib: ring_mappings_kib(&maps),
            maps: maps.lines().count() as u64,
            fds,
        })
    }

    /// Records a snapshot under the names `rss_WHEN_kib` ... `fds_WHEN`.
    fn record(run: &mut Run, when: &str, s: &Snapshot) {
        for (name, value) in [
            (format!("rss_{when}_kib"), s.rss),
            (format!("vmsize_{when}_kib"), s.vmsize),
            (format!("vmpte_{when}_kib"), s.vmpte),
            (format!("threads_{when}"), s.threads),
            (format!("maps_{when}"), s.maps),
            (format!("fds_{when}"), s.fds),
        ] {
            run.counts.insert(name, value);
        }
        if s.ring_kib > 0 {
            run.counts
                .insert(format!("ring_maps_{when}_kib"), s.ring_kib);
        }
    }

    /// The machine's `KernelStack` (kB) from `/proc/meminfo`.
    fn kernel_stack_kib() -> Result<u64, String> {
        let meminfo =
            std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix("KernelStack:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or("no KernelStack in /proc/meminfo".to_string())
    }

    /// Starts strace on the server and returns once it says it has attached
    /// (its `Process PID attached` line on stderr); its stderr is drained after.
    fn attach(argv: &[String]) -> Result<Child, String> {
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start strace: {e}"))?;
        let mut lines = BufReader::new(child.stderr.take().ok_or("no stderr")?).lines();
        let mut seen = String::new();
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    let attached = line.contains("attached");
                    seen.push_str(&line);
                    seen.push('\n');
                    if attached {
                        break;
                    }
                }
                _ => {
                    let _ = child.wait();
                    return Err(format!("strace did not attach: {seen}"));
                }
            }
        }
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Ok(child)
    }

    /// The main thread's voluntary and involuntary context switches so far.
    fn thread_switches(pid: u32) -> Result<(u64, u64), String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(format!("no {name} in /proc/{pid}/status"))
        };
        Ok((
            field("voluntary_ctxt_switches:")?,
            field("nonvoluntary_ctxt_switches:")?,
        ))
    }

    /// One `ss -tnH` sample of the connection to `port`, with the server's
    /// VmRSS; `None` unless both ends are there.
    fn sample_queues(port: u16, server: &ServerProcess) -> Option<Vec<(String, u64)>> {
        let out = Command::new("ss").arg("-tnH").output().ok()?;
        let (Some(s), Some(c)) = parse_ss(&String::from_utf8_lossy(&out.stdout), port) else {
            return None;
        };
        let rss = server.rss_kib().ok()?;
        Some(
            [
                ("ss.server_recv_q", s.recv_q),
                ("ss.server_send_q", s.send_q),
                ("ss.client_recv_q", c.recv_q),
                ("ss.client_send_q", c.send_q),
                ("rss_stalled_kib", rss),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect(),
        )
    }
}
