//! Exercise 02-lock-across-read: a lock held across a read.
//!
//! This is lesson 02's server, a thread per connection, with one feature
//! added: server-wide statistics (connections served, bytes echoed), shared
//! by every connection thread behind a `Mutex` and printed on stderr each
//! time a client leaves. One client at a time, it works perfectly. Connect a
//! second client while the first is still there, and the second gets nothing
//! back until the first hangs up: lesson 01 again, with more threads.
//!
//! The place to look is `serve`, below, which every connection thread runs.
//! The rest of the server (the statistics, `main`, the accept loop, and
//! `finish`, which counts a connection that ended) is
//! `exercises/programs/02-lock-across-read.rs`; you need not change it.
//!
//! Run it, and grade it:
//!
//! ```text
//! cargo run --example 02-lock-across-read                       # listens on 127.0.0.1:7878
//! cargo run --bin echo-check -- --exercise 02-lock-across-read  # builds, starts and grades it
//! ```
//!
//! The statement is `exercises/02-lock-across-read/README.md`.

include!("../programs/02-lock-across-read.rs");

// ANCHOR: todo
mod todo {
    use std::io::{self, Write};
    use std::net::TcpStream;
    use std::sync::Mutex;

    use super::{Stats, read_some};

    /// Echoes one client's bytes back until it closes its side, adding what
    /// it echoes to the server's statistics.
    pub fn serve(mut stream: TcpStream, stats: &Mutex<Stats>) -> io::Result<()> {
        // TODO: while one client is connected, nobody else is echoed until
        // that client hangs up, though every client has a thread of its own.
        // The statistics come out right; the server does not. Find out why
        // (what is each thread waiting in?), and fix it here.
        //
        // A poisoned lock only means another thread panicked while holding
        // it; the counts are still usable, so carry on with them.
        let mut stats = stats.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = [0u8; 4096];
        // `read_some` is one `read`: `None` once the client has closed its
        // side.
        while let Some(n) = read_some(&mut stream, &mut buf)? {
            stream.write_all(&buf[..n])?;
            stats.bytes += n as u64;
        }
        Ok(())
    }
}
// ANCHOR_END: todo
