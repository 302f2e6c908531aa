//! The core, new in 06: accepting straight into the registered file table
//! (`--direct-accept`, Linux 5.19). The accept's result is not a descriptor
//! but an index in the table, a **direct descriptor**: no `register_files_update`
//! per connection, and no descriptor in the process's own table at all.
//!
//! Lesson 05's `accept.rs` stays as it is for every other run; this file is
//! its twin for direct descriptors, and differs from it in three places:
//! the accept asks the kernel to pick a free slot of the table; the slot it
//! picks is the connection's slot too; and a connection is closed by a
//! `Close` request on that slot, whose completion frees the slot.

use std::io;

use io_uring::{opcode, squeue, types};
use nix::libc;

use crate::conn::{Conn, Kind, Shot, pack};
use crate::recv::Arm;
use crate::setup::Server;

/// The user_data of a direct descriptor's `Close`: a kind lesson 05's
/// `Kind` does not have (so `unpack` says `None` and 05's code ignores it),
/// with the slot in the low bits. `event_loop.rs` looks for it first.
pub(crate) const CLOSE_TAG: u64 = 0x7f << 56;

/// As in 05's `accept.rs`: multishot while more slots are free than twice
/// the backlog, single-shot nearer the cap.
const MULTISHOT_ACCEPT_ABOVE: usize = 2 * uring_echo_book::listen::BACKLOG as usize;

/// How long accepting pauses when the table is full (ENFILE), as 05's
/// pause after EMFILE. A `static`: the kernel reads it at our next enter.
static DIRECT_PAUSE: types::Timespec = types::Timespec::new().nsec(100_000_000);

// ANCHOR: direct_accept
impl Server {
    /// Arms the accept, whichever kind this run uses.
    pub(crate) fn arm_any_accept(&mut self) -> io::Result<()> {
        if self.features.direct_accept {
            self.arm_direct_accept()
        } else {
            self.arm_accept()
        }
    }

    /// 05's `arm_accept`, with one difference: the kernel puts each new
    /// socket into a free slot of the registered file table and tells us
    /// the slot (`IORING_FILE_INDEX_ALLOC`), instead of giving us a
    /// descriptor. The table has exactly one slot per connection slot
    /// (`register_files_sparse(max_conns)` in `features.rs`), and a table
    /// slot is free exactly when our connection slot is (we free ours when
    /// the `Close` of the table's has completed), so the slot the kernel
    /// picks is always a free connection slot.
    fn arm_direct_accept(&mut self) -> io::Result<()> {
        if self.accept != Shot::Idle || self.stopping || self.free.is_empty() {
            return Ok(());
        }
        let listener = types::Fd(std::os::fd::AsRawFd::as_raw_fd(&self.listener));
        self.accept_multishot = self.free.len() > MULTISHOT_ACCEPT_ABOVE;
        // No SOCK_CLOEXEC: there is no descriptor for an exec to inherit,
        // and the kernel refuses the flag with a table slot (EINVAL).
        let entry = if self.accept_multishot {
            opcode::AcceptMulti::new(listener)
                .allocate_file_index(true)
                .build()
        } else {
            opcode::Accept::new(listener, std::ptr::null_mut(), std::ptr::null_mut())
                .file_index(Some(types::DestinationSlot::auto_target()))
                .build()
        };
        // SAFETY: an accept without an address points at no memory of ours.
        unsafe { self.push(entry.user_data(pack(Kind::Accept, 0, 0)))? };
        self.accept = Shot::Armed;
        Ok(())
    }

    /// 05's `on_accept`, for a result that is a slot of the file table.
    pub(crate) fn on_direct_accept(&mut self, res: i32, more: bool) -> io::Result<()> {
        if !more {
            self.accept = Shot::Idle;
        }
        if res >= 0 {
            let index = res as usize;
            self.stats.accepted += 1;
            self.more.direct_accepts += 1;
            // The kernel chose the slot; `free` only counts free slots here
            // (its entries are not read in this mode), so take any one off.
            let counted = self.free.pop().is_some();
            if !counted || index >= self.conns.len() || self.live(index) || self.stopping {
                // Stopping, or (a bug: cannot happen while the table and
                // `free` agree) a slot we think is taken: close it at once.
                if counted {
                    self.free.push(index as u32);
                }
                if !self.stopping {
                    self.stats.refused += 1;
                }
                return self.close_direct(index);
            }
            self.register_direct(index)?;
            if self.free.is_empty() {
                self.stats.accept_pauses += 1;
            }
            if self.accept == Shot::Armed
                && self.accept_multishot
                && self.free.len() <= MULTISHOT_ACCEPT_ABOVE
            {
                self.cancel(pack(Kind::Accept, 0, 0))?;
                self.accept = Shot::Cancelling;
            }
        } else if matches!(-res, libc::ENFILE | libc::EMFILE | libc::ENOMEM) {
            // ENFILE: no free slot in the table. Re-arming at once would
            // fail at once, forever; pause as 05 does.
            self.stats.accept_pauses += 1;
            if self.accept == Shot::Armed {
                self.cancel(pack(Kind::Accept, 0, 0))?;
                self.accept = Shot::Cancelling;
            }
            return self.arm_direct_timeout();
        } else if -res == libc::EINVAL {
            // The kernel refuses this accept itself: re-arming would spin.
            return Err(io::Error::other(
                "the kernel refused a direct accept (EINVAL); run with --direct-accept off",
            ));
        }
        if self.timeout_armed {
            return Ok(());
        }
        self.arm_direct_accept()
    }

    fn arm_direct_timeout(&mut self) -> io::Result<()> {
        if self.timeout_armed || self.stopping {
            return Ok(());
        }
        let entry =
            opcode::Timeout::new(&DIRECT_PAUSE)
                .build()
                .user_data(pack(Kind::Timeout, 0, 0));
        // SAFETY: the timespec is a `static`, there for the whole run.
        unsafe { self.push(entry)? };
        self.timeout_armed = true;
        Ok(())
    }

    /// A new connection in slot `index`: no `OwnedFd` (there is no
    /// descriptor), the slot marked live and fixed in its `SendSlot`.
    fn register_direct(&mut self, index: usize) -> io::Result<()> {
        let conn = &mut self.conns[index];
        let waiting = conn.waiting;
        let generation = (conn.generation + 1) & 0xff_ffff;
        *conn = Conn {
            generation,
            waiting,
            ..Conn::free()
        };
        let slot = self.slots.get(index);
        // SAFETY: ours; the kernel never reads these two fields, and no
        // send of this slot is in flight: the connection is new.
        unsafe {
            (*slot).direct = true;
            (*slot).fixed = true;
        }
        self.arm_recv(index, Arm::First)
    }
}
// ANCHOR_END: direct_accept

// ANCHOR: direct_close
impl Server {
    /// Whether slot `index` holds a connection: a descriptor we own, or a
    /// direct descriptor in the table.
    pub(crate) fn live(&self, index: usize) -> bool {
        // SAFETY: `direct` is ours; the kernel never reads it.
        self.conns[index].socket.is_some() || unsafe { (*self.slots.get(index)).direct }
    }

    /// Closes the direct descriptor in table slot `index`: a `Close`
    /// request naming the slot (`types::Fixed`), as `close(2)` would for a
    /// descriptor. The slot is free again only at its completion
    /// (`on_direct_closed`): until then the kernel would not hand it out.
    pub(crate) fn close_direct(&mut self, index: usize) -> io::Result<()> {
        let entry = opcode::Close::new(types::Fixed(index as u32))
            .build()
            .user_data(CLOSE_TAG | index as u64);
        // SAFETY: a close points at no memory of ours.
        unsafe { self.push(entry) }
    }

    /// A direct descriptor's `Close` completed: its table slot is free, so
    /// our connection slot is too. Resume accepting if it paused.
    pub(crate) fn on_direct_closed(&mut self, index: usize, res: i32) -> io::Result<()> {
        if res < 0 {
            eprintln!(
                "cannot close direct descriptor {index}: {}",
                io::Error::from_raw_os_error(-res)
            );
        }
        if index < self.conns.len() {
            self.free.push(index as u32);
            self.stats.closed += 1;
        }
        self.arm_any_accept()
    }

    /// At shutdown, before 05's `shutdown`: a connection with nothing in
    /// flight has no completion left to close it, and 05's `shutdown`
    /// closes only slots that own a descriptor. Close those here.
    pub(crate) fn close_idle_direct(&mut self) -> io::Result<()> {
        if !self.features.direct_accept {
            return Ok(());
        }
        for index in 0..self.conns.len() {
            let conn = &self.conns[index];
            if self.live(index) && conn.recv == Shot::Idle && !conn.sending {
                self.close_if_done(index)?;
            }
        }
        Ok(())
    }
}

/// Marks a receive built for descriptor `fd` as naming table slot `fd`
/// instead: the `IOSQE_FIXED_FILE` flag is all that `types::Fixed` adds.
/// For lesson 05's `reserve_recv`, which builds its receive from a
/// `types::Fd`.
pub(crate) fn as_fixed(entry: squeue::Entry) -> squeue::Entry {
    entry.flags(squeue::Flags::FIXED_FILE)
}
// ANCHOR_END: direct_close
