//! The io_uring lessons' own promises, beyond the grader: a clear error when
//! io_uring is forbidden, and short sends completed byte for byte.
#![cfg(target_os = "linux")]

use std::process::Command;
use std::time::Duration;

use uring_echo_book::client;
use uring_echo_book::lessons::{LESSONS, lesson};
use uring_echo_book::process::{ServerProcess, binary_path, deny_io_uring, stat};

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn without_io_uring_each_lesson_says_so_in_one_line() {
    for l in LESSONS.iter().filter(|l| l.needs_io_uring) {
        let mut command = Command::new(binary_path(l.name));
        command.args(["--addr", "127.0.0.1:0"]);
        deny_io_uring(&mut command);
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", l.name);
        assert!(
            out.stdout.is_empty(),
            "{}: it must not claim to listen",
            l.name
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "{}: one line, got {stderr:?}",
            l.name
        );
        assert!(
            stderr.contains("io_uring is not permitted here") && stderr.contains("seccomp"),
            "{}: the line says what and what to do: {stderr:?}",
            l.name
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

fn short_sends_are_completed(name: &str) {
    if let Some(why) = lesson(name).and_then(|l| l.why_not_here()) {
        eprintln!("skipped: {why}");
        return;
    }
    // Sends of up to 64 KiB into a send buffer of a few KiB: most come up short.
    let mut server = ServerProcess::start(
        binary_path(name),
        &[
            "--addr",
            "127.0.0.1:0",
            "--buffer-size",
            "65536",
            "--sndbuf",
            "4096",
        ],
    )
    .unwrap();
    for seed in 0..3 {
        let stream = client::connect(server.addr(), LIMIT).unwrap();
        client::echo_streaming(stream, seed, 4 << 20)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", server.stderr()));
    }
    server.interrupt().unwrap();
    assert!(
        server
            .wait_timeout(LIMIT)
            .unwrap()
            .is_some_and(|s| s.success())
    );
    let stderr = server.stderr();
    assert!(
        stat(&stderr, "short_sends") > 0,
        "no short send happened: {stderr}"
    );
}

#[test]
fn uring_single_shot_completes_short_sends() {
    short_sends_are_completed("04_uring");
}

#[test]
fn uring_multishot_completes_short_sends() {
    short_sends_are_completed("05_uring_multishot");
}

/// After SIGINT the port must be free at once: a server that exits with an
/// accept still in flight can leave the listener alive for a moment, and an
/// immediate restart then fails with EADDRINUSE. The port is fixed (below
/// the ephemeral range, so no test's client can be using it) because the
/// point is to bind the same one again.
fn restarts_at_once_on_the_same_port(name: &str) {
    if let Some(why) = lesson(name).and_then(|l| l.why_not_here()) {
        eprintln!("skipped: {why}");
        return;
    }
    // A port of our own: from the process id, so two runs of the suite on
    // one machine do not meet; another number if that one is taken.
    let base =
        20000 + (std::process::id() % 5000) as u16 + if name.starts_with("05") { 5000 } else { 0 };
    let port = (base..base + 50)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below the ephemeral range");
    let addr = format!("127.0.0.1:{port}");
    for round in 0..10 {
        let mut server = ServerProcess::start(binary_path(name), &["--addr", &addr])
            .unwrap_or_else(|e| panic!("{name}: start {round} on {addr} failed: {e}"));
        let mut stream = client::connect(server.addr(), LIMIT).unwrap();
        client::echo_once(&mut stream, round, 0, 100).unwrap();
        server.interrupt().unwrap();
        let status = server.wait_timeout(LIMIT).unwrap();
        assert!(
            status.is_some_and(|s| s.success()),
            "{name}: {status:?}\n{}",
            server.stderr()
        );
    }
}

#[test]
fn uring_single_shot_restarts_at_once_on_the_same_port() {
    restarts_at_once_on_the_same_port("04_uring");
}

#[test]
fn uring_multishot_restarts_at_once_on_the_same_port() {
    restarts_at_once_on_the_same_port("05_uring_multishot");
}
