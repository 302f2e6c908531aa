//! Checks that only exercises ask for.
//!
//! The checks in [`super::CHECKS`] hold any echo server to the same
//! behaviour. The checks here test a feature an exercise adds, so they assume
//! the server was started with that feature's option set to a known value
//! (`echo-check --exercise` starts it that way). They never run by default;
//! name them with `--only` to run them against a server of your own.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::checks::{Check, REPLY_TIMEOUT};
use crate::client;

/// `idle_timeout` expects the server to run with `--idle-timeout 1`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// `connection_cap` expects the server to run with `--max-conns 4`.
pub const MAX_CONNS: usize = 4;

/// How long after the idle timeout a quiet connection may stay open: room
/// for a server that sweeps its connections once a second, and for a debug
/// build on a busy machine.
const CLOSE_SLACK: Duration = Duration::from_secs(5);

// ANCHOR: exercise_checks
/// The checks exercises add, run only when named.
pub const EXERCISE_CHECKS: &[Check] = &[
    Check {
        name: "idle_timeout",
        what: "(server started with --idle-timeout 1) a client that talks every 250 ms \
               stays connected for 3 s; once it falls silent, and a client that never \
               sends, are each closed about 1 to 6 s later (not before 0.8 s)",
        hint: "a connection's silence starts at the last byte it sent you; once it has \
               lasted the timeout, close that connection, and only that one",
        limit: Duration::from_secs(40),
        run: idle_timeout,
    },
    Check {
        name: "connection_cap",
        what: "(server started with --max-conns 4) four clients are served; a fifth is \
               closed at once; once one of the four resets its connection, and again once \
               one hangs up, a new client is served; with four open again, the next ones \
               are closed too",
        hint: "count open connections: one more at accept, one fewer when a connection \
               ends however it ends; over the cap, close the new connection at once",
        limit: Duration::from_secs(40),
        run: connection_cap,
    },
    Check {
        name: "resp_split",
        what: "(a RESP server, chapter 07) a pipeline of SETs and GETs of 20 KB values, \
               written in pieces of 1 to 700 bytes, gets every reply, in order, as whole",
        hint: "a request cut by a buffer's end must parse the same as a whole one: look \
               at what the server keeps of a cut request, and where it resumes",
        limit: Duration::from_secs(40),
        run: resp_split,
    },
    Check {
        name: "resp_strlen",
        what: "(a RESP server, chapter 07) STRLEN answers :11 for a value of 11 bytes, :0 \
               for a missing key, and Redis's error for a wrong number of arguments",
        hint: "STRLEN key: the length of the value, 0 if the key is not there",
        limit: Duration::from_secs(30),
        run: resp_strlen,
    },
];
// ANCHOR_END: exercise_checks

fn resp_split(addr: SocketAddr) -> Result<String, String> {
    crate::resp_checks::split(addr).map(|()| "12 SETs and 12 GETs of 20 KB, cut anywhere".into())
}

fn resp_strlen(addr: SocketAddr) -> Result<String, String> {
    crate::resp_checks::strlen(addr).map(|()| "STRLEN of a value, a missing key, no key".into())
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    client::connect(addr, REPLY_TIMEOUT).map_err(|e| e.to_string())
}

/// Waits for the server to close `stream` (end of file or a reset) and
/// returns how long that took. Anything the server sends instead is an error.
fn wait_for_close(stream: &mut TcpStream, limit: Duration) -> Result<Duration, String> {
    stream
        .set_read_timeout(Some(limit))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = loop {
        match stream.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    match read {
        Ok(0) => Ok(started.elapsed()),
        Ok(n) => Err(format!(
            "the server sent {n} unexpected bytes instead of closing"
        )),
        Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset) => Ok(started.elapsed()),
        Err(e) if client::is_timeout(&e) => Err(format!(
            "still open {} s later",
            limit.as_secs_f64().round() as u64
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn idle_timeout(addr: SocketAddr) -> Result<String, String> {
    // A client that talks more often than the timeout must not be cut off,
    // however long it stays: the timeout is about silence, not age.
    let mut talker = connect(addr)?;
    let started = Instant::now();
    let mut offset = 0;
    loop {
        client::echo_once(&mut talker, 30, offset, 16).map_err(|e| {
            format!(
                "a client sending every 250 ms, {:.1} s after it connected (never quiet \
                 for as long as the 1 s timeout): {e}",
                started.elapsed().as_secs_f64()
            )
        })?;
        offset += 16;
        if started.elapsed() >= 3 * IDLE_TIMEOUT {
            break;
        }
        // Pacing, not synchronisation: this client is meant to be slow.
        thread::sleep(Duration::from_millis(250));
    }
    let stayed = started.elapsed();

    // Now it falls silent: the server must close it, not too early.
    let quiet = wait_for_close(&mut talker, IDLE_TIMEOUT + CLOSE_SLACK)
        .map_err(|e| format!("a client that fell silent after talking: {e}"))?;
    if quiet < IDLE_TIMEOUT.mul_f64(0.8) {
        return Err(format!(
            "a client that fell silent was closed after {} ms, before the 1 s timeout",
            quiet.as_millis()
        ));
    }

    // A client that never sends anything at all is closed too.
    let mut silent = connect(addr)?;
    let never = wait_for_close(&mut silent, IDLE_TIMEOUT + CLOSE_SLACK)
        .map_err(|e| format!("a client that connected and sent nothing: {e}"))?;
    if never < IDLE_TIMEOUT.mul_f64(0.8) {
        return Err(format!(
            "a client that sent nothing was closed after {} ms, before the 1 s timeout",
            never.as_millis()
        ));
    }
    Ok(format!(
        "a talking client stayed {:.1} s; silent ones were closed after {} ms and {} ms",
        stayed.as_secs_f64(),
        quiet.as_millis(),
        never.as_millis()
    ))
}

fn connection_cap(addr: SocketAddr) -> Result<String, String> {
    let mut held = Vec::new();
    // Connections closed just before this check (the grader's own) may
    // still count for a moment, until the server notices their end: each of
    // the four may take a few tries.
    for i in 0..MAX_CONNS {
        let (_, stream) = served_again(
            addr,
            &format!(
                "connection {} of {MAX_CONNS} (only {i} were open, under the cap: is the \
                 server refusing at the cap, or one before it?)",
                i + 1
            ),
        )?;
        held.push(stream);
    }
    let closed = refused(addr, "while four were open")?;

    // The connections under the cap are still served.
    for (i, stream) in held.iter_mut().enumerate() {
        client::echo_once(stream, 40 + i as u64, 32, 32).map_err(|e| {
            format!(
                "connection {} after one over the cap was turned away: {e}",
                i + 1
            )
        })?;
    }

    // One ends with a reset (an error for the server, ECONNRESET), so there
    // must be room again; the newcomer is kept. Then one hangs up cleanly,
    // and again there must be room.
    let victim = held.pop().expect("four are held");
    client::reset(victim).map_err(|e| format!("could not reset a connection: {e}"))?;
    let (after_reset, newcomer) = served_again(
        addr,
        &format!("after one of the {MAX_CONNS} clients reset its connection, a new client"),
    )?;
    held.push(newcomer);
    drop(held.pop());
    let (after_close, newcomer) = served_again(
        addr,
        &format!("after one of the {MAX_CONNS} clients hung up, a new client"),
    )?;
    held.push(newcomer);

    // Four open again, so the cap must hold again, twice: a count that
    // drifts (one too few taken back, one too many given back) lets one in.
    refused(
        addr,
        "after the reset and the hang-up, with four open again",
    )?;
    refused(addr, "once more, with four open")?;
    Ok(format!(
        "{MAX_CONNS} served, one more closed after {} ms, room again {} ms after a reset \
         and {} ms after a hang-up",
        closed.as_millis(),
        after_reset.as_millis(),
        after_close.as_millis()
    ))
}

/// A client connecting over the cap must be closed, neither served nor left
/// hanging; returns how long the close took. The kernel completes the
/// handshake before the server sees the connection, so the client connects.
fn refused(addr: SocketAddr, when: &str) -> Result<Duration, String> {
    let mut over = connect(addr)?;
    // The write may fail if the server already reset the connection: fine.
    let _ = over.write_all(b"one too many\n");
    wait_for_close(&mut over, CLOSE_SLACK).map_err(|e| {
        format!(
            "a connection over the cap, {when}: {e} (with --max-conns {MAX_CONNS} it must be \
             closed at once, so the client knows)"
        )
    })
}

/// A new client (`who`) must be served while the cap has room. When room
/// was just made by a connection that ended, the server learns of the end a
/// moment later, and nothing tells the client when; so it tries again every
/// 50 ms, up to 5 s.
fn served_again(addr: SocketAddr, who: &str) -> Result<(Duration, TcpStream), String> {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = connect(addr).and_then(|mut s| {
            client::echo_once(&mut s, 50 + attempts, 0, 32)
                .map(|()| s)
                .map_err(|e| e.to_string())
        });
        match outcome {
            Ok(stream) => return Ok((started.elapsed(), stream)),
            Err(e) if started.elapsed() > CLOSE_SLACK => {
                return Err(format!(
                    "{who} was still not served {} s later ({attempts} attempts; last: {e}): \
                     is the count decremented however a connection ends?",
                    CLOSE_SLACK.as_secs()
                ));
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}
