//! Hardening: expired keys nobody reads again. A key with an expiry is
//! deleted when a command finds it expired; the ones no command touches
//! again would stay forever. So a timer, on the ring like everything else,
//! fires ten times a second (Redis's default `hz`), and each time a bounded
//! sweep looks at a few keys that have an expiry.

use std::io;

use io_uring::{opcode, types};

use crate::conn::{Kind, pack};
use crate::setup::Server;

// ANCHOR: sweep
/// How often the sweep runs. A `static`: the kernel reads the timespec
/// when it takes the request from the queue, at our next enter.
static SWEEP_EVERY: types::Timespec = types::Timespec::new().nsec(100_000_000);

/// Keys the sweep looks at each time, at most (Redis samples 20 per loop
/// of its active expiry): a sweep never holds up the loop for long.
pub(crate) const SWEEP_KEYS: usize = 20;

impl Server {
    /// Arms the sweep's timer (a single-shot timeout, armed again when it
    /// fires).
    pub(crate) fn arm_sweep(&mut self) -> io::Result<()> {
        if self.extra.sweep_armed || self.stopping {
            return Ok(());
        }
        let entry = opcode::Timeout::new(&SWEEP_EVERY)
            .build()
            .user_data(pack(Kind::Sweep, 0, 0));
        // SAFETY: the timespec is a `static`, there for the whole run.
        unsafe { self.push(entry)? };
        self.extra.sweep_armed = true;
        Ok(())
    }

    /// The timer fired (or was cancelled, at shutdown): sweep, and arm it again.
    pub(crate) fn on_sweep(&mut self) -> io::Result<()> {
        self.extra.sweep_armed = false;
        self.tick();
        let deleted = self.extra.store.sweep(self.extra.now, SWEEP_KEYS);
        self.extra.resp.expired_swept += deleted as u64;
        self.arm_sweep()
    }

    /// At shutdown: cancel the timer, so nothing of ours stays in flight.
    pub(crate) fn stop_sweep(&mut self) -> io::Result<()> {
        if self.extra.sweep_armed {
            self.cancel(pack(Kind::Sweep, 0, 0))?;
        }
        Ok(())
    }

    /// Reads the clock once for a batch of completions: milliseconds since
    /// start-up, the time every expiry is measured in.
    pub(crate) fn tick(&mut self) {
        self.extra.now = self.extra.started.elapsed().as_millis() as u64;
    }
}
// ANCHOR_END: sweep
