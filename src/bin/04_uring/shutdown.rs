//! Stopping cleanly: SIGINT and SIGTERM arrive through the ring as one more
//! completion; then every request still in flight is cancelled and reaped
//! before any memory is freed. Hardening; so is `Drop for Server`, which
//! leaks rather than frees what the kernel may still hold.

use std::io;
use std::os::fd::AsRawFd;

use io_uring::{opcode, types};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::conn::{Conn, KernelBuf, Kind, pack};
use crate::setup::Server;

// ANCHOR: signalfd
/// SIGINT and SIGTERM arrive as reads on a signalfd, which the ring
/// reads like any other file. Blocked first, so the default action
/// (exit at once) does not run.
pub(crate) fn signal_fd() -> Result<SignalFd, String> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block()
        .map_err(|e| format!("cannot block SIGINT/SIGTERM: {e}"))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("cannot create a signalfd: {e}"))
}
// ANCHOR_END: signalfd

impl Server {
    // ANCHOR: signal_read
    pub(crate) fn submit_signal_read(&mut self) -> io::Result<()> {
        let entry = opcode::Read::new(
            types::Fd(self.signals.as_raw_fd()),
            self.siginfo.addr(0),
            self.siginfo.len() as u32,
        )
        .build()
        .user_data(pack(Kind::Signal, 0, 0));
        // SAFETY: the read writes into `siginfo`'s 128 bytes. They stay
        // where they are when the server moves (only the `KernelBuf`, an
        // address, moves), and no code of ours reads or writes them. They
        // are freed only with the server: after `shutdown` has reaped every
        // completion, or, if it is dropped with requests in flight (an
        // error, a panic), never: `Server`'s `Drop` leaks them.
        unsafe { self.push(entry) }
    }

    /// The signal's completion: the event loop stops, and `run` calls
    /// `shutdown`.
    pub(crate) fn on_signal(&mut self) -> io::Result<()> {
        eprintln!("signal received: closing every connection");
        self.stopping = true;
        Ok(())
    }
    // ANCHOR_END: signal_read

    // ANCHOR: shutdown
    /// Cancels every request still in flight and waits for all their
    /// completions before anything is freed: until then the kernel may still
    /// write into our buffers. The listener closes when the server drops,
    /// with no accept pending on it, so the port is free at once.
    pub(crate) fn shutdown(&mut self) -> io::Result<()> {
        // Counted now: a cancelled receive closes its connection as it
        // completes, before the count below would see it.
        let open = self.live();
        let mut targets = Vec::new();
        if self.accepting {
            targets.push(pack(Kind::Accept, 0, 0));
        }
        if self.timeout_armed {
            targets.push(pack(Kind::Timeout, 0, 0));
        }
        for (index, conn) in self.conns.iter().enumerate() {
            if let Some(Conn {
                in_flight: Some(kind),
                generation,
                ..
            }) = conn
            {
                targets.push(pack(*kind, index, *generation));
            }
        }
        for target in targets {
            let cancel =
                opcode::AsyncCancel::new(target)
                    .build()
                    .user_data(pack(Kind::Cancel, 0, 0));
            // SAFETY: a cancel names its target by `user_data`; it points to
            // no memory of ours.
            unsafe { self.push(cancel) }?;
        }
        while self.in_flight > 0 {
            self.enter(1)?;
            self.reap()?;
        }
        self.conns.clear();
        eprintln!("closed {open} connections");
        Ok(())
    }
    // ANCHOR_END: shutdown
}

// ANCHOR: server_drop
impl Drop for Server {
    /// After a clean `shutdown` nothing is in flight, and the fields drop as
    /// usual. But the server can also be dropped with requests in flight:
    /// when the event loop failed, or while a panic unwinds. Then the kernel
    /// may still write into our buffers, so they are leaked, never freed.
    /// The process is on its way out and gives the memory back as it ends.
    fn drop(&mut self) {
        if self.in_flight > 0 {
            std::mem::forget(std::mem::take(&mut self.conns));
            std::mem::forget(std::mem::replace(&mut self.siginfo, KernelBuf::new(0)));
        }
    }
}
// ANCHOR_END: server_drop
