//! The core: sending back, and closing. Each received buffer is sent from
//! where it lies, one send in flight per connection, and goes back into
//! its ring only once all of it has gone. A connection closes when it is
//! finished and the kernel holds nothing of it.

use std::io;
use std::os::fd::AsRawFd;

use io_uring::{opcode, types};
use nix::libc;

use crate::conn::{Kind, Shot, pack};
use crate::pool::NONE;
use crate::recv::Arm;
use crate::setup::Server;

// ANCHOR: on_send
impl Server {
    /// Sends the connection's oldest unsent bytes, straight from the buffer
    /// they were received into, unless a send is already in flight. Returns
    /// whether a send is in flight now.
    pub(crate) fn send_next(&mut self, index: usize) -> io::Result<bool> {
        let conn = &mut self.conns[index];
        if conn.sending {
            return Ok(true);
        }
        if conn.head == NONE || conn.failed || self.stopping {
            return Ok(false);
        }
        let (bid, offset) = (conn.head, conn.offset);
        let len = self.pool.len[usize::from(bid)] as usize - offset;
        let fd = conn.socket.as_ref().map_or(-1, |s| s.as_raw_fd());
        // MSG_NOSIGNAL: a peer that has gone away fails the send with EPIPE
        // instead of killing us with SIGPIPE.
        let entry = opcode::Send::new(types::Fd(fd), self.pool.addr(bid, offset), len as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(pack(Kind::Send, index, conn.generation));
        conn.sending = true;
        self.stats.sends += 1;
        // SAFETY: buffer `bid` is out of the ring, so the kernel will not
        // receive into it, and it stays at the head of this connection's
        // queue, untouched, until this send's completion: only `on_send` (or
        // a close, which waits for it) gives it back.
        unsafe { self.push(entry)? };
        Ok(true)
    }

    // ANCHOR: on_send_fn
    pub(crate) fn on_send(&mut self, index: usize, res: i32) -> io::Result<()> {
        let conn = &mut self.conns[index];
        conn.sending = false;
        if res < 0 {
            // EPIPE, ECONNRESET (or ECANCELED at shutdown): the peer is gone.
            if -res != libc::ECANCELED {
                self.stats.conn_errors += 1;
            }
            conn.failed = true;
            if conn.recv == Shot::Armed {
                conn.recv = Shot::Cancelling;
                let target = pack(Kind::Recv, index, conn.generation);
                self.cancel(target)?;
            }
            return self.close_if_done(index);
        }
        conn.offset += res as usize;
        let bid = conn.head;
        if conn.offset < self.pool.len[usize::from(bid)] as usize {
            // A short send: the socket took only part. Not an error. Send
            // the rest, from where the kernel stopped, before anything else.
            self.stats.short_sends += 1;
        } else {
            // The whole buffer went out: only now may it go back to the ring.
            conn.head = self.pool.next[usize::from(bid)];
            if conn.head == NONE {
                conn.tail = NONE;
            }
            conn.offset = 0;
            conn.held -= 1;
            self.pool.give_back(bid);
            // Backpressure released: receive again once half the share is
            // back (not at once, or one buffer back would re-arm and the next
            // would cancel again, a request pair per buffer).
            if conn.held <= self.max_per_conn / 2 {
                self.arm_recv(index, Arm::Again)?;
            }
        }
        if self.send_next(index)? {
            return Ok(());
        }
        // Nothing left to send: after EOF, or after the receive side failed,
        // this was the last thing in flight, and the connection closes.
        self.close_if_done(index)
    }
    // ANCHOR_END: on_send_fn
}
// ANCHOR_END: on_send

// ANCHOR: close
impl Server {
    /// Closes the connection if it is finished and the kernel holds nothing
    /// of it: no receive armed, no send in flight. Otherwise the last of
    /// those completions calls this again.
    pub(crate) fn close_if_done(&mut self, index: usize) -> io::Result<()> {
        let conn = &mut self.conns[index];
        let finished = conn.failed || self.stopping || (conn.peer_done && conn.head == NONE);
        if conn.socket.is_none() || !finished || conn.recv != Shot::Idle || conn.sending {
            return Ok(());
        }
        // Buffers still queued (an error or shutdown cut the echo short)
        // go back to the ring.
        while conn.head != NONE {
            let bid = conn.head;
            conn.head = self.pool.next[usize::from(bid)];
            self.pool.give_back(bid);
        }
        conn.tail = NONE;
        conn.held = 0;
        conn.socket = None; // close(2)
        self.free.push(index as u32);
        self.stats.closed += 1;
        // A slot and a descriptor are free: resume accepting if it paused.
        self.arm_accept()
    }
}
// ANCHOR_END: close
