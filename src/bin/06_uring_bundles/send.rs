//! The core: sending back, and closing, as in lesson 05 (one send in
//! flight per connection; a buffer goes back to its ring only once all of
//! it has gone), with two ways to send: every queued buffer in one
//! `sendmsg` (`--send-gather`), or zero-copy from the registered pool
//! (`--send-zc`), whose buffer is ours again only at its notification.

use std::io;

use io_uring::{cqueue, opcode, squeue, types};
use nix::libc;

use crate::conn::{Kind, Shot, pack};
use crate::features::{GATHER, Target, update_file_table};
use crate::pool::NONE;
use crate::recv::Arm;
use crate::setup::Server;

/// `IORING_SEND_ZC_REPORT_USAGE` (Linux 6.2; the crate does not export it):
/// the notification's result says whether the kernel copied after all, in
/// `IORING_NOTIF_USAGE_ZC_COPIED`, its top bit.
const SEND_ZC_REPORT_USAGE: u16 = 8;
const NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;

// ANCHOR: send_next
impl Server {
    // ANCHOR: send_next_fn
    /// Sends the connection's oldest unsent bytes, straight from the buffers
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
        conn.sending = true;
        let user_data = pack(Kind::Send, index, conn.generation);
        let entry = self.send_entry(index).user_data(user_data);
        self.stats.sends += 1;
        // SAFETY: the buffers sent from are out of their ring, so the kernel
        // will not receive into them, and they stay queued, untouched, until
        // this send's last completion (its notification, for a zero-copy
        // one): only `on_send` (or a close, which waits for it) gives them
        // back. The slot's header and list are written only here, while no
        // send of this connection is in flight, and stay put (`SendSlots`).
        unsafe { self.push(entry)? };
        Ok(true)
    }

    /// The request for the next send: a plain send of the first queued
    /// buffer, a zero-copy one, or one `sendmsg` of up to `GATHER` buffers.
    fn send_entry(&mut self, index: usize) -> squeue::Entry {
        let (target, conn) = (self.target(index), &self.conns[index]);
        let slot = self.slots.get(index);
        let (mut bid, offset) = (conn.head, conn.offset);
        let first = self.pool.len[usize::from(bid)] as usize - offset;
        let gather = self.features.send_gather && !self.features.send_zc;
        if !gather || self.pool.next[usize::from(bid)] == NONE {
            // SAFETY: `slot` is this connection's, and no send of it is in
            // flight, so the kernel is not reading it.
            unsafe { (*slot).offered = first as u32 };
            let addr = self.pool.node_addr(bid, offset);
            return if self.features.send_zc {
                self.more.zc_sends += 1;
                zc_send(target, addr, first as u32)
            } else {
                plain_send(target, addr, first as u32)
            };
        }
        // Gather: the list points at each queued buffer's unsent bytes.
        let mut count = 0;
        let mut offered = 0;
        while bid != NONE && count < GATHER {
            let skip = if count == 0 { offset } else { 0 };
            let len = self.pool.len[usize::from(bid)] as usize - skip;
            // SAFETY: as above; `count < GATHER`, inside the list.
            unsafe {
                (*slot).iov[count] = libc::iovec {
                    iov_base: self.pool.node_addr(bid, skip) as *mut _,
                    iov_len: len,
                };
            }
            offered += len;
            count += 1;
            bid = self.pool.next[usize::from(bid)];
        }
        self.more.gathered_sends += 1;
        self.more.gathered_buffers += count as u64;
        // SAFETY: as above. The header points at the slot's own list.
        unsafe {
            (*slot).offered = offered as u32;
            (*slot).msg = std::mem::zeroed();
            (*slot).msg.msg_iov = (&raw mut (*slot).iov).cast();
            (*slot).msg.msg_iovlen = count;
            let msg = &raw const (*slot).msg;
            match target {
                Target::Fd(fd) => opcode::SendMsg::new(types::Fd(fd), msg),
                Target::Fixed(i) => opcode::SendMsg::new(types::Fixed(i), msg),
            }
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
        }
    }
    // ANCHOR_END: send_next_fn
}

// ANCHOR: single_sends
/// A plain send. MSG_NOSIGNAL: a peer that has gone away fails the send
/// with EPIPE instead of killing us with SIGPIPE.
fn plain_send(target: Target, addr: *const u8, len: u32) -> squeue::Entry {
    match target {
        Target::Fd(fd) => opcode::Send::new(types::Fd(fd), addr, len),
        Target::Fixed(i) => opcode::Send::new(types::Fixed(i), addr, len),
    }
    .flags(libc::MSG_NOSIGNAL)
    .build()
}

/// A zero-copy send from fixed buffer 0, the whole pool (`features.rs`).
fn zc_send(target: Target, addr: *const u8, len: u32) -> squeue::Entry {
    match target {
        Target::Fd(fd) => opcode::SendZc::new(types::Fd(fd), addr, len),
        Target::Fixed(i) => opcode::SendZc::new(types::Fixed(i), addr, len),
    }
    .buf_index(Some(0))
    .zc_flags(SEND_ZC_REPORT_USAGE)
    .flags(libc::MSG_NOSIGNAL)
    .build()
}
// ANCHOR_END: single_sends
// ANCHOR_END: send_next

// ANCHOR: on_send
impl Server {
    /// A send's completion. A zero-copy send has two: the result, flagged
    /// `F_MORE` when a notification follows, and the notification, when
    /// the kernel no longer reads the buffer. Only then is the send over.
    pub(crate) fn on_send_completion(
        &mut self,
        index: usize,
        res: i32,
        flags: u32,
    ) -> io::Result<()> {
        let slot = self.slots.get(index);
        if cqueue::notif(flags) {
            if res as u32 & NOTIF_USAGE_ZC_COPIED != 0 {
                self.more.zc_copied += 1; // the kernel copied after all
            }
            // SAFETY: ours; the kernel never reads `zc_res`.
            let res = unsafe { (*slot).zc_res };
            return self.on_send(index, res);
        }
        if cqueue::more(flags) {
            // SAFETY: as above.
            unsafe { (*slot).zc_res = res };
            return Ok(());
        }
        self.on_send(index, res)
    }

    /// The send is over: give back every buffer it sent whole, keep the
    /// offset into one it sent in part, and send the rest.
    fn on_send(&mut self, index: usize, res: i32) -> io::Result<()> {
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
        // SAFETY: ours; no send of this connection is in flight any more.
        if (res as u32) < unsafe { (*self.slots.get(index)).offered } {
            // A short send: not an error. The rest goes next.
            self.stats.short_sends += 1;
        }
        self.sent(index, res as usize);
        // Backpressure released at half the share, as in lesson 05.
        if self.conns[index].held <= self.max_per_conn / 2 {
            self.arm_recv(index, Arm::Again)?;
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
    /// of it, as in lesson 05; a socket in the file table leaves it first,
    /// or the table's reference would keep the connection open.
    pub(crate) fn close_if_done(&mut self, index: usize) -> io::Result<()> {
        let live = self.live(index);
        let conn = &mut self.conns[index];
        let finished = conn.failed || self.stopping || (conn.peer_done && conn.head == NONE);
        if !live || !finished || conn.recv != Shot::Idle || conn.sending {
            return Ok(());
        }
        while conn.head != NONE {
            let bid = conn.head;
            conn.head = self.pool.next[usize::from(bid)];
            self.pool.release(bid);
        }
        conn.tail = NONE;
        conn.held = 0;
        let slot = self.slots.get(index);
        // SAFETY: ours; nothing of this connection is in flight.
        if unsafe { (*slot).direct } {
            // A direct descriptor: no socket to drop, a `Close` on its
            // table slot instead; the slot is free once that completes.
            // SAFETY: as above.
            unsafe {
                (*slot).direct = false;
                (*slot).fixed = false;
            }
            return self.close_direct(index);
        }
        // SAFETY: as above.
        if unsafe { (*slot).fixed } {
            if let Err(e) = update_file_table(&self.ring, index, -1) {
                eprintln!("cannot remove a socket from the file table: {e}");
            }
            // SAFETY: as above.
            unsafe { (*slot).fixed = false };
        }
        self.conns[index].socket = None; // close(2)
        self.free.push(index as u32);
        self.stats.closed += 1;
        // A slot and a descriptor are free: resume accepting if it paused.
        self.arm_any_accept()
    }
}
// ANCHOR_END: close
