//! Hardening: stopping cleanly. SIGINT and SIGTERM arrive as an event of
//! the loop, through a signalfd, and the server then closes every
//! connection and exits 0.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::setup::Server;

// ANCHOR: signals
/// SIGINT and SIGTERM as readable bytes on a descriptor, one more event
/// for the loop.
pub(crate) fn signal_fd() -> Result<SignalFd, String> {
    // They must be blocked first: otherwise the default action (exit at
    // once) would run before we could read them.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block()
        .map_err(|e| format!("cannot block SIGINT/SIGTERM: {e}"))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("cannot create a signalfd: {e}"))
}
// ANCHOR_END: signals

impl Server {
    // ANCHOR: shutdown
    /// Stops accepting and closes every connection. Dropping the server
    /// afterwards closes the listener, the epoll instance and the signalfd.
    pub(crate) fn shutdown(&mut self) {
        let _ = self.epoll.delete(&self.listener);
        let open = self.conns.iter().flatten().count();
        self.conns.clear();
        eprintln!("closed {open} connections");
    }
    // ANCHOR_END: shutdown
}
