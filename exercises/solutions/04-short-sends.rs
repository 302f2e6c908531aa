//! Exercise 04-short-sends, the reference solution.
//!
//! A send completes with the number of bytes the kernel took, and without
//! `MSG_WAITALL` that may be fewer than we offered: as many as fitted in the
//! socket's send buffer. That is not an error. The starter counted the
//! bytes, forgot the rest, and received again over the buffer that still
//! held them. Every short send cut a hole in the echo.
//!
//! With the kernel's default send buffer a send comes up short only when the
//! peer's side is nearly full (a client that stops reading, or a very big
//! message). With `--buffer-size 65536 --sndbuf 4096` the first 64 KiB send
//! of a big message already does: the starter's `sizes` went wrong at byte
//! 32,768 on every run. That is why the exercise runs the server that way.
//!
//! Only `on_send` differs from the starter; the rest of the server is
//! `exercises/programs/04-short-sends.rs` and `exercises/common/uring.rs`.
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 04-short-sends --solution
//! ```

include!("../programs/04-short-sends.rs");

#[cfg(target_os = "linux")]
// ANCHOR: solution
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
            if conn.sent < conn.filled {
                // A short send: the socket's send buffer had room for part of
                // the message only. Send the rest, from where the kernel
                // stopped, before receiving anything new: a receive now would
                // write over the bytes not yet sent. One request at a time
                // per connection also keeps the bytes in order, and is the
                // backpressure: while this send waits for room, nothing more
                // is read from this client.
                return self.submit_send(index);
            }
            self.submit_recv(index)
        }
    }
}
// ANCHOR_END: solution
