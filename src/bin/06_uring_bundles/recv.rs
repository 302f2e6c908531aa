//! The core: receiving, as in lesson 05, with receive bundles: one
//! completion of a connection's multishot receive may cover several
//! buffers, the consecutive entries of the ring starting at the one it names.

use std::io;
use std::os::fd::AsRawFd;

use io_uring::{cqueue, opcode, squeue, types};
use nix::libc;

use crate::conn::{Kind, RecvMode, Shot, pack};
use crate::direct::as_fixed;
use crate::features::{Target, update_file_table};
use crate::pool::{OPEN, RESERVE};
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
    // ANCHOR: arm_recv_fn
    /// Arms the connection's receive, unless it should not receive now, as
    /// in lesson 05. New: a new connection's socket goes into the file
    /// table first (`--fixed-files`), and the open pool's receive may be a
    /// bundle.
    pub(crate) fn arm_recv(&mut self, index: usize, why: Arm) -> io::Result<()> {
        // The descriptor, or (`--direct-accept`) the table slot, which is
        // the connection's own index and is already in the table.
        // SAFETY: `direct` is ours; the kernel never reads it.
        let direct = unsafe { (*self.slots.get(index)).direct };
        let raw = match self.conns[index].socket.as_ref() {
            Some(socket) => socket.as_raw_fd(),
            None if direct => index as i32,
            None => return Ok(()),
        };
        if why == Arm::First && !direct {
            self.enter_file_table(index, raw);
        }
        let conn = &self.conns[index];
        if (conn.waiting && why != Arm::FromLine) // in line: `wake_waiting` arms it
            || conn.recv != Shot::Idle
            || conn.peer_done
            || conn.failed
            || self.stopping
        {
            return Ok(());
        }
        let fd = types::Fd(raw);
        let (starved, held, generation) = (conn.starved, conn.held, conn.generation);
        let entry = if starved {
            let Some(entry) = self.reserve_recv(index, why, fd) else {
                return Ok(()); // it waits: for its own echoes, or in line
            };
            // 05's reserve receive names a descriptor; a direct one is a slot.
            if direct { as_fixed(entry) } else { entry }
        } else {
            if held >= self.max_per_conn {
                return Ok(()); // backpressure: `on_send` re-arms it
            }
            let bundle = self.features.recv_bundle && self.recv_mode == RecvMode::Multishot;
            let per_completion = match bundle {
                true if self.features.bundle_cap => {
                    BUNDLE.min(self.max_per_conn) * self.buffer_size
                }
                true => 0, // no cap on older kernels: what the socket holds
                false => self.buffer_size,
            };
            open_recv(self.target(index), self.recv_mode, bundle, per_completion)
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
    // ANCHOR_END: arm_recv_fn

    // ANCHOR: file_table
    /// `--fixed-files`: puts a new connection's socket into the file table,
    /// at its slot's index. If that fails, the connection uses its plain
    /// descriptor, which works just as well.
    fn enter_file_table(&mut self, index: usize, raw: i32) {
        let fixed = self.features.fixed_files && update_file_table(&self.ring, index, raw).is_ok();
        // SAFETY: no send of this slot is in flight: the connection is new.
        unsafe { (*self.slots.get(index)).fixed = fixed };
        self.more.fixed_files += u64::from(fixed);
    }

    /// How requests name connection `index`'s socket.
    pub(crate) fn target(&self, index: usize) -> Target {
        // SAFETY: `fixed` is ours; the kernel never reads it.
        if unsafe { (*self.slots.get(index)).fixed } {
            Target::Fixed(index as u32)
        } else {
            Target::Fd(
                self.conns[index]
                    .socket
                    .as_ref()
                    .map_or(-1, |s| s.as_raw_fd()),
            )
        }
    }
    // ANCHOR_END: file_table
}

// ANCHOR: open_recv
/// Most buffers one bundle completion may cover: 64 KiB of 4 KiB buffers,
/// and never more than a connection's share. The length of a multishot
/// receive caps each of its completions on recent kernels (`mshot_len` in
/// io_uring/net.c, 6.17 at the latest); before that it had to be 0, and a
/// bundle took what the socket held, up to the kernel's own limit.
const BUNDLE: u32 = 16;

/// Flags of a receive request, in its `ioprio` field (the io-uring crate
/// does not export them): `POLL_FIRST` (Linux 5.19, see lesson 05),
/// `MULTISHOT` (6.0), and `BUNDLE` (6.10): fill as many buffers as the
/// data needs, up to `len` bytes, in one completion.
const RECV_POLL_FIRST: u16 = 1;
const RECV_MULTISHOT: u16 = 2;
const RECV_BUNDLE: u16 = 16;

/// A receive from the open pool, as in lesson 05, optionally a bundle.
/// `len` caps one completion: a whole buffer, or a bundle's bytes.
fn open_recv(target: Target, mode: RecvMode, bundle: bool, len: u32) -> squeue::Entry {
    let mut flags = RECV_POLL_FIRST;
    let len = match mode {
        RecvMode::Multishot if bundle => {
            flags |= RECV_MULTISHOT | RECV_BUNDLE;
            len
        }
        RecvMode::Multishot => {
            flags |= RECV_MULTISHOT;
            0 // a whole buffer each time
        }
        RecvMode::OneBuffer => len,
    };
    let recv = match target {
        Target::Fd(fd) => opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), len),
        Target::Fixed(i) => opcode::Recv::new(types::Fixed(i), std::ptr::null_mut(), len),
    };
    recv.buf_group(OPEN)
        .ioprio(flags)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT)
}
// ANCHOR_END: open_recv
// ANCHOR_END: arm_recv

// ANCHOR: on_recv
impl Server {
    // ANCHOR: on_recv_fn
    pub(crate) fn on_recv(&mut self, index: usize, res: i32, flags: u32) -> io::Result<()> {
        let more = cqueue::more(flags);
        if !more {
            // The receive has ended, also when `res` is data.
            self.conns[index].recv = Shot::Idle;
            if self.conns[index].recv_from == RESERVE {
                self.pool.promised -= 1; // the buffer is ours now, or back
            }
        }
        // Any buffer a completion names is ours, whatever `res` says. One
        // that carries no bytes goes straight back. One that does joins the
        // queue, with the bundle's other buffers, even on a connection that
        // failed or at shutdown: `close_if_done` gives the queue back. (Not
        // at once, one by one: giving `bid` back moves it to a new place in
        // the ring, and "the entries after it" would then be others.)
        match cqueue::buffer_select(flags) {
            Some(bid) if res > 0 => {
                if !self.conns[index].failed && !self.stopping {
                    self.stats.recv_completions += 1;
                    self.batching.saw_receive(&mut self.conns[index].window);
                }
                if self.pool.incremental(bid) {
                    self.queue_pieces(index, bid, res as u32, cqueue::buffer_more(flags))?;
                } else {
                    self.queue_bundle(index, bid, res as u32)?;
                }
            }
            Some(bid) => self.pool.unused(bid, cqueue::buffer_more(flags)),
            // Cannot happen with a buffer-select receive.
            None if res > 0 => self.conns[index].failed = true,
            None => {}
        }
        let conn = &mut self.conns[index];
        if res == 0 {
            conn.peer_done = true; // EOF: echo what is queued, then close
        } else if -res == libc::ENOBUFS {
            self.stats.enobufs += 1;
            conn.starved = true; // the next receive comes from the reserve
        } else if res < 0 && -res != libc::ECANCELED {
            self.stats.conn_errors += 1;
            conn.failed = true;
        }
        self.after_recv(index, more)
    }
    // ANCHOR_END: on_recv_fn

    /// How many buffers `res` bytes filled: each but the last is full.
    pub(crate) fn buffers_in(&self, res: i32) -> u16 {
        let res = res.max(1) as u32;
        res.div_ceil(self.buffer_size) as u16
    }

    /// Once a receive has ended: re-arm it, or close the connection.
    fn after_recv(&mut self, index: usize, more: bool) -> io::Result<()> {
        if more {
            return Ok(());
        }
        let conn = &self.conns[index];
        if conn.failed || conn.peer_done || self.stopping {
            return self.close_if_done(index);
        }
        self.arm_recv(index, Arm::Again)
    }
}
// ANCHOR_END: on_recv
