//! Handing requests to the kernel: `push` queues one, `enter` makes the one
//! system call that submits them and waits for completions. The core; the
//! bounded retries inside `enter` are its hardening, kept beside the one
//! call they guard.

use std::io;
use std::time::Duration;

use io_uring::squeue;
use nix::libc;

use crate::setup::Server;

impl Server {
    // ANCHOR: push
    /// Queues one request. If the submission queue is full, hands the
    /// queued requests to the kernel first (`enter`), which makes room.
    ///
    /// # Safety
    ///
    /// The entry holds addresses, not borrows: the kernel will use the
    /// memory behind them, and nothing in the type system stops us from
    /// freeing, moving or changing it meanwhile. So the caller promises,
    /// for every address in `entry`:
    ///
    /// - memory the operation reads or writes (a receive's buffer, a
    ///   send's bytes, a read's buffer) stays allocated and where it is,
    ///   and we neither read nor write it, until the request's completion
    ///   has been reaped;
    /// - memory the kernel reads only as it takes the request from the
    ///   submission queue (a timeout's `timespec`, which it copies) stays
    ///   valid and unchanged until then: until the next `enter`.
    pub(crate) unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the crate's `push` asks that the memory the entry
            // points to stay valid for the whole operation. That is what
            // our own caller promised, above.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            self.enter(0)?;
        }
    }
    // ANCHOR_END: push

    // ANCHOR: enter
    /// How many failed `io_uring_enter` calls in a row `enter` tries again.
    const ENTER_RETRIES: u32 = 1000;

    /// One `io_uring_enter`: hands the kernel every queued request, and
    /// with `want` 1 sleeps until at least one completion is there.
    ///
    /// Three errors mean "not now" rather than "broken". With each, the
    /// kernel took none of the queued requests, so trying again repeats
    /// nothing and loses nothing:
    ///
    /// - EINTR: a signal interrupted the sleep (Ctrl-Z and `fg` in a
    ///   shell, which stop and continue the process; a debugger). Try
    ///   again at once.
    /// - EAGAIN: the kernel could not allocate memory for a request.
    ///   Give it a millisecond to find some, then try again.
    /// - EBUSY: on older kernels, completions are waiting that found the
    ///   completion queue full. Ours has room for every completion that can
    ///   be pending (see `setup.rs`), so it should not happen here; if it
    ///   does, it is treated like EAGAIN.
    ///
    /// Bounded: after `ENTER_RETRIES` failures in a row (a second of
    /// EAGAIN), something is wrong that trying again will not fix, and the
    /// error ends the server rather than a loop that spins forever.
    pub(crate) fn enter(&mut self, want: usize) -> io::Result<()> {
        let mut failures = 0;
        loop {
            let result = self.ring.submit_and_wait(want);
            self.stats.enters += 1;
            let e = match result {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            match e.raw_os_error() {
                _ if failures == Self::ENTER_RETRIES => return Err(e),
                Some(libc::EINTR) => {}
                Some(libc::EAGAIN | libc::EBUSY) => std::thread::sleep(Duration::from_millis(1)),
                _ => return Err(e),
            }
            failures += 1;
        }
    }
    // ANCHOR_END: enter
}
