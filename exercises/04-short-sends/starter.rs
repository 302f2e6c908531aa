//! Exercise 04-short-sends: the rest of a short send.
//!
//! This is lesson 04's server cut down to its core: one accept in flight,
//! and for each connection one request at a time, a receive into the
//! connection's own buffer or a send from it. Small messages come back
//! perfectly. Big ones, and the echo of a client that is slow to read, come
//! back with bytes missing. Find where they go.
//!
//! The place to look is `on_send`, below: what the server does when a send
//! completes. The rest of the server is `exercises/programs/04-short-sends.rs`
//! (the options, `main`, `submit_recv`, `close`) and
//! `exercises/common/uring.rs` (lesson 04 cut down to its core, with the
//! lesson's own `conn.rs`, `ring.rs` and `stats.rs`); you need not change
//! them, but `submit_send` and `submit_recv` are there to read.
//!
//! Run it, and grade it:
//!
//! ```text
//! cargo run --example 04-short-sends -- --buffer-size 65536 --sndbuf 4096
//! cargo run --bin echo-check -- --exercise 04-short-sends   # builds, starts and grades it
//! ```
//!
//! The statement is `exercises/04-short-sends/README.md`.

include!("../programs/04-short-sends.rs");

#[cfg(target_os = "linux")]
// ANCHOR: todo
mod todo {
    use super::*;

    impl Server {
        /// The send finished: `res` is how many bytes the kernel took, or
        /// an error.
        pub fn on_send(&mut self, index: usize, res: i32) -> io::Result<()> {
            let Some(conn) = self.conns[index].as_mut() else {
                return Ok(());
            };
            if res < 0 {
                return self.close(index); // EPIPE, ECONNRESET: the peer is gone
            }
            conn.sent += res as usize;
            // TODO: big messages, and the echo of a client that is slow to
            // read, come back with bytes missing. Find out where they go, and
            // fix it here.
            self.submit_recv(index)
        }
    }
}
// ANCHOR_END: todo
