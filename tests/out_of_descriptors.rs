//! Every event-loop lesson, out of file descriptors: accept fails with
//! EMFILE while clients keep arriving. The server must keep serving the
//! clients it has, must not spin on the failing accept (a level-triggered
//! listener, or an accept resubmitted at once, would), and must accept the
//! waiting clients once descriptors are free again.
#![cfg(target_os = "linux")]

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use uring_echo_book::client;
use uring_echo_book::lessons::lesson;
use uring_echo_book::pattern;
use uring_echo_book::process::{ServerProcess, binary_path, stat};

const LIMIT: Duration = Duration::from_secs(30);

/// `wakeups` names the counter of loop iterations: epoll_wait calls for 03,
/// io_uring_enter calls for the io_uring lessons.
fn out_of_descriptors_then_recovers(name: &str, args: &[&str], wakeups: &str) {
    if let Some(why) = lesson(name).and_then(|l| l.why_not_here()) {
        eprintln!("skipped: {why}");
        return;
    }
    // Give the server 64 descriptors, hard limit included, so it cannot
    // raise them: after stdin/out/err, the listener, the signalfd and the
    // epoll or io_uring instance, about 58 are left for clients.
    let mut command = Command::new(binary_path(name));
    command.args(["--addr", "127.0.0.1:0"]).args(args);
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed; setrlimit is a plain system call
    // that allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(|| rlimit::setrlimit(rlimit::Resource::NOFILE, 64, 64));
    }
    let mut server = ServerProcess::spawn(command).expect("the server starts with 64 descriptors");

    // 80 clients: more than the server can hold. Each sends one message.
    let mut clients = Vec::new();
    for i in 0..80u64 {
        let mut stream = client::connect(server.addr(), LIMIT).unwrap();
        stream.write_all(&pattern::bytes(i, 0, 100)).unwrap();
        clients.push(stream);
    }
    assert!(
        server.wait_for_stderr("pausing accepts", LIMIT),
        "{name} never ran out of descriptors: {}",
        server.stderr()
    );
    // Let it sit out of descriptors for a second. A server that retried
    // accept at once would spin through many thousands of wakeups meanwhile.
    let out_from = Instant::now();
    thread::sleep(Duration::from_secs(1));
    // Free descriptors: the first 30 clients hang up.
    let rest = clients.split_off(30);
    drop(clients);
    // Every remaining client is served, including those accepted only now.
    for (i, mut stream) in rest.into_iter().enumerate() {
        client::read_expected(&mut stream, 30 + i as u64, 0, 100).unwrap_or_else(|e| {
            panic!(
                "{name}: client {} after recovery: {e}\n{}",
                30 + i,
                server.stderr()
            )
        });
    }
    let elapsed = out_from.elapsed();

    server.interrupt().unwrap();
    let status = server.wait_timeout(LIMIT).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{name}: {status:?}");
    let stderr = server.stderr();
    assert!(stat(&stderr, "accept_pauses") >= 1, "{stderr}");
    // Paused, a server wakes every 100 ms: about 10 times a second, plus one
    // wake per batch of real work. Spinning would be hundreds of thousands.
    let woke = stat(&stderr, wakeups);
    assert!(
        woke < 200 * elapsed.as_secs().max(1),
        "{name}: {woke} {wakeups} in {elapsed:?}: the accept loop spins on EMFILE\n{stderr}"
    );
}

#[test]
fn epoll_level() {
    out_of_descriptors_then_recovers("03_epoll", &["--trigger", "level"], "epoll_waits");
}

#[test]
fn epoll_edge() {
    out_of_descriptors_then_recovers("03_epoll", &["--trigger", "edge"], "epoll_waits");
}

#[test]
fn uring_single_shot() {
    out_of_descriptors_then_recovers("04_uring", &[], "enters");
}

#[test]
fn uring_multishot() {
    out_of_descriptors_then_recovers("05_uring_multishot", &[], "enters");
}
