//! Exercise 02-lock-across-read, the reference solution.
//!
//! The starter took the statistics lock at the top of `serve` and kept the
//! guard for the whole connection. A `MutexGuard` holds the lock until it is
//! dropped, and a guard in a local variable is dropped when the function
//! returns: when the client hangs up. So the first client's thread held the
//! lock while it slept in `read`, and every other connection thread slept in
//! `lock`, its client's bytes unread. A thread per connection, serving one
//! connection at a time.
//!
//! The fix is to hold the lock only while the counts change: a few
//! nanoseconds per echo, never across a system call that may block. (An
//! `AtomicU64` per count would need no lock at all; a `Mutex` is what you
//! reach for when the statistics are a struct whose fields change together.)
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 02-lock-across-read --solution
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;
use uring_echo_book::limits::raise_open_file_limit_or_warn;
use uring_echo_book::listen::{announce, bind_or_explain};
use uring_echo_book::signals::exit_on_signal;

/// Lesson 02's thread-per-connection echo server, with statistics, the bug fixed.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

/// What every connection thread adds to: one copy for the whole server.
#[derive(Default)]
struct Stats {
    /// Connections that have ended, however they ended.
    connections: u64,
    /// Bytes echoed, over every connection.
    bytes: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    raise_open_file_limit_or_warn();
    if let Err(e) = exit_on_signal() {
        eprintln!("error: cannot install the SIGINT/SIGTERM handler: {e}");
        return ExitCode::FAILURE;
    }
    // `bind_listener` does what lesson 01 spells out: socket, SO_REUSEADDR,
    // TCP_NODELAY, bind, listen.
    let listener = match bind_or_explain(args.common.addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => announce(addr),
        Err(e) => {
            eprintln!("error: cannot read the listening address: {e}");
            return ExitCode::FAILURE;
        }
    }
    // The statistics outlive every connection thread, and each thread needs
    // its own handle on them: an `Arc` shares them, the `Mutex` lets one
    // thread at a time change them.
    let stats = Arc::new(Mutex::new(Stats::default()));
    accept_loop(&listener, &stats);
    ExitCode::SUCCESS
}

/// Accepts clients forever and hands each one to a thread of its own, as in
/// lesson 02 (without its `--max-threads` cap).
fn accept_loop(listener: &TcpListener, stats: &Arc<Mutex<Stats>>) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let stats = Arc::clone(stats);
                // `Builder::spawn` returns an error where `thread::spawn`
                // would panic; dropping the closure then closes this one
                // socket and nothing else.
                let spawned = thread::Builder::new().spawn(move || {
                    let result = serve(stream, &stats);
                    finish(peer, result, &stats);
                });
                if let Err(e) = spawned {
                    eprintln!("{peer}: cannot start a thread ({e}); closing this connection");
                }
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
}

// ANCHOR: solution
/// Echoes one client's bytes back until it closes its side, adding what it
/// echoes to the server's statistics.
fn serve(mut stream: TcpStream, stats: &Mutex<Stats>) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        // No lock here: `read` may wait for this client for hours, and a
        // lock held while it waits stops every other connection thread at
        // its own `lock`.
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Nor here: `write_all` waits as long as this client does not read.
        stream.write_all(&buf[..n])?;
        // The lock for one addition. The guard is a temporary of this
        // statement, dropped at its `;`, so the lock is held for this line
        // only. (A poisoned lock only means another thread panicked while
        // holding it; the counts are still usable, so carry on with them.)
        stats.lock().unwrap_or_else(|p| p.into_inner()).bytes += n as u64;
    }
}
// ANCHOR_END: solution

/// Counts a connection that ended, and says how it ended and where the
/// server's totals stand.
fn finish(peer: SocketAddr, result: io::Result<()>, stats: &Mutex<Stats>) {
    let (connections, bytes) = {
        let mut stats = stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.connections += 1;
        (stats.connections, stats.bytes)
    };
    // The lock is released at the end of the block above: printing, which
    // may block on a slow terminal, is done without it.
    match result {
        Ok(()) => eprintln!("{peer}: done ({connections} served, {bytes} B echoed in all)"),
        Err(e) => eprintln!("{peer}: {e} ({connections} served, {bytes} B echoed in all)"),
    }
}
