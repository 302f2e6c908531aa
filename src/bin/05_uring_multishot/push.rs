//! The core: queuing a request. Every request goes through `push`, an
//! `unsafe fn` whose contract is the one thing io_uring asks of us: the
//! memory a request points at stays put until its last completion.

use std::io;

use io_uring::{opcode, squeue};
use nix::libc;

use crate::conn::{Kind, pack};
use crate::setup::Server;

// ANCHOR: push
impl Server {
    /// Queues one request. If the submission queue is full, hands the queued
    /// requests to the kernel first, which empties it.
    ///
    /// # Safety
    ///
    /// The kernel uses what `entry` points at after this returns. Until the
    /// request's last completion has been reaped, that memory must stay
    /// allocated and in place, and we must not write it (nor hold a
    /// reference to it) while the kernel may write it. A pointer the kernel
    /// only reads when it takes the request from the queue (a timeout's
    /// `timespec`) must stay valid until our next `io_uring_enter`.
    pub(crate) unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: our caller keeps the promise above for `entry`.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            self.submit_queued()?;
        }
    }

    /// One `io_uring_enter` that hands the queued requests to the kernel
    /// without waiting; tried again, a bounded number of times, when the
    /// kernel asks for it (see `RETRIES`).
    pub(crate) fn submit_queued(&mut self) -> io::Result<()> {
        let mut tries = 0;
        loop {
            self.stats.enters += 1;
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if is_transient(&e) && tries < RETRIES => {
                    tries += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks the kernel to cancel the request whose user_data is `target`.
    pub(crate) fn cancel(&mut self, target: u64) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(pack(Kind::Cancel, 0, 0));
        // SAFETY: a cancel points at no memory of ours.
        unsafe { self.push(entry) }
    }
}

/// How often in a row the kernel may ask us to try an enter again (EAGAIN:
/// no memory for a request just now; EBUSY: the same on older kernels;
/// EINTR: a signal interrupted the wait) before we give up. None of these is
/// the server's fault, and each usually clears at the next try.
pub(crate) const RETRIES: u32 = 100;

pub(crate) fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN | libc::EBUSY | libc::EINTR)
    )
}
// ANCHOR_END: push
