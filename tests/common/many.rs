//! 10,000 connections at once, for `tests/many_connections.rs` and the
//! long soak (`tests/soak/`).

use std::io::Write;
use std::time::Instant;

use uring_echo_tools::client;
use uring_echo_tools::lessons::Lesson;
use uring_echo_tools::pattern;

use super::{LIMIT, open_fds, settle_fds, start, tail};

// ANCHOR: ten_thousand
pub const MANY: usize = 10_000;

/// 10,000 clients connected at once; each sends 8 bytes and must get them
/// back while all the others stay connected; then they all reset, and the
/// server's descriptors must return to where they were.
pub fn ten_thousand(lesson: &Lesson) -> Result<String, String> {
    let mut server = start(lesson)?;
    let (addr, pid) = (server.addr(), server.pid());
    let baseline = open_fds(pid).len();
    let started = Instant::now();
    let mut streams = Vec::with_capacity(MANY);
    for i in 0..MANY {
        streams.push(
            client::connect(addr, LIMIT)
                .map_err(|e| format!("connection {i} of {MANY}: {e}\n{}", tail(&server)))?,
        );
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        stream
            .write_all(&pattern::bytes(i as u64, 0, 8))
            .map_err(|e| format!("connection {i}: {e}"))?;
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        client::read_expected(stream, i as u64, 0, 8)
            .map_err(|e| format!("connection {i} of {MANY} held open: {e}\n{}", tail(&server)))?;
    }
    let served = started.elapsed();
    // Resets, not FINs: 10,000 client sockets in TIME_WAIT would hold as
    // many ports for a minute, which the rest of the suite needs.
    for stream in streams {
        client::reset(stream).map_err(|e| e.to_string())?;
    }
    settle_fds(pid, baseline).map_err(|e| format!("after 10,000 resets: {e}"))?;
    server.interrupt().map_err(|e| e.to_string())?;
    let status = server.wait_timeout(LIMIT).map_err(|e| e.to_string())?;
    if !status.is_some_and(|s| s.success()) {
        return Err(format!("SIGINT: {status:?}\n{}", tail(&server)));
    }
    Ok(format!(
        "{MANY} connections served in {:.1} s, descriptors back to {baseline}",
        served.as_secs_f64()
    ))
}

/// Whether this process, and a server it starts, may hold 10,000 sockets.
pub fn enough_descriptors() -> Result<(), String> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).map_err(|e| e.to_string())?;
    let wanted = MANY as u64 + 200;
    if hard < wanted {
        return Err(format!(
            "the open-file hard limit is {hard}, below the {wanted} needed (`ulimit -Hn`)"
        ));
    }
    rlimit::increase_nofile_limit(wanted)
        .map(drop)
        .map_err(|e| e.to_string())
}

// ANCHOR_END: ten_thousand
