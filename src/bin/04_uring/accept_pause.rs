//! Out of descriptors: pausing accepts instead of spinning, until a
//! connection closes or a 100 ms timeout fires. Hardening, for the
//! `EMFILE` that `on_accept` (in `accept.rs`) hands over.

use std::io;

use io_uring::{opcode, types};

use crate::conn::{Kind, pack};
use crate::setup::Server;

// ANCHOR: pause
/// How long accepting pauses after EMFILE. The kernel copies a timeout's
/// `timespec` when it takes the request from the submission queue (at our
/// next `io_uring_enter`), not later: it only has to be valid until then.
/// A `static` is valid, and unchanged, for as long as the program runs.
static PAUSE: types::Timespec = types::Timespec::new().nsec(100_000_000);
// ANCHOR_END: pause

impl Server {
    // ANCHOR: accept_pause
    /// Out of descriptors (or of kernel memory). Submitting the accept
    /// again at once would fail again at once, forever: a busy loop
    /// through the ring. Pause until a connection closes or the
    /// timeout fires.
    pub(crate) fn pause_accepts(&mut self, errno: i32) -> io::Result<()> {
        eprintln!(
            "accept failed: {}; pausing accepts until a connection closes",
            io::Error::from_raw_os_error(errno)
        );
        self.stats.accept_pauses += 1;
        self.arm_timeout()
    }

    fn arm_timeout(&mut self) -> io::Result<()> {
        if self.timeout_armed || self.stopping {
            return Ok(());
        }
        let entry = opcode::Timeout::new(&PAUSE)
            .build()
            .user_data(pack(Kind::Timeout, 0, 0));
        // SAFETY: the only memory is `PAUSE`, which the kernel copies at the
        // next enter. A `static` lives as long as the program and is never
        // written, so it is valid and unchanged until then, and after.
        unsafe { self.push(entry) }?;
        self.timeout_armed = true;
        Ok(())
    }

    /// The pause is over: try accepting again.
    pub(crate) fn on_timeout(&mut self) -> io::Result<()> {
        self.timeout_armed = false;
        self.submit_accept()
    }
    // ANCHOR_END: accept_pause
}
