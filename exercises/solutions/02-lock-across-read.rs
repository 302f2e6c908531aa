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
//! Only `serve` differs from the starter; the rest of the server is
//! `exercises/programs/02-lock-across-read.rs`.
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 02-lock-across-read --solution
//! ```

include!("../programs/02-lock-across-read.rs");

// ANCHOR: solution
mod todo {
    use std::io::{self, Write};
    use std::net::TcpStream;
    use std::sync::Mutex;

    use super::{Stats, read_some};

    /// Echoes one client's bytes back until it closes its side, adding what
    /// it echoes to the server's statistics.
    pub fn serve(mut stream: TcpStream, stats: &Mutex<Stats>) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        // No lock here: `read_some` (one `read`, `None` once the client has
        // closed its side) may wait for this client for hours, and a lock
        // held while it waits stops every other connection thread at its
        // own `lock`.
        while let Some(n) = read_some(&mut stream, &mut buf)? {
            // Nor here: `write_all` waits as long as this client does not read.
            stream.write_all(&buf[..n])?;
            // The lock for one addition. The guard is a temporary of this
            // statement, dropped at its `;`, so the lock is held for this line
            // only. (A poisoned lock only means another thread panicked while
            // holding it; the counts are still usable, so carry on with them.)
            stats.lock().unwrap_or_else(|p| p.into_inner()).bytes += n as u64;
        }
        Ok(())
    }
}
// ANCHOR_END: solution
