//! Hardening: running out of file descriptors. When `accept` fails with
//! EMFILE or ENFILE, the server stops watching the listener, which would
//! otherwise be reported again at once and spin the loop, until a
//! connection closes or 100 ms have passed, whichever comes first.
//! `accept_waiting` pauses, `close` and the event loop resume.

use std::io;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{EpollEvent, EpollFlags};

use crate::conn::LISTENER;
use crate::setup::Server;

// ANCHOR: out_of_descriptors
/// EMFILE (this process) or ENFILE (the whole system) ran out of descriptors.
pub(crate) fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        Errno::EMFILE | Errno::ENFILE
    )
}

impl Server {
    /// Stops watching the listener, until a connection closes or the
    /// pause has run its time.
    pub(crate) fn pause_accepting(&mut self, why: &io::Error) {
        // Long enough that a server out of descriptors sleeps instead of
        // spinning (ten tries a second), short enough that descriptors
        // freed without a connection closing are used soon.
        const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
        if self.accept_paused_until.is_none() {
            eprintln!(
                "accept failed: {why}; pausing accepts for {ACCEPT_PAUSE:?} \
                 or until a connection closes"
            );
            self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
            self.stats.accept_pauses += 1;
            let _ = self.epoll.delete(&self.listener);
        }
    }

    /// Ends a pause, if there is one: watches the listener again.
    pub(crate) fn resume_accepting(&mut self) {
        if self.accept_paused_until.take().is_some() {
            if let Err(e) = self.epoll.add(
                &self.listener,
                EpollEvent::new(EpollFlags::EPOLLIN, LISTENER),
            ) {
                eprintln!("cannot watch the listener again: {e}");
            }
            // Connections may be waiting already; do not wait for an event.
            // (Out of descriptors still, this pauses again at once.)
            self.accept_waiting();
        }
    }

    /// Ends a pause whose time is up, though no connection closed.
    pub(crate) fn resume_accepting_if_due(&mut self) {
        if self
            .accept_paused_until
            .is_some_and(|until| Instant::now() >= until)
        {
            self.resume_accepting();
        }
    }
}
// ANCHOR_END: out_of_descriptors
