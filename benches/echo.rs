//! Criterion benchmarks: every lesson on the list and every peer, side by
//! side, on the same work.
//!
//! - `round_trip_64B`: one client, one 64-byte message at a time: latency.
//! - `throughput_50x512B` and `throughput_1000x512B`: the load generator's
//!   engine (the one behind `echo-bench`) drives 50 or 1,000 connections in
//!   a closed loop for a short window; one "iteration" is one echo, so
//!   criterion's time per iteration is the inverse of requests/s.
//! - `connect_echo_close`: a new connection, one 64-byte echo, close.
//!
//! The servers are the release builds Cargo makes for `cargo bench`, started
//! once per group and stopped when their guard drops. Where `taskset` exists
//! and the machine has two or more CPUs, the server runs on CPU 0 and the
//! load on CPU 1, as in the ladder runner. Criterion's HTML report lands in
//! `target/criterion/report/index.html`. Criterion gives each server's own
//! distribution; the book's headline ratios come from `echo-ladder`, whose
//! alternating rounds cancel drift.
//!
//! `ECHO_BENCH_QUICK=1 cargo bench` takes a quick, rough pass.

use std::env;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use uring_echo_tools::client;
use uring_echo_tools::process::ServerProcess;

fn quick() -> bool {
    env::var_os("ECHO_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Every lesson that runs here and can serve `clients` at once, then the
/// peers they are compared with (those that run here).
fn servers(many_clients: bool) -> Vec<&'static str> {
    let lessons = uring_echo_tools::lessons::runnable()
        .into_iter()
        .filter(|l| {
            let skip = many_clients && l.expected_failure("concurrent").is_some();
            if skip {
                eprintln!("skipped {}: cannot serve many clients at once", l.name);
            }
            !skip
        })
        .map(|l| l.name);
    lessons
        .chain(
            uring_echo_tools::lessons::runnable_peers()
                .into_iter()
                .map(|p| p.name),
        )
        .collect()
}

/// Whether to pin: two CPUs or more, and `taskset` to pin the server with.
fn pinning() -> bool {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    cfg!(target_os = "linux") && cpus >= 2 && uring_echo_tools::ladder::on_path("taskset")
}

/// Starts `name` on a free port, on CPU 0 when pinning: a fresh build of
/// it, or a panic that says how to build one.
fn start(name: &str) -> ServerProcess {
    let path = uring_echo_tools::process::binary_path(name);
    if let Err(why) = uring_echo_tools::process::check_server_built(name, &path) {
        panic!("{why}");
    }
    ServerProcess::spawn(uring_echo_tools::ladder::server_command(
        name,
        pinning(),
        &[],
    ))
    .unwrap_or_else(|e| panic!("{name} did not start: {e}"))
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    if quick() {
        group.warm_up_time(Duration::from_millis(200));
        group.measurement_time(Duration::from_millis(500));
        group.sample_size(10);
    }
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip_64B");
    configure(&mut group);
    for name in servers(false) {
        let server = start(name);
        let mut stream = client::connect(server.addr(), Duration::from_secs(10)).unwrap();
        let message = [0x5au8; 64];
        let mut reply = [0u8; 64];
        group.bench_function(name, |b| {
            b.iter(|| {
                stream.write_all(&message).unwrap();
                stream.read_exact(&mut reply).unwrap();
                // A benchmark that times a wrong answer measures nothing.
                assert_eq!(reply, message);
            })
        });
    }
    group.finish();
}

/// The time one echo takes under a closed-loop load of `clients`
/// connections, measured over a short window: `iters` echoes take
/// `iters / (requests per second)`.
#[cfg(target_os = "linux")]
fn time_per_echo(addr: SocketAddr, clients: usize, iters: u64) -> Duration {
    use uring_echo_tools::loadgen::{self, Config};
    let mut config = Config::new(addr);
    config.connections = clients;
    config.length = 512;
    config.duration = Duration::from_millis(if quick() { 200 } else { 500 });
    if pinning() {
        config.pin_cpu = Some(1);
    }
    // Every reply is checked; a wrong byte is a failed benchmark, not a number.
    let report = loadgen::run(&config, |_| {}).unwrap_or_else(|e| panic!("{addr}: {e}"));
    Duration::from_secs_f64(iters as f64 / report.requests_per_sec)
}

#[cfg(target_os = "linux")]
fn throughput(c: &mut Criterion, clients: usize) {
    let mut group = c.benchmark_group(format!("throughput_{clients}x512B"));
    configure(&mut group);
    // Each sample is one load window: keep the count of windows modest.
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.throughput(Throughput::Elements(1));
    for name in servers(true) {
        let server = start(name);
        let addr = server.addr();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| time_per_echo(addr, clients, iters))
        });
    }
    group.finish();
}

#[cfg(target_os = "linux")]
fn throughput_50(c: &mut Criterion) {
    throughput(c, 50);
}

#[cfg(target_os = "linux")]
fn throughput_1000(c: &mut Criterion) {
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    throughput(c, 1000);
}

fn connect_echo_close(c: &mut Criterion) {
    let mut group = c.benchmark_group("connect_echo_close");
    configure(&mut group);
    for name in servers(false) {
        let server = start(name);
        let addr = server.addr();
        let message = [0x33u8; 64];
        let mut reply = [0u8; 64];
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let began = Instant::now();
                for _ in 0..iters {
                    let mut stream = client::connect(addr, Duration::from_secs(10)).unwrap();
                    stream.write_all(&message).unwrap();
                    stream.read_exact(&mut reply).unwrap();
                    assert_eq!(reply, message);
                    // Close with a reset (SO_LINGER 0): a normal close would
                    // leave this side in TIME_WAIT for a minute, and tens of
                    // thousands of iterations would use up the local ports.
                    client::reset(stream).unwrap();
                }
                began.elapsed()
            })
        });
    }
    group.finish();
}

#[cfg(target_os = "linux")]
criterion_group!(
    benches,
    round_trip,
    throughput_50,
    throughput_1000,
    connect_echo_close
);
#[cfg(not(target_os = "linux"))]
criterion_group!(benches, round_trip, connect_echo_close);
criterion_main!(benches);
