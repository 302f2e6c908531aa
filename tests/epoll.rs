//! Lesson 03's own promises, beyond the grader (which `tests/grader.rs` runs
//! against it in level mode, the default): the grader in edge mode, bounded
//! memory for a peer that never reads, a flood of connects accepted in
//! turns, and many clients streaming in edge mode. Running out of
//! descriptors is in `tests/out_of_descriptors.rs`.
#![cfg(target_os = "linux")]

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use uring_echo_tools::client::{self, NonReader};
use uring_echo_tools::grader::{self, CHECKS};
use uring_echo_tools::pattern;
use uring_echo_tools::process::{ServerProcess, binary_path, stat};

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

/// A thousand clients connect at once, and the server must not take them
/// all in one go: each accept costs system calls, and while the loop
/// accepts, every connected client, and SIGINT, waits. Lesson 03 accepts a
/// bounded number per turn and goes back to epoll_wait, which reports the
/// level-triggered listener again while connections wait.
///
/// To make the flood exact, the server is stopped (SIGSTOP) while the
/// clients connect: the kernel completes their handshakes on its own and
/// queues them for `accept`, as it would for a server busy elsewhere. When
/// the server goes on (SIGCONT) the whole flood is waiting at once.
fn a_connect_flood_is_accepted_in_turns(trigger: &str) {
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    const FLOOD: usize = 1000;
    // The kernel queues at most net.core.somaxconn connections (4096 since
    // Linux 5.4; 128 before); a connect beyond that would wait for us.
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if somaxconn < FLOOD + 2 {
        eprintln!("skipped: net.core.somaxconn is {somaxconn}, the test queues {FLOOD} connects");
        return;
    }
    // The test holds one end of each connection, the server the other.
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((0, 0));
    if soft < FLOOD as u64 + 100 {
        eprintln!(
            "skipped: {soft} open files allowed, the test needs {}",
            FLOOD + 100
        );
        return;
    }

    let mut server = start(&["--trigger", trigger]);
    let pid = Pid::from_raw(i32::try_from(server.pid()).expect("a pid fits in pid_t"));
    let mut old = client::connect(server.addr(), LIMIT).unwrap();
    client::echo_once(&mut old, 1, 0, 100).unwrap();

    kill(pid, Signal::SIGSTOP).unwrap();
    let flood: Vec<TcpStream> = (0..FLOOD)
        .map(|_| client::connect(server.addr(), LIMIT))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("a connect while the server was stopped: {e}"));
    // The last in the queue: when it is echoed, every client before it has
    // been accepted (the accept queue is first in, first out).
    let mut last = client::connect(server.addr(), LIMIT).unwrap();
    last.write_all(&pattern::bytes(2, 0, 100)).unwrap();
    // And a message from a client the server already has.
    old.write_all(&pattern::bytes(1, 100, 100)).unwrap();
    kill(pid, Signal::SIGCONT).unwrap();

    client::read_expected(&mut old, 1, 100, 100)
        .unwrap_or_else(|e| panic!("the connected client: {e}\n{}", server.stderr()));
    client::read_expected(&mut last, 2, 0, 100)
        .unwrap_or_else(|e| panic!("the last client of the flood: {e}\n{}", server.stderr()));

    server.interrupt().unwrap();
    let status = server.wait_timeout(LIMIT).unwrap();
    let stderr = server.stderr();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{stderr}");
    drop(flood);
    assert_eq!(stat(&stderr, "accepted"), FLOOD as u64 + 2, "{stderr}");
    // Accepting the whole queue in one turn, the server made about five
    // epoll_waits in this whole run: two for the first client, one for the
    // flood, one for the last client's message, one for SIGINT. A bound of
    // at most 128 accepts a turn (the lesson's is 64) makes the flood alone
    // take at least 8 turns.
    let waits = stat(&stderr, "epoll_waits");
    assert!(
        waits >= (FLOOD as u64 + 1).div_ceil(128),
        "{waits} epoll_waits for a run with {} connections waiting at once: \
         the server accepted them all in one turn\n{stderr}",
        FLOOD + 1
    );
    eprintln!(
        "{trigger}: {waits} epoll_waits for {} connections",
        FLOOD + 2
    );
}

#[test]
fn a_connect_flood_is_accepted_in_turns_level() {
    a_connect_flood_is_accepted_in_turns("level");
}

#[test]
fn a_connect_flood_is_accepted_in_turns_edge() {
    a_connect_flood_is_accepted_in_turns("edge");
}

/// Many clients streaming flat out in edge mode: turns keep running out
/// (READS_PER_TURN), so connections keep going on the `again` list while
/// new data brings them new events. Each must be on it at most once; the
/// debug build this test runs checks that with an assertion, which would
/// end the server (and fail the echoes below). Every byte must come back.
#[test]
fn edge_triggered_many_clients_streaming() {
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    let mut server = start(&["--trigger", "edge"]);
    const CLIENTS: u64 = 32;
    const BYTES: u64 = 8 << 20;
    let streams: Vec<_> = (0..CLIENTS)
        .map(|seed| {
            let stream = client::connect(server.addr(), LIMIT).unwrap();
            thread::spawn(move || client::echo_streaming(stream, seed, BYTES))
        })
        .collect();
    for (seed, stream) in streams.into_iter().enumerate() {
        stream
            .join()
            .expect("a streaming client does not panic")
            .unwrap_or_else(|e| panic!("client {seed}: {e}\n{}", server.stderr()));
    }
    server.interrupt().unwrap();
    let status = server.wait_timeout(LIMIT).unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        server.stderr()
    );
}
