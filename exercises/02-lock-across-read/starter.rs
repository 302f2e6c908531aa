//! Exercise 02-lock-across-read: a lock held across a read.
//!
//! This is lesson 02's server, a thread per connection, with one feature
//! added: server-wide statistics (connections served, bytes echoed), shared
//! by every connection thread behind a `Mutex` and printed on stderr each
//! time a client leaves. One client at a time, it works perfectly. Connect a
//! second client while the first is still there, and the second gets nothing
//! back until the first hangs up: lesson 01 again, with more threads.
//!
//! Run it, and grade it:
//!
//! ```text
//! cargo run --example 02-lock-across-read                       # listens on 127.0.0.1:7878
//! cargo run --bin echo-check -- --exercise 02-lock-across-read  # builds, starts and grades it
//! ```
//!
//! The statement is `exercises/02-lock-across-read/README.md`.

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

/// Lesson 02's thread-per-connection echo server, with statistics and a bug.
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

// ANCHOR: todo
/// Echoes one client's bytes back until it closes its side, adding what it
/// echoes to the server's statistics.
fn serve(mut stream: TcpStream, stats: &Mutex<Stats>) -> io::Result<()> {
    // TODO: while one client is connected, nobody else is echoed until that
    // client hangs up, though every client has a thread of its own. The
    // statistics come out right; the server does not. Find out why (what is
    // each thread waiting in?), and fix it here.
    //
    // A poisoned lock only means another thread panicked while holding it;
    // the counts are still usable, so carry on with them.
    let mut stats = stats.lock().unwrap_or_else(|p| p.into_inner());
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stream.write_all(&buf[..n])?;
        stats.bytes += n as u64;
    }
}
// ANCHOR_END: todo

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
