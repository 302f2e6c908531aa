//! Exercise 01-idle-timeout: an idle client must not hold the server forever.
//!
//! Lesson 01 serves one client at a time, so a client that connects and then
//! says nothing keeps everyone else waiting, for ever. This starter is lesson
//! 01's server with a `--idle-timeout SECS` option that does nothing yet.
//!
//! The work is in `serve`, below, which the accept loop calls for each
//! client. The rest of the server is `exercises/programs/01-idle-timeout.rs`
//! (the options and `main`) and `exercises/common/blocking.rs` (the accept
//! loop, and `echo`, lesson 01's read-and-write loop); you need not change
//! them.
//!
//! ```text
//! cargo run --example 01-idle-timeout -- --idle-timeout 1
//! cargo run --bin echo-check -- --exercise 01-idle-timeout
//! ```
//!
//! The statement is `exercises/01-idle-timeout/README.md`.

include!("../programs/01-idle-timeout.rs");

// ANCHOR: todo
mod todo {
    use std::io;
    use std::net::TcpStream;
    use std::time::Duration;

    use super::echo;

    /// Serves one client, from connect to close.
    pub fn serve(stream: TcpStream, idle_timeout: Duration) -> io::Result<()> {
        // TODO: a client that has sent nothing for `idle_timeout` must be
        // hung up on, so that the next client gets its turn; and that is a
        // normal end of a session, not an error to report.
        eprintln!("idle timeout {idle_timeout:?} not enforced yet");
        echo(stream)
    }
}
// ANCHOR_END: todo
