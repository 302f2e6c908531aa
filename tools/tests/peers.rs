//! The peers the lessons are compared with, held to every grader check: a
//! benchmark against a peer that fails one would compare a correct server
//! with a broken one. A check a peer's design cannot pass is in its
//! expectations table (`PEERS` in `tools/src/lessons.rs`) with the reason,
//! and asserted to fail, as for the lessons; every other check must pass.
//! The peers also keep the servers' conventions: SIGINT and SIGTERM end
//! them with status 0, and one that needs io_uring says so in one line
//! where io_uring is forbidden.
//!
//! The tools' own tests grade only the tools' own servers, never a lesson:
//! Cargo builds this package's binaries before these tests run, and it
//! builds no lesson for them, so a lesson here could be a stale one
//! (`cargo test -p uring-echo-tools`). Being an integration test, this file
//! also makes `cargo test` from the repository root build the tools'
//! binaries (`echo-check`, `echo-bench`, the peers), which the lessons'
//! tests run through `process::tool_path`.

use std::thread;

use uring_echo_tools::grader::{self, CHECKS, Verdict};
use uring_echo_tools::lessons::{self, Expectations};
use uring_echo_tools::process::{ServerProcess, tool_path};

#[test]
fn every_peer_passes_every_check_its_table_does_not_list() {
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    let checks: Vec<_> = CHECKS.iter().collect();
    // All peers at once, as the lessons are graded: the slow expected
    // failures of one do not hold up the rest.
    let graders: Vec<_> = lessons::runnable_peers()
        .into_iter()
        .map(|peer| {
            let checks = checks.clone();
            thread::spawn(move || {
                let server = ServerProcess::start(tool_path(peer.name), &["--addr", "127.0.0.1:0"])
                    .unwrap_or_else(|e| panic!("{} did not start: {e}", peer.name));
                let report = grader::grade(server.addr(), peer.name, &checks, Some(peer), |_| {});
                (peer, report, server.stderr(), server.extra_stdout())
            })
        })
        .collect();

    let mut problems = Vec::new();
    for grading in graders {
        let (peer, report, stderr, extra_stdout) =
            grading.join().expect("a grading thread panicked");
        let before = problems.len();
        for c in &report.checks {
            let wanted = match peer.expected_failure(c.name) {
                None => Verdict::Pass,
                Some(e) if e.always => Verdict::ExpectedFail,
                // Fails in some runs only: either outcome is right.
                Some(_) if c.result == Verdict::Pass => Verdict::Pass,
                Some(_) => Verdict::ExpectedFail,
            };
            if c.result != wanted {
                problems.push(format!(
                    "{} / {}: {:?} instead of {wanted:?}: {}",
                    peer.name, c.name, c.result, c.detail
                ));
            }
        }
        assert_eq!(
            report.checks.len(),
            CHECKS.len(),
            "{}: every check ran",
            peer.name
        );
        if !extra_stdout.is_empty() {
            problems.push(format!(
                "{}: stdout carries one line only, it also had {extra_stdout:?}",
                peer.name
            ));
        }
        if problems.len() > before {
            let lines: Vec<_> = stderr.lines().collect();
            problems.push(format!(
                "--- {}'s stderr (last lines):\n{}",
                peer.name,
                lines[lines.len().saturating_sub(20)..].join("\n")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_peers_expectations_name_only_real_checks() {
    for peer in uring_echo_tools::PEERS {
        for e in peer.expected_failures() {
            assert!(
                grader::check(e.check).is_some(),
                "{}: no check `{}`",
                peer.name,
                e.check
            );
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io::{Read, Write};
    use std::process::Command;
    use std::time::Duration;

    use uring_echo_tools::client;
    use uring_echo_tools::lessons;
    use uring_echo_tools::process::{ServerProcess, deny_io_uring, tool_path};

    const LIMIT: Duration = Duration::from_secs(30);

    #[test]
    fn sigint_and_sigterm_end_each_peer_with_status_0() {
        for peer in lessons::runnable_peers() {
            for (signal, send) in [
                (
                    "SIGINT",
                    ServerProcess::interrupt as fn(&ServerProcess) -> _,
                ),
                ("SIGTERM", ServerProcess::terminate),
            ] {
                let mut server =
                    ServerProcess::start(tool_path(peer.name), &["--addr", "127.0.0.1:0"])
                        .unwrap_or_else(|e| panic!("{} did not start: {e}", peer.name));
                // A client mid-conversation: its connection must end too.
                let mut stream = client::connect(server.addr(), LIMIT).unwrap();
                stream.set_read_timeout(Some(LIMIT)).unwrap();
                stream.write_all(b"ping").unwrap();
                let mut reply = [0u8; 4];
                stream.read_exact(&mut reply).unwrap();
                assert_eq!(&reply, b"ping", "{}", peer.name);

                send(&server).unwrap();
                let status = server.wait_timeout(LIMIT).unwrap();
                assert!(
                    status.is_some_and(|s| s.success()),
                    "{} after {signal}: {status:?}\n{}",
                    peer.name,
                    server.stderr()
                );
                // EOF or a reset: either way, nothing more and no hang.
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
                assert!(rest.is_empty(), "{}: bytes after the echo", peer.name);
            }
        }
    }

    #[test]
    fn without_io_uring_each_uring_peer_says_so_in_one_line() {
        for peer in uring_echo_tools::PEERS.iter().filter(|p| p.needs_io_uring) {
            let mut command = Command::new(tool_path(peer.name));
            command.args(["--addr", "127.0.0.1:0"]);
            deny_io_uring(&mut command);
            let out = command.output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{}: {stderr}", peer.name);
            assert!(
                out.stdout.is_empty(),
                "{}: it must not claim to listen",
                peer.name
            );
            assert_eq!(
                stderr.lines().count(),
                1,
                "{}: one line, got {stderr:?}",
                peer.name
            );
            assert!(
                stderr.contains("io_uring is not permitted here") && stderr.contains("seccomp"),
                "{}: the line says what and what to do: {stderr:?}",
                peer.name
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}
