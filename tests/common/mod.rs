//! What the fault tests share. The fault suite holds every lesson on the
//! lesson list to longer and meaner tests than the grader's, each case
//! catching a kind of bug the grader's short, polite checks let through,
//! one file per concern:
//!
//! - `tests/soak/`: hundreds of clients at once with random sizes (1 B to
//!   1 MiB), random pipelining, half-closes, resets and slow readers, every
//!   byte checked; then the server's descriptors must return exactly to
//!   where they were, and its memory must not climb from round to round.
//!   Its `soak` test (ignored by default) is the long run of every case.
//! - `tests/signals.rs`: SIGINT while 128 clients are streaming; the
//!   server exits at once, with status 0, and its port is free again.
//! - `tests/privileges.rs`: the io_uring lessons run as `nobody` under a
//!   small locked-memory limit, and just below the least they need: they
//!   serve or say why in one line.
//! - `tests/many_connections.rs`: 10,000 clients held open at once, each
//!   answered, then all gone and every descriptor back.
//!
//! This module holds what more than one of them uses: starting a lesson,
//! the descriptor count, and the two cases the long soak runs again
//! ([`sigint`], [`many`]).
//!
//! What other files test already is not repeated: running out of descriptors
//! (`tests/out_of_descriptors.rs`), io_uring forbidden by seccomp
//! (`tests/uring.rs`), an empty buffer ring (`tests/multishot.rs`).
//! Lessons are read from `lessons::runnable()`, never named here, and what a
//! lesson's design cannot do is read from its expectations table.

// Each test file is a crate of its own that compiles this whole module and
// uses a part of it; what one of them leaves unused, another uses.
#![allow(dead_code)]

pub mod many;
pub mod sigint;

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use uring_echo_tools::lessons::Lesson;
use uring_echo_tools::process::{ServerProcess, binary_path};

/// The longest any one read, write or wait may take before a test calls the
/// server stuck. Generous: a debug build on two busy cores answers in
/// milliseconds.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Starts `lesson` on a free port.
pub fn start(lesson: &Lesson) -> Result<ServerProcess, String> {
    ServerProcess::start(binary_path(lesson.name), &["--addr", "127.0.0.1:0"])
        .map_err(|e| format!("did not start: {e}"))
}

/// The last lines of a server's stderr, for a failure message.
pub fn tail(server: &ServerProcess) -> String {
    let text = server.stderr();
    let lines: Vec<_> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

// ANCHOR: fds
/// The descriptors `pid` has open, one entry of `/proc/PID/fd` each, as
/// what they point to (`socket:[1234]`, `anon_inode:[io_uring]`, ...).
pub fn open_fds(pid: u32) -> Vec<String> {
    let dir = format!("/proc/{pid}/fd");
    let mut fds: Vec<String> = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    fs::read_link(e.path())
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|_| "?".into())
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    fds
}

/// How long a server may take to close its last connection after the
/// client has gone. A leak never settles, so the bound need only be finite,
/// and a long one costs time only when the test fails anyway: as long as
/// any other wait, for after 10,000 resets lesson 02's 10,000 threads must
/// each get a core to close their socket, on a machine that may be busy.
pub const FD_SETTLE: Duration = LIMIT;

/// Waits until `pid` has exactly `baseline` descriptors open again.
///
/// A server closes a connection's socket some time after the client has
/// gone: when it has read the FIN or met the reset, which a busy event loop
/// or thread gets to when it gets to it. It tells nobody, so there is no
/// event to wait for: this looks every 10 ms, for at most `FD_SETTLE`. A
/// leak never settles, and the message lists what is still open.
pub fn settle_fds(pid: u32, baseline: usize) -> Result<(), String> {
    let deadline = Instant::now() + FD_SETTLE;
    loop {
        let fds = open_fds(pid);
        if fds.len() == baseline {
            return Ok(());
        }
        if fds.len() < baseline || Instant::now() >= deadline {
            return Err(format!(
                "{} descriptors open {} s after the last client left, {baseline} before \
                 the clients came: {fds:?}",
                fds.len(),
                FD_SETTLE.as_secs()
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}
// ANCHOR_END: fds
