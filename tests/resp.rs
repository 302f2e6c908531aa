//! The lessons that speak RESP (07), held to the RESP checks
//! (`uring_echo_tools::resp::CHECKS`); the checks held to the real
//! `redis-server`, so they test Redis's behaviour and not our reading of
//! it; and the real `redis-cli` against the lesson. Tests that need a Redis
//! tool skip, saying how to install it, where it is missing.
#![cfg(target_os = "linux")]

use std::process::Command;
use std::time::Duration;

use uring_echo_tools::lessons::runnable_resp;
use uring_echo_tools::process::{ServerProcess, binary_path, stat, tool_path};
use uring_echo_tools::resp::{self, CHECKS, RedisServer, redis_tool};

const LIMIT: Duration = Duration::from_secs(30);

fn start(name: &str, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    ServerProcess::start(binary_path(name), &args)
        .unwrap_or_else(|e| panic!("{name} did not start: {e}"))
}

#[test]
fn every_resp_lesson_passes_every_resp_check_and_exits_cleanly() {
    for lesson in runnable_resp() {
        let mut server = start(lesson.name, &[]);
        let failures = resp::run_all(server.addr());
        assert!(
            failures.is_empty(),
            "{}:\n{}\n--- its stderr:\n{}",
            lesson.name,
            failures.join("\n"),
            server.stderr()
        );
        server.interrupt().unwrap();
        let status = server.wait_timeout(LIMIT).unwrap();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{}",
            server.stderr()
        );
        let stderr = server.stderr();
        assert!(stat(&stderr, "protocol_errors") >= 5, "{stderr}");
        assert_eq!(stat(&stderr, "stale"), 0, "{stderr}");
    }
}

/// A tiny pool and tiny buffers: every request is cut by buffer ends, the
/// carry is used all the time, and the reserve serves the new client.
#[test]
fn tiny_buffers_change_nothing_a_client_can_see() {
    for lesson in runnable_resp() {
        let mut server = start(
            lesson.name,
            &[
                "--buffers",
                "64",
                "--buffer-size",
                "64",
                "--max-buffers-per-conn",
                "4",
            ],
        );
        let failures = resp::run_all(server.addr());
        assert!(
            failures.is_empty(),
            "{}:\n{}\n--- its stderr:\n{}",
            lesson.name,
            failures.join("\n"),
            server.stderr()
        );
        server.interrupt().unwrap();
        server.wait_timeout(LIMIT).unwrap();
        assert!(
            stat(&server.stderr(), "from_carry") > 0,
            "{}",
            server.stderr()
        );
    }
}

#[test]
fn the_resp_checks_pass_against_redis_server_itself() {
    let redis = match RedisServer::start(&[]) {
        Ok(redis) => redis,
        Err(why) => return eprintln!("skipped: {why}"),
    };
    let failures = resp::run_all(redis.addr);
    assert!(
        failures.is_empty(),
        "the RESP checks must describe Redis: {}",
        failures.join("\n")
    );
    assert!(CHECKS.len() >= 7);
    // And the check exercise 07-strlen adds, for a command Redis has.
    uring_echo_tools::resp_checks::strlen(redis.addr).unwrap();
}

/// The real `redis-cli`: SET, GET, DEL, and SET ... PX then GET after it
/// expired.
#[test]
fn redis_cli_works_against_the_lesson() {
    let cli = match redis_tool("redis-cli") {
        Ok(cli) => cli,
        Err(why) => return eprintln!("skipped: {why}"),
    };
    for lesson in runnable_resp() {
        let server = start(lesson.name, &[]);
        let port = server.addr().port().to_string();
        let run = |args: &[&str]| {
            let out = Command::new(&cli)
                .args(["-h", "127.0.0.1", "-p", &port])
                .args(args)
                .output()
                .expect("redis-cli runs");
            assert!(out.status.success(), "{args:?}: {out:?}");
            String::from_utf8_lossy(&out.stdout).trim_end().to_string()
        };
        assert_eq!(run(&["SET", "greeting", "hello"]), "OK");
        assert_eq!(run(&["GET", "greeting"]), "hello");
        assert_eq!(run(&["DEL", "greeting"]), "1");
        assert_eq!(run(&["GET", "greeting"]), "");
        assert_eq!(run(&["SET", "brief", "soon gone", "PX", "100"]), "OK");
        assert_eq!(run(&["GET", "brief"]), "soon gone");
        // The expiry is the event: there is nothing to wait on but time.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(run(&["GET", "brief"]), "");
        assert_eq!(run(&["PING"]), "PONG");
    }
}

/// `--max-memory`: a write past it gets Redis's OOM error; reads and
/// deletes still work.
#[test]
fn a_full_store_answers_oom() {
    for lesson in runnable_resp() {
        let server = start(lesson.name, &["--max-memory", "4096"]);
        let mut c = resp::Client::connect(server.addr()).unwrap();
        let big = vec![b'v'; 3000];
        assert_eq!(c.call(&[b"SET", b"a", &big]).unwrap(), resp::Value::ok());
        let oom = "OOM command not allowed when used memory > 'maxmemory'.";
        assert_eq!(
            c.call(&[b"SET", b"b", &big]).unwrap(),
            resp::Value::Error(oom.into())
        );
        assert_eq!(c.call(&[b"DEL", b"a"]).unwrap(), resp::Value::Integer(1));
        assert_eq!(c.call(&[b"SET", b"b", &big]).unwrap(), resp::Value::ok());
    }
}

/// The grader grades a RESP server with `--protocol resp`: every RESP check
/// passes against the lesson, and the same command fails (exit 1) against
/// an echo server, which answers a RESP request with the request itself.
#[test]
fn the_grader_grades_a_resp_server_with_protocol_resp() {
    let Some(lesson) = runnable_resp().into_iter().next() else {
        println!("skipped: no RESP lesson can run here");
        return;
    };
    let server = start(lesson.name, &[]);
    let out = Command::new(tool_path("echo-check"))
        .args(["--protocol", "resp", "--json", &server.addr().to_string()])
        .output()
        .expect("echo-check runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for check in CHECKS {
        assert!(text.contains(&format!("\"{}\"", check.name)), "{text}");
    }
    assert!(!text.contains("\"fail\""), "{text}");

    let echo = start("03_epoll", &[]);
    let out = Command::new(tool_path("echo-check"))
        .args(["--protocol", "resp", "--only", "resp_commands"])
        .arg(echo.addr().to_string())
        .output()
        .expect("echo-check runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
