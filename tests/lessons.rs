//! Every lesson on the lesson list, started on port 0 and held to the same
//! basic checks: it echoes small and multi-MiB messages, a peer that resets
//! ends only its own session, a busy port is a clear error, and SIGINT ends the
//! server with status 0 and frees its port.
//!
//! Lessons join these tests by being added to `LESSONS`; nothing here names one
//! except where a test is about a single lesson's own option.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use uring_echo_tools::client::{self, EchoError};
use uring_echo_tools::process::{ServerProcess, binary_path};

/// Generous: a debug build on two busy cores, beside other tests.
const LIMIT: Duration = Duration::from_secs(30);

fn start(name: &str, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    ServerProcess::start(binary_path(name), &args)
        .unwrap_or_else(|e| panic!("{name} did not start: {e}"))
}

/// Runs `check` against a fresh server of every lesson, and reports every
/// lesson that failed, with its stderr, not just the first.
fn for_every_lesson(check: impl Fn(&ServerProcess) -> Result<(), String>) {
    let mut failures = Vec::new();
    for lesson in uring_echo_tools::lessons::runnable() {
        let server = start(lesson.name, &[]);
        if let Err(why) = check(&server) {
            failures.push(format!(
                "{}: {why}\n--- its stderr:\n{}",
                lesson.name,
                server.stderr()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn prints_one_line_with_the_real_port() {
    for_every_lesson(|server| {
        if server.addr().port() == 0 {
            return Err("printed port 0, not the port the kernel picked".into());
        }
        // One exchange, then the stdout line is the only one there is.
        let mut stream = client::connect(server.addr(), LIMIT).map_err(|e| e.to_string())?;
        client::echo_once(&mut stream, 1, 0, 5).map_err(|e| e.to_string())?;
        match server.extra_stdout().as_slice() {
            [] => Ok(()),
            extra => Err(format!(
                "stdout must carry one line only; it also had {extra:?}"
            )),
        }
    });
}

#[test]
fn echoes_small_messages() {
    for_every_lesson(|server| {
        let mut stream = client::connect(server.addr(), LIMIT).map_err(|e| e.to_string())?;
        let mut offset = 0;
        for len in [1usize, 2, 5, 100, 1000, 4095, 4096, 4097] {
            client::echo_once(&mut stream, 2, offset, len).map_err(|e| format!("{len} B: {e}"))?;
            offset += len as u64;
        }
        Ok(())
    });
}

#[test]
fn echoes_multi_mib_while_the_client_reads() {
    // 8 MiB is far more than both sockets' kernel buffers together hold, so a
    // server that does not complete partial writes, or that stops reading
    // while its writes wait, fails here.
    for_every_lesson(|server| {
        let stream = client::connect(server.addr(), LIMIT).map_err(|e| e.to_string())?;
        client::echo_streaming(stream, 3, 8 << 20).map_err(|e| e.to_string())
    });
}

#[test]
fn a_peer_that_resets_ends_only_its_own_session() {
    for_every_lesson(|server| {
        // Send a lot, read none of it, then abort with RST: the server meets
        // ECONNRESET in read or EPIPE in write.
        let victim = client::connect(server.addr(), LIMIT).map_err(|e| e.to_string())?;
        let mut writer = victim.try_clone().map_err(|e| e.to_string())?;
        let payload = uring_echo_tools::pattern::bytes(4, 0, 256 * 1024);
        let _ = std::io::Write::write_all(&mut writer, &payload);
        client::reset(victim).map_err(|e| e.to_string())?;
        drop(writer);

        // The next client is served as if nothing had happened.
        let mut healthy = client::connect(server.addr(), LIMIT).map_err(|e| e.to_string())?;
        client::echo_once(&mut healthy, 5, 0, 10_000).map_err(|e| format!("after a reset: {e}"))
    });
}

#[test]
fn a_port_in_use_is_a_clear_error_not_a_panic() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for lesson in uring_echo_tools::lessons::runnable() {
        let out = Command::new(binary_path(lesson.name))
            .args(["--addr", &addr])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{}: exit status {}",
            lesson.name,
            out.status
        );
        assert!(
            out.stdout.is_empty(),
            "{}: printed {:?}",
            lesson.name,
            out.stdout
        );
        assert!(
            stderr.contains("in use") && stderr.lines().count() == 1,
            "{}: one clear line expected, got {stderr:?}",
            lesson.name
        );
        assert!(!stderr.contains("panicked"), "{}: {stderr}", lesson.name);
    }
}

#[test]
fn serves_ipv6_when_the_machine_has_it() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: this machine has no IPv6 loopback ([::1])");
        return;
    }
    for lesson in uring_echo_tools::lessons::runnable() {
        let server = ServerProcess::start(binary_path(lesson.name), &["--addr", "[::1]:0"])
            .unwrap_or_else(|e| panic!("{}: {e}", lesson.name));
        assert!(
            server.addr().is_ipv6(),
            "{}: printed {}",
            lesson.name,
            server.addr()
        );
        let mut stream = client::connect(server.addr(), LIMIT).unwrap();
        client::echo_once(&mut stream, 6, 0, 1000).unwrap();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn sigint_closes_connections_exits_zero_and_frees_the_port() {
    for_every_lesson(|server| {
        // A client in the middle of its session.
        let mut stream = client::connect(server.addr(), LIMIT).map_err(|e| e.to_string())?;
        client::echo_once(&mut stream, 7, 0, 100).map_err(|e| e.to_string())?;

        server.interrupt().map_err(|e| e.to_string())?;
        // The client sees its connection end: EOF (or a reset).
        let mut byte = [0u8; 1];
        loop {
            match stream.read(&mut byte) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err("the server sent bytes nobody asked for".into()),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                // A signal reached this test process mid-read (seen once in
                // CI): not an answer from the server, so read again.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(format!("the connection was not closed after SIGINT: {e}"));
                }
            }
        }
    });
}

#[cfg(target_os = "linux")]
#[test]
fn after_sigint_the_exit_status_is_zero_and_the_port_is_free() {
    for lesson in uring_echo_tools::lessons::runnable() {
        let mut server = start(lesson.name, &[]);
        let addr: SocketAddr = server.addr();
        let mut stream = client::connect(addr, LIMIT).unwrap();
        client::echo_once(&mut stream, 8, 0, 100).unwrap();
        server.terminate().unwrap();
        let status = server
            .wait_timeout(LIMIT)
            .unwrap()
            .unwrap_or_else(|| panic!("{} still running after SIGTERM", lesson.name));
        assert!(status.success(), "{}: exit status {status}", lesson.name);
        assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
        // The same port, bound again at once (with SO_REUSEADDR, as every
        // lesson binds): a restart would work.
        uring_echo_book::listen::bind_listener(addr)
            .unwrap_or_else(|e| panic!("{}: port {addr} not free after exit: {e}", lesson.name));
        drop(stream);
    }
}

/// While one client is connected, a second one gets no echo: the claim that
/// motivates lesson 02, tested. Waiting 500 ms proves nothing about speed; it
/// only gives a server that *could* answer ample time to do so.
fn second_client_waits_for_the_first(server: &ServerProcess) {
    let mut first = client::connect(server.addr(), LIMIT).unwrap();
    client::echo_once(&mut first, 9, 0, 100).unwrap();

    let mut second = client::connect(server.addr(), Duration::from_millis(500)).unwrap();
    match client::echo_once(&mut second, 10, 0, 100) {
        Err(EchoError::Timeout { .. }) => {}
        other => panic!("the second client should wait while the first is served, got {other:?}"),
    }
    // When the first client leaves, the second one is served, and none of
    // the bytes it sent while waiting is lost.
    drop(first);
    second.set_read_timeout(Some(LIMIT)).unwrap();
    client::read_expected(&mut second, 10, 0, 100).unwrap();
}

#[test]
fn blocking_serves_one_client_at_a_time() {
    second_client_waits_for_the_first(&start("01_blocking", &[]));
}

#[test]
fn threads_capped_at_one_behave_like_blocking() {
    second_client_waits_for_the_first(&start("02_threads", &["--max-threads", "1"]));
}

#[test]
fn threads_serve_clients_at_the_same_time() {
    let server = start("02_threads", &["--max-threads", "2"]);
    let mut first = client::connect(server.addr(), LIMIT).unwrap();
    client::echo_once(&mut first, 11, 0, 100).unwrap();
    let mut second = client::connect(server.addr(), LIMIT).unwrap();
    client::echo_once(&mut second, 12, 0, 100).unwrap();
}
