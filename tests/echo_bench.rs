//! The load generator held to its promises: against every lesson that can
//! serve many clients it makes load and measures it, without a single error;
//! against a server that corrupts, drops or withholds bytes it fails with an
//! error that says where, instead of a number; an open loop (`rate`) meets a
//! modest rate with the latencies of a ping-pong and reports an impossible
//! one as not kept up; and `echo-bench` prints the documented JSON and exits
//! with the documented status.
//!
//! Every run here is short (half a second or less), and the time limits are
//! generous, because these are debug builds on two busy cores: the tests
//! check that the numbers exist and make sense, never how big they are.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, ErrorKind};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use uring_echo_tools::lessons::{Lesson, lesson, runnable};
use uring_echo_tools::loadgen::{self, Config, LoadError, Report};
use uring_echo_tools::process::{ServerProcess, binary_path, tool_path};

/// Far above anything a healthy server needs, even a debug build on a
/// loaded machine; a failing test still ends.
const LIMIT: Duration = Duration::from_secs(30);

/// The lessons a many-client load makes sense for. A lesson whose design
/// cannot serve two clients at once (01) is expected to fail the grader's
/// `concurrent` check; under this load it would stall, so it is skipped,
/// with the reason from the expectations table.
fn lessons_serving_many() -> Vec<&'static Lesson> {
    runnable()
        .into_iter()
        .filter(|lesson| match lesson.expected_failure("concurrent") {
            Some(expected) => {
                eprintln!("skipped {}: {}", lesson.name, expected.why);
                false
            }
            None => true,
        })
        .collect()
}

fn start(lesson: &Lesson) -> ServerProcess {
    ServerProcess::start(binary_path(lesson.name), &["--addr", "127.0.0.1:0"])
        .unwrap_or_else(|e| panic!("{} did not start: {e}", lesson.name))
}

fn config(addr: SocketAddr) -> Config {
    Config {
        connections: 8,
        length: 512,
        duration: Duration::from_millis(500),
        timeout: LIMIT,
        ..Config::new(addr)
    }
}

/// What every report must say, whatever the machine.
fn check_report(name: &str, config: &Config, r: &Report) -> Result<(), String> {
    let in_flight = (config.connections * config.pipeline) as u64;
    let problems: Vec<String> = [
        (r.requests > 0, "no request was sent".to_string()),
        (r.responses > 0, "no response came back".to_string()),
        (r.errors == 0, format!("{} errors", r.errors)),
        (
            r.requests.abs_diff(r.responses) <= in_flight,
            format!(
                "{} requests and {} responses differ by more than the {in_flight} \
                 messages that can be in flight",
                r.requests, r.responses
            ),
        ),
        (
            r.bytes >= r.responses * r.length as u64,
            format!("{} bytes for {} responses", r.bytes, r.responses),
        ),
        (
            r.latency_us.samples == r.responses,
            format!(
                "{} latencies for {} responses",
                r.latency_us.samples, r.responses
            ),
        ),
        (
            0.0 < r.latency_us.p50 && r.latency_us.p50 <= r.latency_us.max,
            format!("p50 {} µs, max {} µs", r.latency_us.p50, r.latency_us.max),
        ),
        (
            r.latency_us.p50 <= r.latency_us.p99 && r.latency_us.p99 <= r.latency_us.p999,
            format!("percentiles out of order: {:?}", r.latency_us),
        ),
        (
            r.seconds >= config.duration.as_secs_f64(),
            format!("a window of {} s", r.seconds),
        ),
        (
            r.connections == config.connections
                && r.length == config.length
                && r.pipeline == config.pipeline,
            "the report does not describe the run".to_string(),
        ),
    ]
    .into_iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, why)| why)
    .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{name}: {}", problems.join("; ")))
    }
}

/// Runs `config_for(addr)` against a fresh server of every lesson that can
/// take the load, and reports every lesson that failed, not just the first.
fn against_every_lesson(config_for: impl Fn(SocketAddr) -> Config) {
    let mut failures = Vec::new();
    for lesson in lessons_serving_many() {
        let server = start(lesson);
        let config = config_for(server.addr());
        let outcome = loadgen::run(&config, |_| {})
            .map_err(|e| format!("{}: {e}", lesson.name))
            .and_then(|report| check_report(lesson.name, &config, &report));
        if let Err(why) = outcome {
            failures.push(format!("{why}\n--- its stderr:\n{}", server.stderr()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_lesson_that_serves_many_clients_sustains_a_verified_load() {
    against_every_lesson(config);
}

#[test]
fn a_pipeline_keeps_several_messages_in_flight_after_a_warm_up() {
    against_every_lesson(|addr| Config {
        pipeline: 4,
        warmup: Duration::from_millis(200),
        duration: Duration::from_millis(400),
        ..config(addr)
    });
}

#[test]
fn messages_larger_than_a_socket_buffer_go_out_in_pieces_and_still_check() {
    // 300 kB does not fit a loopback socket's send buffer at once, so every
    // message is written in several short writes, resumed on "writable",
    // while its echo is already coming back.
    against_every_lesson(|addr| Config {
        connections: 2,
        length: 300_000,
        pipeline: 2,
        duration: Duration::from_millis(300),
        ..config(addr)
    });
}

/// A one-connection server on a thread, doing whatever `serve` does with
/// the connection. The thread ends when `serve` returns.
fn tiny_server(serve: impl FnOnce(TcpStream) + Send + 'static) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            serve(stream);
        }
    });
    (addr, handle)
}

/// Echoes faithfully, except that the byte at `flip_at` has one bit flipped.
fn corrupting_echo(flip_at: u64) -> impl FnOnce(TcpStream) + Send + 'static {
    move |mut stream| {
        let mut buf = [0u8; 4096];
        let mut at = 0u64;
        // Until the client hangs up (0) or resets (an error).
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            if (at..at + n as u64).contains(&flip_at) {
                buf[(flip_at - at) as usize] ^= 0x20;
            }
            at += n as u64;
            if stream.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    }
}

fn one_client(addr: SocketAddr) -> Config {
    Config {
        connections: 1,
        // Longer than any of these tests may take: the error must end it.
        duration: LIMIT,
        ..config(addr)
    }
}

#[test]
fn a_server_that_corrupts_one_byte_fails_the_run_with_a_mismatch() {
    let (addr, server) = tiny_server(corrupting_echo(1000));
    let result = loadgen::run(&one_client(addr), |_| {});
    match result {
        Err(LoadError::Mismatch {
            conn,
            offset,
            got,
            wanted,
        }) => {
            assert_eq!((conn, offset), (0, 1000), "names the connection and offset");
            assert_eq!(
                got,
                wanted ^ 0x20,
                "names the byte that came and the one sent"
            );
            let line = result.unwrap_err().to_string();
            assert!(
                line.contains("connection 0") && line.contains("byte 1000"),
                "{line}"
            );
            assert!(!line.contains('\n'), "one line: {line:?}");
        }
        Err(other) => panic!("a mismatch error expected, got: {other}"),
        Ok(report) => panic!("a corrupted echo gave a number: {report:?}"),
    }
    server.join().expect("the bad server ran to the end");
}

#[test]
fn a_server_that_hangs_up_mid_message_fails_the_run() {
    let (addr, server) = tiny_server(|mut stream| {
        // Echo 700 bytes (one 512-byte message and part of the next), then
        // shut our side; read on to the client's close so that ours is an
        // orderly FIN, not a reset.
        let mut buf = [0u8; 4096];
        let mut echoed = 0;
        while echoed < 700 {
            let Ok(n @ 1..) = stream.read(&mut buf) else {
                return;
            };
            let take = n.min(700 - echoed);
            if stream.write_all(&buf[..take]).is_err() {
                return;
            }
            echoed += take;
        }
        let _ = stream.shutdown(Shutdown::Write);
        while let Ok(1..) = stream.read(&mut buf) {}
    });
    match loadgen::run(&one_client(addr), |_| {}) {
        Err(LoadError::Closed {
            conn: 0,
            received: 700,
            sent: 1024,
        }) => {}
        Err(other) => panic!("an early-close error expected, got: {other}"),
        Ok(report) => panic!("a server that hung up gave a number: {report:?}"),
    }
    server.join().expect("the bad server ran to the end");
}

#[test]
fn a_server_that_stops_answering_fails_the_run_after_the_time_limit() {
    // Reads everything, echoes nothing.
    let (addr, server) = tiny_server(|mut stream| {
        let mut buf = [0u8; 4096];
        while let Ok(1..) = stream.read(&mut buf) {}
    });
    let config = Config {
        timeout: Duration::from_millis(300),
        ..one_client(addr)
    };
    match loadgen::run(&config, |_| {}) {
        Err(LoadError::Stalled {
            conn: 0,
            waited,
            received: 0,
            sent: 512,
        }) => assert!(waited >= config.timeout, "waited {waited:?}"),
        Err(other) => panic!("a stall error expected, got: {other}"),
        Ok(report) => panic!("a silent server gave a number: {report:?}"),
    }
    server.join().expect("the silent server ran to the end");
}

fn echo_bench(args: &[&str]) -> Output {
    Command::new(tool_path("echo-bench"))
        .args(args)
        .output()
        .expect("echo-bench starts")
}

fn any_lesson_serving_many() -> &'static Lesson {
    lessons_serving_many()
        .into_iter()
        .next()
        .expect("02_threads runs on every OS")
}

#[test]
fn echo_bench_json_has_the_documented_fields_and_exits_0() {
    let lesson = any_lesson_serving_many();
    let server = start(lesson);
    let addr = server.addr().to_string();
    let out = echo_bench(&[
        "-a",
        &addr,
        "-c",
        "4",
        "-d",
        "0.5",
        "-l",
        "256",
        "--pipeline",
        "2",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
    assert_eq!(v["schema"], "echo-bench");
    assert_eq!(v["schema_version"], loadgen::report::JSON_SCHEMA_VERSION);
    assert_eq!(v["address"], addr.as_str());
    assert_eq!(v["connections"], 4);
    assert_eq!(v["length"], 256);
    assert_eq!(v["pipeline"], 2);
    assert_eq!(v["errors"], 0);
    assert!(v["pinned_cpu"].is_null());
    for field in ["requests", "responses", "bytes"] {
        assert!(v[field].as_u64().is_some_and(|n| n > 0), "{field}: {v}");
    }
    for field in [
        "seconds",
        "warmup_seconds",
        "requests_per_sec",
        "responses_per_sec",
        "bytes_per_sec",
    ] {
        assert!(v[field].is_number(), "{field}: {v}");
    }
    let latency = &v["latency_us"];
    for field in ["samples", "min", "mean", "p50", "p90", "p99", "p999", "max"] {
        assert!(latency[field].is_number(), "latency_us.{field}: {v}");
    }
    assert!(latency["p50"].as_f64() <= latency["max"].as_f64());
    assert!(v["client_cpu"]["busy"].is_number(), "{v}");
    assert!(v["rate"].is_null(), "a closed loop has no rate: {v}");
    assert!(
        v["responses_in_run"].as_u64() >= v["responses"].as_u64(),
        "the whole run has at least the window's echoes: {v}"
    );
}

/// Lesson 03, the open-loop tests' server: any lesson that serves many
/// clients would do; 03 runs on every Linux machine.
fn epoll_lesson() -> Option<&'static Lesson> {
    let epoll = lesson("03_epoll").expect("03_epoll is on the lesson list");
    match epoll.why_not_here() {
        None => Some(epoll),
        Some(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

#[test]
fn an_open_loop_at_a_modest_rate_keeps_up_with_ping_pong_latencies() {
    let Some(epoll) = epoll_lesson() else { return };
    let server = start(epoll);
    // The ping-pong first, on the same server: what it can do, and its
    // round-trip times.
    let closed = loadgen::run(&config(server.addr()), |_| {}).expect("a ping-pong run");
    // A fifth of that rate: modest on any machine, debug build or not.
    let offered = (closed.responses_per_sec / 5.0).max(100.0);
    let open_config = Config {
        rate: Some(offered),
        warmup: Duration::from_millis(200),
        duration: Duration::from_secs(1),
        ..config(server.addr())
    };
    let open = loadgen::run(&open_config, |_| {}).expect("an open-loop run");
    let stderr = server.stderr();
    check_report("03_epoll, open loop", &open_config, &open).unwrap();
    let rate = open.rate.expect("an open-loop report has a rate");
    assert!(
        rate.kept_up && rate.achieved_share > 0.95 && rate.achieved_share < 1.05,
        "{offered:.0}/s offered, {rate:?}\n{stderr}"
    );
    // A server that keeps up leaves about one send per connection behind at
    // the window's end; a machine busy with other tests can stall the
    // client for a few milliseconds just then (102 behind at 25,000/s was
    // seen in CI: 4 ms). So the bound is the same 5% that `kept_up` allows,
    // of the messages due in the window, or one per connection if more.
    let allowed =
        (0.05 * offered * open_config.duration.as_secs_f64()).max(open.connections as f64);
    assert!(
        rate.behind_at_end as f64 <= allowed,
        "a server that keeps up leaves few sends behind (at most {allowed:.0}): {rate:?}"
    );
    // Latency counts from each message's due time, so a client that sent
    // late (a coarse timer, say) would show here. The open loop's server
    // is mostly idle, so it may wake more slowly than a busy one answers;
    // "close" allows for that, not for a millisecond of lateness.
    let (pp, ol) = (closed.latency_us.p50, open.latency_us.p50);
    eprintln!("ping-pong p50 {pp:.0} µs; open loop at {offered:.0}/s p50 {ol:.0} µs");
    assert!(
        ol <= (3.0 * pp).max(pp + 500.0),
        "open loop p50 {ol:.0} µs against ping-pong p50 {pp:.0} µs"
    );
}

#[test]
fn an_impossible_rate_is_reported_as_not_kept_up() {
    let Some(epoll) = epoll_lesson() else { return };
    let server = start(epoll);
    let addr = server.addr().to_string();
    // A billion requests a second: no server on any machine.
    let out = echo_bench(&[
        "-a", &addr, "-c", "4", "-d", "0.5", "--rate", "1e9", "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a slow server is a number: {stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let rate = &v["rate"];
    assert_eq!(rate["kept_up"], false, "{v}");
    assert_eq!(rate["offered_per_sec"], 1e9, "{v}");
    assert!(rate["achieved_share"].as_f64() < Some(0.95), "{v}");
    assert!(rate["behind_at_end"].as_u64() > Some(1000), "{v}");
    assert!(
        stderr.lines().any(|l| l.contains("NOT KEPT UP")),
        "a clear line on stderr: {stderr}"
    );
    // The table says it too.
    let out = echo_bench(&["-a", &addr, "-c", "4", "-d", "0.3", "--rate", "1e9"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("rate") && l.contains("NOT KEPT UP")),
        "{stdout}"
    );
}

#[test]
fn echo_bench_prints_the_classic_lines() {
    let server = start(any_lesson_serving_many());
    let addr = server.addr().to_string();
    let out = echo_bench(&["-a", &addr, "-c", "3", "-d", "0.3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        stdout.starts_with(&format!("Benchmarking: {addr}\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 clients, running 512 bytes, 0.3 sec."),
        "{stdout}"
    );
    for prefix in ["Speed: ", "Requests: ", "Responses: "] {
        assert!(
            stdout.lines().any(|l| l.starts_with(prefix)),
            "no `{prefix}` line:\n{stdout}"
        );
    }
    assert!(stdout.contains(" request/sec, ") && stdout.contains(" response/sec"));
    assert!(stdout.contains("p99.9"), "{stdout}");
}

#[test]
fn echo_bench_exits_2_when_nobody_listens() {
    // A port that was free a moment ago: bound, then released.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let out = echo_bench(&["-a", &addr, "-c", "2", "-d", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: connected 0 of 2 clients"),
        "one clear line: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "no number for a run that never started"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn echo_bench_exits_2_on_bad_usage() {
    for args in [
        &["-c", "0"][..],
        &["-l", "many"],
        &["-d", "0"],
        &["--pipeline", "0"],
        &["--rate", "0"],
        &["--rate", "-5"],
        &["--pin", "100000"],
        &["-a", "not an address"],
        &["--echoes", "0"],
        &["--echoes", "5", "--rate", "100"],
        &["--hold", "--json"],
        &["--no-read", "--echoes", "3"],
        &["--close", "sideways"],
    ] {
        let out = echo_bench(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("error: "), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn echo_bench_exits_1_when_an_echo_is_wrong() {
    let (addr, server) = tiny_server(corrupting_echo(5000));
    let out = echo_bench(&["-a", &addr.to_string(), "-c", "1", "-d", "30"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("error: connection 0: byte 5000 ")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "a wrong byte gives no number");
    server.join().expect("the bad server ran to the end");
}

/// What one connection of [`counting_server`] saw: the bytes it echoed, and
/// how it ended (`Ok(())` for a FIN, the read's error otherwise).
type Ending = (u64, Result<(), ErrorKind>);

/// Echoes every connection of `clients` until each ends, on a thread per
/// connection; the thread answers with each connection's [`Ending`].
fn counting_server(clients: usize) -> (SocketAddr, JoinHandle<Vec<Ending>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                let (mut stream, _) = listener.accept().expect("a client");
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut echoed = 0u64;
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) => return (echoed, Ok(())),
                            Ok(n) => {
                                if let Err(e) = stream.write_all(&buf[..n]) {
                                    return (echoed, Err(e.kind()));
                                }
                                echoed += n as u64;
                            }
                            Err(e) => return (echoed, Err(e.kind())),
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    (addr, handle)
}

#[test]
fn a_fixed_number_of_echoes_is_exactly_what_the_server_sees() {
    let (addr, server) = counting_server(2);
    let out = echo_bench(&[
        "-a",
        &addr.to_string(),
        "-c",
        "2",
        "--echoes",
        "5",
        "-l",
        "64",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(stdout.contains("\nRequests: 10\n"), "{stdout}");
    assert!(stdout.contains("\nResponses: 10\n"), "{stdout}");
    let ends = server.join().expect("the server ran to the end");
    for (echoed, end) in ends {
        assert_eq!(echoed, 5 * 64, "each connection echoes 5 × 64 bytes");
        assert_eq!(end, Ok(()), "an ordinary close is a FIN");
    }
}

#[test]
fn close_reset_ends_the_connection_with_econnreset_after_the_echoes() {
    let (addr, server) = counting_server(1);
    let config = Config {
        connections: 1,
        length: 100,
        echoes: Some(3),
        close: loadgen::Close::Reset,
        ..config(addr)
    };
    let report = loadgen::run(&config, |_| {}).expect("three echoes");
    assert_eq!(report.responses, 3);
    let ends = server.join().expect("the server ran to the end");
    assert_eq!(ends, vec![(300, Err(ErrorKind::ConnectionReset))]);
}

/// Kills the child when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hold_keeps_every_connection_open_and_idle_after_its_echo() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().unwrap().to_string();
    let mut child = Killed(
        Command::new(tool_path("echo-bench"))
            .args(["-a", &addr, "-c", "3", "-l", "1", "--hold"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("echo-bench starts"),
    );
    // echo-bench connects all three before it sends: accept them, then
    // echo the one byte each sends.
    let mut conns: Vec<TcpStream> = (0..3).map(|_| listener.accept().unwrap().0).collect();
    for conn in &mut conns {
        let mut byte = [0u8; 1];
        conn.read_exact(&mut byte).expect("one byte");
        conn.write_all(&byte).unwrap();
    }
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the Holding line");
    assert_eq!(
        line,
        "Holding: 3 connections open, each echoed 1 time; Ctrl-C closes them\n"
    );
    // Held: open (no FIN, no reset) and idle (nothing more sent).
    for conn in &mut conns {
        conn.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        let got = conn.read(&mut buf).map_err(|e| e.kind());
        assert_eq!(got, Err(ErrorKind::WouldBlock), "open and idle");
    }
    drop(child);
    // The process is gone: the kernel closed its sockets.
    for conn in &mut conns {
        conn.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(conn.read(&mut buf).expect("a FIN"), 0);
    }
}

#[test]
fn no_read_sends_until_the_buffers_are_full_and_says_so() {
    // A server that accepts and never reads: the client's writes fill the
    // buffers between them and stop making progress.
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().unwrap().to_string();
    let silent = thread::spawn(move || {
        // Accepted and handed back whole, unread: it stays open, held by
        // the thread's result, until the test joins it after the run.
        let (stream, _) = listener.accept().unwrap();
        stream
    });
    let out = echo_bench(&["-a", &addr, "-c", "1", "-d", "0.5", "--no-read"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    let sent: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Sent: "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `Sent: N bytes` line:\n{stdout}"));
    assert!(sent > 0, "{stdout}");
    // Bounded by the buffers: a few MiB at most on loopback, never 0.5 s of
    // loopback bandwidth (gigabytes).
    assert!(sent < 256 << 20, "sent {sent}: the writes never blocked?");
    assert!(
        stdout.lines().any(|l| l.starts_with("Last progress: ")),
        "{stdout}"
    );
    drop(silent.join().unwrap());
}
