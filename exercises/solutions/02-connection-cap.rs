//! Exercise 02-connection-cap, the reference solution.
//!
//! A counter of open connections, shared by the accept loop (which adds one
//! for each connection it accepts) and the connection threads (each takes
//! its one away when it ends). Two choices make it hold:
//!
//! - The count goes up in the accept loop, before the thread starts, not in
//!   the thread: the accept loop decides at once, from a count that already
//!   includes every connection it has let in.
//! - The count goes down in a `Drop`, not after `serve` returns: a guard
//!   that owns one count and gives it back when dropped. The thread drops it
//!   however it ends: `serve` returning an error, a panic unwinding, or the
//!   thread never starting (then `spawn` drops its closure, guard and all).
//!   A decrement written after `serve(stream)?` would leak a place on every
//!   peer that resets, and after enough resets nobody would be served.
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 02-connection-cap --solution
//! ```

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;
use uring_echo_book::limits::raise_open_file_limit_or_warn;
use uring_echo_book::listen::{announce, bind_or_explain};
use uring_echo_book::signals::exit_on_signal;

/// Lesson 02's thread-per-connection echo server, with a connection cap.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Keep at most this many connections open (default: no cap). A client
    /// that connects while this many are open is closed at once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_conns: Option<u64>,
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
    accept_loop(&listener, args.max_conns);
    ExitCode::SUCCESS
}

// ANCHOR: solution
/// One open connection's place in the count; dropping it frees the place.
struct Place(Arc<AtomicU64>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts clients forever and hands each one to a thread of its own, while
/// fewer than `max_conns` are open; closes the others at once.
fn accept_loop(listener: &TcpListener, max_conns: Option<u64>) {
    match max_conns {
        Some(cap) => eprintln!("connection cap: {cap} (--max-conns)"),
        None => eprintln!("no connection cap"),
    }
    // An atomic, not a `Mutex<u64>`: one number, changed by one instruction.
    // `Relaxed` is enough because the count guards no other data; all we
    // need is that no increment or decrement is lost.
    let open = Arc::new(AtomicU64::new(0));
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                // Count this connection first, then look: `fetch_add`
                // returns how many were open before it. Only this thread
                // adds, so nobody can slip in between; the threads only take
                // away, which can only make room.
                let before = open.fetch_add(1, Ordering::Relaxed);
                let place = Place(Arc::clone(&open));
                if max_conns.is_some_and(|cap| before >= cap) {
                    // Dropping the stream closes it: the client sees its
                    // connection end (EOF, or a reset if it had sent bytes
                    // we never read). Dropping `place` gives the count back.
                    eprintln!("{peer}: {before} connections open already; closing this one");
                    drop(place);
                    drop(stream);
                    continue;
                }
                // The place moves into the closure: if `spawn` fails, the
                // closure is dropped with it; if it runs, `_place` lives
                // until the thread ends, however it ends.
                let spawned = thread::Builder::new().spawn(move || {
                    let _place = place;
                    match serve(stream) {
                        Ok(()) => eprintln!("{peer}: done"),
                        Err(e) => eprintln!("{peer}: {e}"),
                    }
                });
                if let Err(e) = spawned {
                    eprintln!("{peer}: cannot start a thread ({e}); closing this connection");
                }
            }
            Err(e) => {
                eprintln!("accept failed: {e}");
                if is_out_of_descriptors(&e) {
                    // EMFILE/ENFILE: accepting again at once fails the same
                    // way; give the connection threads time to close some.
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}
// ANCHOR_END: solution

/// EMFILE (this process) or ENFILE (the whole system) ran out of descriptors.
fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}

/// Echoes one client's bytes back until it closes its side: lesson 02's loop.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stream.write_all(&buf[..n])?;
    }
}
