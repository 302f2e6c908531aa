//! Exercise 05-rearm, the reference solution: the `rearm` region of the
//! server in `exercises/programs/05-multishot.rs`, solved. The reference
//! solution's program, `exercises/solutions/05-multishot.rs`, takes it in,
//! and so does exercise 05-early-recycle's starter.
//!
//! A multishot receive can end at any completion, also at one that carries
//! data: when the completion queue is full, the kernel posts that data as
//! the request's last completion, without IORING_CQE_F_MORE. The starter
//! looked at F_MORE only on completions without data, so such a receive
//! stayed "armed" in its books, was never re-armed, and its connection was
//! never read again. With `--ring-entries 4` (8 completion entries),
//! 854–975 receives ended that way during one run of the `concurrent`
//! check, and 198–314 during one of `stalled`; with the default 512
//! completion entries, none in `concurrent` and 2–4 in `stalled`: enough
//! for the starter to fail `stalled` with the defaults too.

// ANCHOR: solution
use super::*;

impl Server {
    /// A completion of the connection's receive: data in a buffer the
    /// kernel picked, or the end of the stream, or an error.
    pub fn on_recv(&mut self, index: usize, res: i32, flags: u32) -> io::Result<()> {
        let more = cqueue::more(flags);
        let share = self.share;
        let conn = &mut self.conns[index];
        // Every completion says whether the receive is still armed, the
        // ones with data too. When the completion queue is full, the kernel
        // ends a multishot receive: it posts the data it has as the last
        // completion, without F_MORE, and receives nothing more. Taken for
        // armed, that receive would never be re-armed, and the peer's bytes
        // would wait in the socket forever.
        if !more {
            conn.recv = Shot::Idle;
        }
        // Data: the flags name the buffer the kernel filled.
        if let Some(bid) = cqueue::buffer_select(flags).filter(|_| res > 0) {
            conn.queue.push_back(Chunk {
                bid,
                len: res as u32,
                sent: 0,
            });
            if conn.held() >= share && conn.recv == Shot::Armed {
                self.cancel_recv(index)?; // backpressure: stop taking buffers
            }
            self.send_next(index)?;
        } else if res == 0 {
            conn.eof = true; // the peer's FIN: echo what is queued, then close
        } else if -res == libc::ENOBUFS {
            // The ring was empty; the data waits in the socket. Get in line:
            // `wake_waiting` re-arms us when buffers come back.
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
// ANCHOR_END: solution
