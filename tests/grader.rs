//! Every lesson held to the whole grader, with its expectations; and the
//! grader held to its own promises: a broken server fails the right check,
//! and `echo-check`'s exit codes and JSON are what the guide says.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::thread;

use uring_echo_tools::grader::{self, CHECKS, Check, Verdict};
use uring_echo_tools::process::{ServerProcess, binary_path, tool_path};

fn all_checks() -> Vec<&'static Check> {
    CHECKS.iter().collect()
}

#[test]
fn every_lesson_passes_every_check_its_design_allows_and_fails_the_others() {
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    // All lessons at once: a slow expected failure of one does not hold up the rest.
    let graders: Vec<_> = uring_echo_tools::lessons::runnable()
        .into_iter()
        .map(|lesson| {
            thread::spawn(move || {
                let server =
                    ServerProcess::start(binary_path(lesson.name), &["--addr", "127.0.0.1:0"])
                        .unwrap_or_else(|e| panic!("{} did not start: {e}", lesson.name));
                let report = grader::grade(
                    server.addr(),
                    lesson.name,
                    &all_checks(),
                    Some(lesson),
                    |_| {},
                );
                (lesson, report, server.stderr())
            })
        })
        .collect();

    let mut problems = Vec::new();
    for grading in graders {
        let (lesson, report, stderr) = grading.join().expect("a grading thread panicked");
        for c in &report.checks {
            let expected = lesson.expected_failure(c.name).is_some();
            let wanted = if expected {
                Verdict::ExpectedFail
            } else {
                Verdict::Pass
            };
            if c.result != wanted {
                problems.push(format!(
                    "{} / {}: {:?} instead of {wanted:?}: {}",
                    lesson.name, c.name, c.result, c.detail
                ));
            }
        }
        assert_eq!(
            report.checks.len(),
            CHECKS.len(),
            "{}: every check ran",
            lesson.name
        );
        if !problems.is_empty() {
            problems.push(format!(
                "--- {}'s stderr (last lines):\n{}",
                lesson.name,
                tail(&stderr)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn tail(text: &str) -> String {
    let lines: Vec<_> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[test]
fn the_expectations_table_names_only_real_checks() {
    for lesson in uring_echo_tools::lessons::runnable() {
        for e in lesson.expected_failures {
            assert!(
                grader::check(e.check).is_some(),
                "{}: no check `{}`",
                lesson.name,
                e.check
            );
            assert!(!e.why.is_empty());
        }
    }
    let mut names: Vec<_> = CHECKS.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), CHECKS.len(), "check names are unique");
}

/// The classic bug (also in `examples/partial_write_bug.rs`, for trying by
/// hand): write once and forget whatever the kernel did not take. It passes
/// a quick `nc` test and loses bytes as soon as a peer is slow to read. It
/// runs inside the test process so `cargo test --test grader` needs no
/// example built.
fn broken_server_that_ignores_partial_writes() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    let _ = stream.set_nonblocking(true);
                    let _ = stream.write(&buf[..n]);
                    let _ = stream.set_nonblocking(false);
                }
            });
        }
    });
    addr
}

#[test]
fn a_server_that_drops_partial_writes_fails_stalled_and_says_where() {
    let addr = broken_server_that_ignores_partial_writes();
    let stalled = grader::check("stalled").unwrap();
    let report = grader::grade(addr, "broken", &[stalled], None, |_| {});
    let result = &report.checks[0];
    assert_eq!(result.result, Verdict::Fail, "{}", result.detail);
    // Where the loss shows depends on which writes came up short: in the
    // middle of the stream, a later byte arrives where a lost one should
    // be; at its end, the missing bytes never arrive. Either way the detail
    // says at which byte.
    assert!(
        result.detail.contains("was sent there")
            || (result.detail.contains("no reply") && result.detail.contains("bytes came back")),
        "the failure names the first wrong or missing byte: {}",
        result.detail
    );
    assert!(result.hint.as_deref().unwrap().contains("unsent bytes"));
    assert!(!report.ok);
}

/// The opposite mistake: never lose a byte, but never stop reading either.
/// A reader thread takes everything the client sends and hands it to a
/// writer thread through an unbounded channel, so a client that does not
/// read makes the server hold all it sends.
fn broken_server_without_backpressure() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut reader) = stream else { continue };
            let Ok(mut writer) = reader.try_clone() else {
                continue;
            };
            let (queue, queued) = std::sync::mpsc::channel::<Vec<u8>>();
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = reader.read(&mut buf) {
                    if queue.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            });
            thread::spawn(move || {
                for chunk in queued {
                    if writer.write_all(&chunk).is_err() {
                        return;
                    }
                }
                let _ = writer.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn a_server_that_buffers_without_limit_fails_stalled() {
    let addr = broken_server_without_backpressure();
    let stalled = grader::check("stalled").unwrap();
    let report = grader::grade(addr, "unbounded", &[stalled], None, |_| {});
    let result = &report.checks[0];
    assert_eq!(result.result, Verdict::Fail, "{}", result.detail);
    assert!(
        result.detail.contains("stop reading from a peer"),
        "the failure names the missing backpressure: {}",
        result.detail
    );
}

/// `stalled_many` holds a shared resource to account: peers that do not
/// read must not take all of it. Lesson 02 with `--max-threads N` has such
/// a resource, a pool of N threads, and a peer that does not read keeps
/// its thread blocked in `write`. So N - 1 stuck peers leave a thread for
/// the next client, and N take them all: the check passes the first and
/// fails the second, saying the other client was not served.
#[test]
fn stalled_many_fails_a_pool_that_stuck_peers_take_whole() {
    const THREADS: usize = 4;
    let cap = THREADS.to_string();
    let server = ServerProcess::start(
        binary_path("02_threads"),
        &["--addr", "127.0.0.1:0", "--max-threads", &cap],
    )
    .unwrap();
    let bytes = grader::checks::STALLED_MANY_BYTES;

    let summary = grader::checks::stalled_many_with(server.addr(), THREADS - 1, bytes)
        .unwrap_or_else(|e| panic!("{} stuck peers, {THREADS} threads: {e}", THREADS - 1));
    assert!(summary.contains("another client served in"), "{summary}");

    let why = grader::checks::stalled_many_with(server.addr(), THREADS, bytes)
        .expect_err("every thread was taken by a peer that does not read");
    assert!(
        why.contains("another client was not served") && why.contains("no reply"),
        "the failure says the other client got no echo: {why}"
    );
}

fn echo_check(args: &[&str]) -> std::process::Output {
    Command::new(tool_path("echo-check"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn echo_check_exit_codes_and_json() {
    let server =
        ServerProcess::start(binary_path("02_threads"), &["--addr", "127.0.0.1:0"]).unwrap();
    let addr = server.addr().to_string();

    let out = echo_check(&["--json", "--only", "basic,pipelined", &addr]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema"], "echo-check");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["ok"], true);
    let checks = doc["servers"][0]["checks"].as_array().unwrap();
    let names: Vec<_> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["basic", "pipelined"]);
    assert!(checks.iter().all(|c| c["result"] == "pass"));
    // Exactly the fields chapters/grading.md documents for schema version 1.
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&doc), ["ok", "schema", "servers", "version"]);
    assert_eq!(
        keys(&doc["servers"][0]),
        ["addr", "checks", "expect", "ok", "reachable"]
    );
    assert_eq!(
        keys(&checks[0]),
        ["detail", "hint", "name", "result", "seconds"]
    );

    // A check that fails unexpectedly: exit 1.
    let broken = broken_server_that_ignores_partial_writes();
    let out = echo_check(&["--only", "stalled", &broken.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("stalled failed") && table.contains("look at"),
        "{table}"
    );

    // Bad usage and an address that never answers: exit 2.
    assert_eq!(
        echo_check(&["--only", "no_such_check", &addr])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        echo_check(&["--expect", "99_nothing", &addr]).status.code(),
        Some(2)
    );
    assert_eq!(echo_check(&[]).status.code(), Some(2));
    let nobody = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let out = echo_check(&["--json", &nobody]);
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["servers"][0]["reachable"], false);
}
