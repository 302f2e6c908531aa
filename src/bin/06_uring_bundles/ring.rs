//! The core, new in 06: the ring, held so that a registered ring
//! descriptor (`--register-ring`, Linux 5.18) is used by every enter.
//!
//! The `io-uring` crate keeps that registration in a `Submitter` value:
//! only enters made through the value that registered pass the index and
//! `IORING_ENTER_REGISTERED_RING`. `IoUring::submit()` and friends make a
//! fresh `Submitter` at every call, which knows nothing of it. So the
//! server keeps one `Submitter` for the whole run, next to the ring it
//! borrows. For that borrow to be plain safe Rust, the ring lives for the
//! rest of the process (`Box::leak`): it is closed when the process exits,
//! after `shutdown` has reaped every request, as before.

use std::io;
use std::ops::Deref;

use io_uring::{CompletionQueue, IoUring, SubmissionQueue, Submitter};

// ANCHOR: ring
/// The ring, and the one `Submitter` every enter goes through. Offers the
/// methods of `IoUring` that the loop calls (`submission`, `completion`,
/// `submit`, `submit_and_wait`, `submitter`), and everything else of
/// `IoUring` through `Deref` (registrations, parameters).
pub(crate) struct Ring {
    ring: &'static IoUring,
    submitter: Submitter<'static>,
    /// The ring's descriptor is registered: every enter passes its index.
    pub(crate) registered: bool,
}

impl Ring {
    /// Keeps `ring` for the rest of the process; with `register`, registers
    /// its descriptor (`IORING_REGISTER_RING_FDS`), or says in one line why
    /// it could not and goes on with the plain descriptor.
    pub(crate) fn new(ring: IoUring, register: bool) -> Ring {
        let ring: &'static IoUring = Box::leak(Box::new(ring));
        let mut submitter = ring.submitter();
        let registered = register
            && match submitter.register_ring_fd() {
                Ok(()) => true,
                Err(e) => {
                    eprintln!(
                        "--register-ring: cannot register the ring's descriptor ({e}; Linux \
                         5.18, IORING_REGISTER_RING_FDS); plain enters"
                    );
                    false
                }
            };
        Ring {
            ring,
            submitter,
            registered,
        }
    }

    /// The submitter that registered the descriptor, if it did.
    pub(crate) fn submitter(&self) -> &Submitter<'static> {
        &self.submitter
    }

    pub(crate) fn submit(&self) -> io::Result<usize> {
        self.submitter.submit()
    }

    pub(crate) fn submit_and_wait(&self, want: usize) -> io::Result<usize> {
        self.submitter.submit_and_wait(want)
    }

    /// The submission queue, as `IoUring::submission` gives it.
    pub(crate) fn submission(&mut self) -> SubmissionQueue<'_> {
        // SAFETY: the crate's rule is that no other `SubmissionQueue` of
        // this ring exists meanwhile. The one returned borrows `self`
        // mutably, and no other code has the ring: `new` leaked it into
        // this value alone.
        unsafe { self.ring.submission_shared() }
    }

    /// The completion queue, as `IoUring::completion` gives it.
    pub(crate) fn completion(&mut self) -> CompletionQueue<'_> {
        // SAFETY: as in `submission`, for completion queues.
        unsafe { self.ring.completion_shared() }
    }
}

impl Deref for Ring {
    type Target = IoUring;

    fn deref(&self) -> &IoUring {
        self.ring
    }
}
// ANCHOR_END: ring
