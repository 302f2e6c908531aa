//! The core: receiving, as in lesson 05: a connection's receive is armed
//! with no buffer, only a buffer group, and the kernel picks a buffer when
//! data arrives. What changes is the completion: its buffer is queued to be
//! *parsed* (`serve.rs`), not sent back.

use std::io;
use std::os::fd::AsRawFd;

use io_uring::{cqueue, opcode, squeue, types};
use nix::libc;

use crate::conn::{Kind, RecvMode, Shot, pack};
use crate::pool::{NONE, OPEN, RESERVE};
use crate::setup::Server;

// ANCHOR: arm_recv
/// Why `arm_recv` is called: a new connection's first receive, a re-arm,
/// or a turn in line for buffers (which may not queue behind the line again).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Arm {
    First,
    Again,
    FromLine,
}

impl Server {
    /// Arms the connection's receive, unless it should not receive now: it
    /// is closing, it holds its share (backpressure), or it is starved and
    /// the reserve cannot serve it yet (the fairness rule, `reserve_recv` in
    /// `fairness.rs`).
    pub(crate) fn arm_recv(&mut self, index: usize, why: Arm) -> io::Result<()> {
        let conn = &self.conns[index];
        let Some(socket) = conn.socket.as_ref() else {
            return Ok(());
        };
        if (conn.waiting && why != Arm::FromLine) // in line: `wake_waiting` arms it
            || conn.recv != Shot::Idle
            || conn.peer_done
            || conn.closing
            || conn.failed
            || self.stopping
        {
            return Ok(());
        }
        let fd = types::Fd(socket.as_raw_fd());
        let (starved, held, generation) = (conn.starved, conn.held, conn.generation);
        let entry = if starved {
            let Some(entry) = self.reserve_recv(index, why, fd) else {
                return Ok(()); // it waits: for its own echoes, or in line
            };
            entry
        } else {
            if held >= self.max_per_conn {
                return Ok(()); // backpressure: `serve` re-arms it
            }
            open_recv(fd, self.recv_mode, self.buffer_size)
        };
        let conn = &mut self.conns[index];
        conn.recv_from = if starved { RESERVE } else { OPEN };
        conn.recv = Shot::Armed;
        if why != Arm::First {
            self.stats.rearms += 1;
        }
        let entry = entry.user_data(pack(Kind::Recv, index, generation));
        // SAFETY: a buffer-select receive points at no memory of ours until
        // the kernel picks a buffer from a registered ring, whose buffers
        // stay mapped until the server drops, after every completion.
        unsafe { self.push(entry) }
    }
}

/// Flags of a receive request, in its `ioprio` field (the io-uring crate
/// does not export them). `POLL_FIRST` (Linux 5.19): wait until the socket
/// is readable before trying to receive. `MULTISHOT` (6.0): stay armed.
const RECV_POLL_FIRST: u16 = 1;
const RECV_MULTISHOT: u16 = 2;

/// A receive from the open pool. No buffer here: the kernel picks one from
/// OPEN when data arrives.
///
/// Why POLL_FIRST: without it, a receive tries at once, and it picks its
/// buffer *before* it looks for data. On an empty pool a connection with
/// nothing to say would then get ENOBUFS, be taken for starved, and hold a
/// reserve buffer's promise while it stays silent. With it, the kernel
/// first waits for the socket to be readable, so ENOBUFS always means that
/// bytes (or the peer's FIN) are waiting. (`opcode::RecvMulti` is this
/// request without POLL_FIRST; we build it from `opcode::Recv` to add it.)
fn open_recv(fd: types::Fd, mode: RecvMode, size: u32) -> squeue::Entry {
    let (flags, len) = match mode {
        RecvMode::Multishot => (RECV_POLL_FIRST | RECV_MULTISHOT, 0), // 0: a whole buffer each time
        RecvMode::OneBuffer => (RECV_POLL_FIRST, size),
    };
    opcode::Recv::new(fd, std::ptr::null_mut(), len)
        .buf_group(OPEN)
        .ioprio(flags)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT)
}
// ANCHOR_END: arm_recv

// ANCHOR: on_recv
impl Server {
    pub(crate) fn on_recv(&mut self, index: usize, res: i32, flags: u32) -> io::Result<()> {
        let more = cqueue::more(flags);
        if !more {
            // The receive has ended, also when `res` is data: a full
            // completion queue, for one, ends a multishot receive.
            self.conns[index].recv = Shot::Idle;
            if self.conns[index].recv_from == RESERVE {
                self.pool.promised -= 1; // the buffer is ours now, or back
            }
        }
        // Any buffer a completion names is ours, whatever `res` says: one
        // that carries no request bytes goes straight back.
        let bid = cqueue::buffer_select(flags);
        let conn = &self.conns[index];
        if res <= 0 || conn.failed || conn.closing || self.stopping {
            if let Some(bid) = bid {
                self.pool.give_back(bid);
            }
        } else if let Some(bid) = bid {
            self.stats.recv_completions += 1;
            self.batching.saw_receive(&mut self.conns[index].window);
            self.queue_input(index, bid, res as u32)?;
            self.serve(index)?;
        } else {
            self.conns[index].failed = true; // cannot happen with a buffer-select receive
        }
        let conn = &mut self.conns[index];
        if res == 0 {
            conn.peer_done = true; // EOF: answer what is parsed, then close
        } else if -res == libc::ENOBUFS {
            // The ring was empty when data arrived; the data waits in the
            // socket. The next receive comes from the reserve (`fairness.rs`).
            self.stats.enobufs += 1;
            conn.starved = true;
        } else if res < 0 && -res != libc::ECANCELED {
            // ECONNRESET and friends: this connection is over, no other.
            self.stats.conn_errors += 1;
            conn.failed = true;
        }
        self.after_recv(index, more)
    }

    // ANCHOR: queue_input
    /// Queues a received buffer behind the connection's unparsed ones.
    /// A connection that holds its share stops receiving until `serve` has
    /// parsed half of it: its replies are not leaving.
    fn queue_input(&mut self, index: usize, bid: u16, len: u32) -> io::Result<()> {
        let max_per_conn = self.max_per_conn;
        let conn = &mut self.conns[index];
        conn.starved = false;
        self.pool.len[usize::from(bid)] = len;
        self.pool.next[usize::from(bid)] = NONE;
        if conn.tail == NONE {
            conn.head = bid;
        } else {
            self.pool.next[usize::from(conn.tail)] = bid;
        }
        conn.tail = bid;
        conn.held += 1;
        self.stats.max_held = self.stats.max_held.max(conn.held);
        if conn.held == max_per_conn {
            self.stats.backpressure_pauses += 1;
        }
        if conn.held >= max_per_conn && conn.recv == Shot::Armed {
            // An armed multishot would keep taking buffers: cancel it.
            conn.recv = Shot::Cancelling;
            let target = pack(Kind::Recv, index, conn.generation);
            self.cancel(target)?;
        }
        Ok(())
    }
    // ANCHOR_END: queue_input

    /// Once a receive has ended: re-arm it, or close the connection.
    fn after_recv(&mut self, index: usize, more: bool) -> io::Result<()> {
        if more {
            return Ok(());
        }
        let conn = &self.conns[index];
        if conn.failed || conn.peer_done || conn.closing || self.stopping {
            return self.close_if_done(index);
        }
        self.arm_recv(index, Arm::Again)
    }
}
// ANCHOR_END: on_recv
