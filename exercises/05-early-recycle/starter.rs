//! Exercise 05-early-recycle: a buffer given back too early.
//!
//! A compact lesson 05: one multishot accept, a multishot receive per
//! connection taking buffers from a registered buffer ring, and each echo
//! sent from the buffer its bytes arrived in. With the default 1,024
//! buffers it passes every check. With four small ones, some clients get
//! back bytes that they never sent.
//!
//! The place to look is the `recycle` region below: `send_next` and
//! `on_send`, how a connection's bytes are sent back from their buffer. The
//! rest of the server is `exercises/programs/05-multishot.rs` (with lesson
//! 05's own `conn.rs`, `pool.rs`, `probe.rs`, `push.rs` and `stats.rs`), and
//! its receive completions (`on_recv`) are exercise 05-rearm's region,
//! solved, in `exercises/solutions/05-rearm.rs`; you need not change them.
//!
//! Run it, and grade it:
//!
//! ```text
//! cargo run --example 05-early-recycle -- --buffers 4 --buffer-size 64   # on 127.0.0.1:7878
//! cargo run --bin echo-check -- --exercise 05-early-recycle             # builds, starts, grades
//! ```
//!
//! The statement is `exercises/05-early-recycle/README.md`.

include!("../programs/05-multishot.rs");

#[cfg(target_os = "linux")]
// ANCHOR: todo
mod recycle {
    use super::*;

    impl Server {
        /// Sends the oldest unsent bytes, from the buffer they arrived in,
        /// unless a send is in flight already.
        pub fn send_next(&mut self, index: usize) -> io::Result<()> {
            let conn = &mut self.conns[index];
            if conn.sending.is_some() {
                return Ok(());
            }
            let Some(chunk) = conn.queue.pop_front() else {
                return Ok(());
            };
            let from = self.pool.addr(chunk.bid, chunk.sent as usize);
            let entry = opcode::Send::new(conn.fd(), from, chunk.len - chunk.sent)
                .flags(libc::MSG_NOSIGNAL) // EPIPE, not SIGPIPE, if the peer left
                .build()
                .user_data(pack(Kind::Send, index, 0));
            conn.sending = Some(chunk);
            self.submit(entry)?;
            // TODO: with a small pool (`--buffers 4 --buffer-size 64`), some
            // clients get back bytes that another client sent. Find out why.
            // The send has the buffer now: back into the ring with it (once
            // per buffer: after a short send, the rest comes from the same
            // one).
            if chunk.sent == 0 {
                self.pool.give_back(chunk.bid);
            }
            Ok(())
        }

        pub fn on_send(&mut self, index: usize, res: i32) -> io::Result<()> {
            let conn = &mut self.conns[index];
            let Some(mut chunk) = conn.sending.take() else {
                return Ok(());
            };
            if res < 0 {
                conn.eof = true; // the peer is gone
                for chunk in conn.queue.drain(..) {
                    self.pool.give_back(chunk.bid); // never to be sent
                }
                if conn.recv == Shot::Armed {
                    self.cancel_recv(index)?;
                }
                return self.close_if_done(index);
            }
            chunk.sent += res as u32;
            if chunk.sent < chunk.len {
                conn.queue.push_front(chunk); // a short send: the rest goes first
            }
            if self.conns[index].held() <= self.share / 2 {
                self.arm_recv(index)?; // backpressure released
            }
            self.send_next(index)?;
            self.close_if_done(index)
        }
    }
}
// ANCHOR_END: todo

// Exercise 05-rearm's region, solved: the receive completions.
#[cfg(target_os = "linux")]
#[path = "../solutions/05-rearm.rs"]
mod rearm;
