//! Lesson 03's own promises, beyond the grader (which `tests/grader.rs` runs
//! against it in level mode, the default): the grader in edge mode, and
//! bounded memory for a peer that never reads. Running out of descriptors
//! is in `tests/out_of_descriptors.rs`.
#![cfg(target_os = "linux")]

use std::time::Duration;

use uring_echo_book::client::{self, NonReader};
use uring_echo_book::grader::{self, CHECKS};
use uring_echo_book::process::{ServerProcess, binary_path};

const LIMIT: Duration = Duration::from_secs(30);

fn start(args: &[&str]) -> ServerProcess {
    let mut all = vec!["--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    ServerProcess::start(binary_path("03_epoll"), &all).expect("03_epoll starts")
}

#[test]
fn edge_triggered_passes_every_check() {
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    let server = start(&["--trigger", "edge"]);
    let checks: Vec<_> = CHECKS.iter().collect();
    let report = grader::grade(
        server.addr(),
        "03_epoll --trigger edge",
        &checks,
        None,
        |_| {},
    );
    let failed = report.not_passed();
    assert!(failed.is_empty(), "{failed:#?}\n{}", server.stderr());
}

fn slow_reader_costs_bounded_memory(trigger: &str) {
    let server = start(&["--trigger", trigger]);
    // Warm up: the scratch buffer and the connection table are touched.
    let mut warm = client::connect(server.addr(), LIMIT).unwrap();
    client::echo_once(&mut warm, 1, 0, 100_000).unwrap();
    let before = server.rss_kib().unwrap();

    // A client that sends up to 64 MiB and reads nothing.
    const CAP: u64 = 64 << 20;
    let slow = NonReader::start(client::connect(server.addr(), LIMIT).unwrap(), 2, CAP).unwrap();
    let stalled_at = slow.wait_until_stalled(Duration::from_millis(500), LIMIT);
    let after = server.rss_kib().unwrap();

    // Meanwhile another client is served.
    let mut other = client::connect(server.addr(), LIMIT).unwrap();
    client::echo_once(&mut other, 3, 0, 10_000).unwrap();

    // The queue is bounded by 256 KiB (the default --max-queued-bytes); the
    // rest waits in the kernel's socket buffers, which RSS does not count.
    // Without backpressure the server would hold nearly all 64 MiB.
    let grown = after.saturating_sub(before);
    assert!(
        grown < 8 * 1024,
        "the server grew by {grown} KiB while a client that does not read sent {} MiB",
        stalled_at >> 20
    );
    assert!(
        stalled_at < CAP,
        "the slow client's writes never blocked: no backpressure"
    );

    // And once it reads, every byte arrives.
    let total = slow.read_everything_back().unwrap();
    assert!(total >= stalled_at);
}

#[test]
fn a_peer_that_never_reads_costs_bounded_memory_level() {
    slow_reader_costs_bounded_memory("level");
}

#[test]
fn a_peer_that_never_reads_costs_bounded_memory_edge() {
    slow_reader_costs_bounded_memory("edge");
}
