//! Exercise 05-rearm: a multishot receive that ended.
//!
//! A compact lesson 05: one multishot accept, a multishot receive per
//! connection taking buffers from a registered buffer ring, and each echo
//! sent from the buffer its bytes arrived in, given back to the ring once
//! its send has completed. Under load, some connections stop being echoed
//! in the middle of a conversation, and never recover; with a small
//! completion queue (`--ring-entries 4`), within the first few echoes.
//!
//! The place to look is the `rearm` region below: `on_recv`, what the
//! server makes of a receive completion. The rest of the server is
//! `exercises/programs/05-multishot.rs` (with lesson 05's own `conn.rs`,
//! `pool.rs`, `probe.rs`, `push.rs` and `stats.rs`), and its sends
//! (`send_next`, `on_send`) are exercise 05-early-recycle's region, solved,
//! in `exercises/solutions/05-early-recycle.rs`; you need not change them.
//!
//! Run it, and grade it:
//!
//! ```text
//! cargo run --example 05-rearm -- --ring-entries 4     # listens on 127.0.0.1:7878
//! cargo run --bin echo-check -- --exercise 05-rearm    # builds, starts and grades it
//! ```
//!
//! The statement is `exercises/05-rearm/README.md`.

include!("../programs/05-multishot.rs");

// Exercise 05-early-recycle's region, solved: the sends.
#[cfg(target_os = "linux")]
#[path = "../solutions/05-early-recycle.rs"]
mod recycle;

#[cfg(target_os = "linux")]
// ANCHOR: todo
mod rearm {
    use super::*;

    impl Server {
        /// A completion of the connection's receive: data in a buffer the
        /// kernel picked, or the end of the stream, or an error.
        pub fn on_recv(&mut self, index: usize, res: i32, flags: u32) -> io::Result<()> {
            let more = cqueue::more(flags);
            let share = self.share;
            let conn = &mut self.conns[index];
            // TODO: with `--ring-entries 4`, some connections stop being read
            // in the middle of a conversation: their bytes wait in the socket,
            // and no receive completion for them ever comes again. Find out
            // why. Data: the flags name the buffer the kernel filled. The
            // multishot receive stays armed, and posts again when more
            // arrives.
            if let Some(bid) = cqueue::buffer_select(flags).filter(|_| res > 0) {
                conn.queue.push_back(Chunk {
                    bid,
                    len: res as u32,
                    sent: 0,
                });
                if conn.held() >= share && conn.recv == Shot::Armed {
                    self.cancel_recv(index)?; // backpressure: stop taking buffers
                }
                return self.send_next(index);
            }
            // No data: EOF, ENOBUFS, an error or our cancel, which end it.
            if !more {
                conn.recv = Shot::Idle;
            }
            if res == 0 {
                conn.eof = true; // the peer's FIN: echo what is queued, then close
            } else if -res == libc::ENOBUFS {
                // The ring was empty; the data waits in the socket. Get in
                // line: `wake_waiting` re-arms us when buffers come back.
                conn.waiting = true;
                self.waiting.push_back(index);
            } else if -res != libc::ECANCELED {
                conn.eof = true; // ECONNRESET and friends: this connection only
            }
            if !more {
                self.arm_recv(index)?; // it ended: re-arm it, or close
                self.close_if_done(index)?;
            }
            Ok(())
        }
    }
}
// ANCHOR_END: todo
