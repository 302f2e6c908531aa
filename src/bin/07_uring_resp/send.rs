//! The core: sending replies, and closing. A connection's replies wait in
//! its reply buffer; after each batch of completions, every connection
//! with new replies gets one send for all of them, and at most one send is
//! in flight per connection. A send that completes makes room, and the
//! parsing that waited for room goes on.

use std::io;

use io_uring::{opcode, types};
use nix::libc;
use std::os::fd::AsRawFd;

use crate::conn::{Kind, Shot, pack};
use crate::pool::NONE;
use crate::setup::Server;

// ANCHOR: on_send
impl Server {
    /// After a batch of completions: one send for each connection that
    /// wrote replies in it (unless a send of its is in flight: the new
    /// replies go when it completes).
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        let mut list = std::mem::take(&mut self.extra.to_flush);
        for &index in &list {
            self.conns[index as usize].flagged = false;
            self.send_next(index as usize)?;
        }
        list.clear();
        self.extra.to_flush = list; // keeps its capacity: no allocation
        Ok(())
    }

    /// Sends every reply not sent yet, in one send, unless a send is in
    /// flight. Returns whether a send is in flight now.
    pub(crate) fn send_next(&mut self, index: usize) -> io::Result<bool> {
        let conn = &mut self.conns[index];
        if conn.sending {
            return Ok(true);
        }
        if conn.sent == conn.replies || conn.failed || self.stopping {
            return Ok(false);
        }
        let ptr = self.extra.arena.reply_ptr(index, conn.sent);
        let len = (conn.replies - conn.sent) as u32;
        let fd = conn.socket.as_ref().map_or(-1, |s| s.as_raw_fd());
        // MSG_NOSIGNAL: a peer that has gone away fails the send with EPIPE
        // instead of killing us with SIGPIPE.
        let entry = opcode::Send::new(types::Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(pack(Kind::Send, index, conn.generation));
        conn.sending = true;
        conn.send_end = conn.replies;
        self.stats.sends += 1;
        // SAFETY: the bytes `sent..send_end` of this connection's reply
        // buffer stay where they are, unwritten, until this send completes:
        // new replies go after `replies`, and `compact` runs only when no
        // send is in flight. The arena lives until every completion is reaped.
        unsafe { self.push(entry)? };
        Ok(true)
    }

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
        conn.sent += res as usize;
        if conn.sent < conn.send_end {
            // A short send: the socket took only part. Not an error; the
            // rest goes first in the next send.
            self.stats.short_sends += 1;
        }
        if conn.sent == conn.replies {
            // Everything went: the buffer is empty again, from its start.
            (conn.sent, conn.replies) = (0, 0);
        } else if conn.sent >= self.extra.arena.reply_size() / 2 {
            // Half the buffer is behind us: move the rest to its start.
            self.extra.arena.compact(index, conn.sent, conn.replies);
            (conn.sent, conn.replies) = (0, conn.replies - conn.sent);
        }
        conn.send_end = conn.sent;
        // There is room now: parsing that waited for it goes on.
        if self.conns[index].head != NONE {
            self.serve(index)?;
        }
        if self.send_next(index)? {
            return Ok(());
        }
        self.close_if_done(index)
    }
}
// ANCHOR_END: on_send

// ANCHOR: close
impl Server {
    /// Closes the connection if it is finished and the kernel holds nothing
    /// of it: no receive armed, no send in flight. Finished means: failed,
    /// or the server is stopping, or the peer is done (or QUIT, or a
    /// protocol error) and every reply to what it sent has gone.
    pub(crate) fn close_if_done(&mut self, index: usize) -> io::Result<()> {
        let conn = &mut self.conns[index];
        let answered = conn.head == NONE && conn.sent == conn.replies;
        let finished =
            conn.failed || self.stopping || ((conn.peer_done || conn.closing) && answered);
        if conn.socket.is_none() || !finished || conn.recv != Shot::Idle || conn.sending {
            return Ok(());
        }
        // Buffers still queued (an error or shutdown cut the work short)
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
