//! The io_uring lessons' own promises, beyond the grader: a clear error when
//! io_uring is forbidden, short sends completed byte for byte, and an
//! `io_uring_enter` that fails for a moment tried again.
#![cfg(target_os = "linux")]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::libc;
use uring_echo_tools::client;
use uring_echo_tools::lessons::{LESSONS, lesson};
use uring_echo_tools::process::{
    EnterCall, EnterFaults, EnterVerdict, ServerProcess, binary_path, deny_io_uring, stat,
};

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

/// Starts `name` with `args`, every `io_uring_enter` of it answered by
/// `decide` (see `EnterFaults`). Returns the server and the count of calls
/// `decide` saw twice (`EnterFaults::withdrawn`). `None`, with the reason
/// printed, where this machine cannot run the lesson or the filter.
fn start_with_enter_faults(
    name: &str,
    args: &[&str],
    decide: impl FnMut(EnterCall) -> EnterVerdict + Send + 'static,
) -> Option<(ServerProcess, Arc<AtomicU64>)> {
    if let Some(why) = lesson(name).and_then(|l| l.why_not_here()) {
        eprintln!("skipped: {why}");
        return None;
    }
    let mut command = Command::new(binary_path(name));
    command.args(args);
    // Kept until the server has started (see `EnterFaults`).
    let faults = EnterFaults::prepare(&mut command, decide).unwrap();
    let withdrawn = faults.withdrawn();
    let server = match ServerProcess::spawn(command) {
        Ok(server) => server,
        // The filter is installed between fork and exec, so a kernel or a
        // container that refuses it makes the start itself fail.
        Err(e) if e.to_string().starts_with("cannot start") => {
            eprintln!("skipped: no seccomp user notification here: {e}");
            return None;
        }
        Err(e) => panic!("{name}: {e}"),
    };
    drop(faults);
    Some((server, withdrawn))
}

/// `io_uring_enter` can fail for a moment: EINTR (a signal came during the
/// wait), EAGAIN (the kernel found no memory for a request), EBUSY (older
/// kernels, completions backed up). With each, the kernel took none of the
/// queued requests, and lesson 04 tries again. The kernel will not fail so
/// on demand, so a seccomp filter hands every `io_uring_enter` of the server
/// to this test, which fails three calls in four, with each of the three
/// errors in turn, and lets the fourth run. A one-entry submission queue
/// makes `push` enter whenever it queues a second request, so its own
/// enter gets errors too, not only the loop's wait. Every echo must come
/// back, and SIGINT must still end the server with status 0. (Before the
/// retries, an EINTR in `push` or any EAGAIN ended the server.)
#[test]
fn uring_single_shot_retries_an_enter_that_fails_for_a_moment() {
    let calls = Arc::new(AtomicU64::new(0));
    // Failed with EINTR, EAGAIN, EBUSY; and failed in a call that only
    // submits (push's, when the queue is full), of any of the three.
    let failed: Arc<[AtomicU64; 4]> = Arc::default();
    let (seen, counts) = (Arc::clone(&calls), Arc::clone(&failed));
    let Some((mut server, withdrawn)) = start_with_enter_faults(
        "04_uring",
        &["--addr", "127.0.0.1:0", "--ring-entries", "1"],
        move |call| {
            let n = seen.fetch_add(1, Ordering::Relaxed) as usize;
            let Some(errno) = [libc::EINTR, libc::EAGAIN, libc::EBUSY].get(n % 4) else {
                return EnterVerdict::Run;
            };
            counts[n % 4].fetch_add(1, Ordering::Relaxed);
            if call.min_complete == 0 {
                counts[3].fetch_add(1, Ordering::Relaxed);
            }
            EnterVerdict::Fail(*errno)
        },
    ) else {
        return;
    };
    for seed in 0..3 {
        let mut stream = client::connect(server.addr(), LIMIT).unwrap();
        for round in 0..20 {
            client::echo_once(&mut stream, seed, round * 100, 100)
                .unwrap_or_else(|e| panic!("echo {seed}/{round}: {e}\n{}", server.stderr()));
        }
    }
    server.interrupt().unwrap();
    let status = server.wait_timeout(LIMIT).unwrap();
    let stderr = server.stderr();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{stderr}");
    let failed: Vec<u64> = failed.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    eprintln!(
        "of {} io_uring_enter calls, failed: EINTR, EAGAIN, EBUSY, in push: {failed:?}; \
         withdrawn and made again: {}",
        calls.load(Ordering::Relaxed),
        withdrawn.load(Ordering::Relaxed)
    );
    assert!(
        failed.iter().all(|&n| n > 0),
        "each error, and one in push's enter, should have been injected: {failed:?} \
         (EINTR, EAGAIN, EBUSY, in push) of {} calls\n{stderr}",
        calls.load(Ordering::Relaxed)
    );
    // The server counts every io_uring_enter it makes, failed or not. A
    // call interrupted while it waited for our answer (io_uring's task work
    // on the server can do that) was withdrawn and made again: the filter
    // saw it twice, the server made it once.
    let withdrawn = withdrawn.load(Ordering::Relaxed);
    assert_eq!(
        stat(&stderr, "enters"),
        calls.load(Ordering::Relaxed) - withdrawn,
        "{withdrawn} calls were withdrawn and made again\n{stderr}"
    );
}

/// The retries are bounded: an `io_uring_enter` that fails every time (here
/// EAGAIN, forever) must end the server with its one-line error and a
/// non-zero status after a while, neither spinning forever nor giving up at
/// the first failure.
#[test]
fn uring_single_shot_gives_up_on_an_enter_that_keeps_failing() {
    let calls = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&calls);
    let Some((mut server, _)) =
        start_with_enter_faults("04_uring", &["--addr", "127.0.0.1:0"], move |_| {
            seen.fetch_add(1, Ordering::Relaxed);
            EnterVerdict::Fail(libc::EAGAIN)
        })
    else {
        return;
    };
    let status = server.wait_timeout(LIMIT).unwrap();
    let stderr = server.stderr();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: the event loop failed: Resource temporarily unavailable"),
        "{stderr}"
    );
    assert!(
        calls.load(Ordering::Relaxed) > 1,
        "it gave up at the first EAGAIN\n{stderr}"
    );
}
