//! Exercise 03-idle-timeout: close the connections that went quiet.
//!
//! Lesson 03 made small, and correct: one thread, nonblocking sockets, a
//! level-triggered epoll loop, a write queue per connection and
//! backpressure. Every connection stays open until its client closes it,
//! however long the client stays silent, and each one holds a descriptor
//! and a slot in our table meanwhile. With `--idle-timeout SECS`, the
//! server should close a connection that has been quiet that long. The
//! option is there; the feature is not.
//!
//! The work is in the region below: `Idle`, what each connection keeps for
//! the timeout (the server makes one per new connection, and touches it on
//! every event of that connection), and `run`, the event loop. The rest of
//! the server is `exercises/programs/03-idle-timeout.rs` (the options,
//! `main`, `Conn` and `on_ready`) and `exercises/common/epoll.rs` (the
//! listener, the epoll instance, accepting, and `turn`: one wait and the
//! events it brought); you need not change them.
//!
//! Run it, and grade it:
//!
//! ```text
//! cargo run --example 03-idle-timeout -- --idle-timeout 1   # listens on 127.0.0.1:7878
//! cargo run --bin echo-check -- --exercise 03-idle-timeout    # builds, starts and grades it
//! ```
//!
//! The statement is `exercises/03-idle-timeout/README.md`.

include!("../programs/03-idle-timeout.rs");

#[cfg(target_os = "linux")]
// ANCHOR: todo
mod todo {
    use std::convert::Infallible;
    use std::io;
    use std::time::Duration;

    use nix::sys::epoll::EpollTimeout;

    use super::Server;

    /// What a connection keeps for the idle timeout: nothing yet.
    pub struct Idle;

    impl Idle {
        /// For a connection just accepted.
        pub fn new() -> Idle {
            Idle
        }

        /// An event of the connection: bytes or the client's FIN arrived,
        /// there is room to send again, or an error.
        pub fn touch(&mut self) {}
    }

    impl Server {
        /// Waits for events and serves them, forever.
        pub fn run(&mut self, idle_timeout: Option<Duration>) -> io::Result<Infallible> {
            // TODO: with --idle-timeout, a client that connects and then says
            // nothing keeps its connection (and a descriptor) forever.
            match idle_timeout {
                Some(limit) => eprintln!("idle timeout: {} s", limit.as_secs()),
                None => eprintln!("no idle timeout"),
            }
            loop {
                // Sleep until something is ready, then serve it.
                self.turn(EpollTimeout::NONE)?;
            }
        }
    }
}
// ANCHOR_END: todo
