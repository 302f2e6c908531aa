//! Exercise 01-idle-timeout, the reference solution.
//!
//! A read timeout on the socket (`SO_RCVTIMEO`, which `set_read_timeout`
//! sets) makes a blocked `read` give up after that long with an error. We
//! treat that error as the end of the session: the client was idle, we hang
//! up, and the accept loop moves on to the next client.
//!
//! Only `serve` differs from the starter; the rest of the server is
//! `exercises/programs/01-idle-timeout.rs` and `exercises/common/blocking.rs`.
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 01-idle-timeout --solution
//! ```

include!("../programs/01-idle-timeout.rs");

// ANCHOR: solution
mod todo {
    use std::io;
    use std::net::TcpStream;
    use std::time::Duration;

    use super::echo;

    /// Serves one client, from connect to close, or until it has sent
    /// nothing for `idle_timeout`.
    pub fn serve(stream: TcpStream, idle_timeout: Duration) -> io::Result<()> {
        // Every read on this socket now waits at most `idle_timeout`. It is
        // a per-read limit, so a client that keeps talking is never cut off:
        // each read that gets bytes starts a new wait.
        stream.set_read_timeout(Some(idle_timeout))?;
        match echo(stream) {
            // A read that timed out fails with WouldBlock on Linux (EAGAIN,
            // the same code as a nonblocking read with nothing to read) and
            // TimedOut on Windows. `echo` has dropped the stream, which
            // closes it: the client sees end of file.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                eprintln!("idle for {idle_timeout:?}, hung up");
                Ok(())
            }
            other => other,
        }
    }
}
// ANCHOR_END: solution
