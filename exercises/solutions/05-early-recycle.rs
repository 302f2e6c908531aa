//! Exercise 05-early-recycle, the reference solution: the `recycle` region
//! of the server in `exercises/programs/05-multishot.rs`, solved. The
//! reference solution's program, `exercises/solutions/05-multishot.rs`,
//! takes it in, and so does exercise 05-rearm's starter.
//!
//! A buffer goes back into the ring only when nothing refers to it any
//! more: after its send has *completed* (or failed), not when the send was
//! queued. Until then the kernel may still read it: a send to a peer whose
//! socket is full waits, and reads our buffer only when the peer makes
//! room. The starter gave the buffer back as soon as it had queued the
//! send; with four buffers, the next receives refilled it within a few
//! completions, and the waiting send then carried another client's bytes.
//! With `--buffers 4 --buffer-size 64` the starter failed `concurrent` and
//! `stalled` on every run (six of six; `stalled` about 4 MB into the echo
//! of the client that had stopped reading); with the default 1,024 buffers
//! it passed all nine checks the grader had then.

// ANCHOR: solution
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
        // The buffer stays ours while the send is in flight. Queuing the
        // request copies nothing: the kernel reads the buffer when the send
        // runs, which can be much later (a peer that does not read keeps it
        // waiting as long as it likes). Back in the ring before that, the
        // buffer could be refilled with another connection's bytes, and
        // this peer would get those.
        self.submit(entry)
    }

    pub fn on_send(&mut self, index: usize, res: i32) -> io::Result<()> {
        let conn = &mut self.conns[index];
        let Some(mut chunk) = conn.sending.take() else {
            return Ok(());
        };
        if res < 0 {
            // The peer is gone, and the send is over: the buffer is free.
            self.pool.give_back(chunk.bid);
            conn.eof = true;
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
        } else {
            // The kernel has read the whole buffer: only now may it refill it.
            self.pool.give_back(chunk.bid);
        }
        if self.conns[index].held() <= self.share / 2 {
            self.arm_recv(index)?; // backpressure released
        }
        self.send_next(index)?;
        self.close_if_done(index)
    }
}
// ANCHOR_END: solution
