// The server of exercise 02-lock-across-read, all of it but `todo::serve`,
// which the file that includes this one defines: the starter,
// `exercises/02-lock-across-read/starter.rs`, or the reference solution. It
// is lesson 02's server, a thread per connection (without its
// `--max-threads` cap), with server-wide statistics added; what it shares
// with the other blocking exercise servers is in
// `exercises/common/blocking.rs`.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;

// Each blocking exercise server uses some of these helpers, none all of
// them: the allow keeps the ones this one leaves out from being warned of.
#[allow(dead_code)]
#[path = "../common/blocking.rs"]
mod blocking;

use blocking::read_some;

/// What every connection thread adds to: one copy for the whole server.
#[derive(Default)]
struct Stats {
    /// Connections that have ended, however they ended.
    connections: u64,
    /// Bytes echoed, over every connection.
    bytes: u64,
}

fn main() -> ExitCode {
    let args = blocking::AddrOnly::parse();
    // The statistics outlive every connection thread, and each thread needs
    // its own handle on them: an `Arc` shares them, the `Mutex` lets one
    // thread at a time change them.
    let stats = Arc::new(Mutex::new(Stats::default()));
    blocking::run(args.common.addr, |listener| accept_loop(listener, &stats))
}

/// Accepts clients forever and hands each one to a thread of its own, which
/// runs `todo::serve` and then `finish`.
fn accept_loop(listener: &TcpListener, stats: &Arc<Mutex<Stats>>) {
    loop {
        if let Some((stream, peer)) = blocking::accept(listener) {
            let stats = Arc::clone(stats);
            blocking::spawn(peer, move || {
                let result = todo::serve(stream, &stats);
                finish(peer, result, &stats);
            });
        }
    }
}

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
