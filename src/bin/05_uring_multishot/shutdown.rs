//! Hardening: signals and shutdown. SIGINT and SIGTERM arrive as a read on
//! a signalfd, through the ring; the memory that read writes into; and a
//! shutdown that cancels every request and waits for the kernel to let go
//! of our memory before anything is freed.

use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use io_uring::{opcode, types};
use nix::libc;

use crate::conn::{Kind, Shot, pack};
use crate::setup::Server;

// ANCHOR: kernel_bytes
/// Heap memory the kernel writes into while a request is in flight: the
/// `signalfd_siginfo` that the signal read fills.
///
/// Not a `Box`: a `Box` tells Rust that nothing else reads or writes what it
/// points to, and moving it (as `main` moves the `Server` out of
/// `Server::new`, after the read was queued) asserts that again, while the
/// kernel may be writing. So we make it with a `Box`, let go of the `Box` at
/// once, and keep a raw pointer, which promises nothing.
pub(crate) struct KernelBytes {
    ptr: NonNull<[u8; SIGINFO_BYTES]>,
}

/// The size of one `struct signalfd_siginfo`: what one signal reads as.
pub(crate) const SIGINFO_BYTES: usize = std::mem::size_of::<libc::signalfd_siginfo>();

impl KernelBytes {
    pub(crate) fn new() -> KernelBytes {
        let ptr = NonNull::from(Box::leak(Box::new([0u8; SIGINFO_BYTES])));
        KernelBytes { ptr }
    }

    pub(crate) fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr().cast()
    }
}

impl Drop for KernelBytes {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `Box::leak` in `new` and is freed only
        // here. No read into it is in flight: the `Server` that owns it is
        // dropped only after `shutdown` reaped every completion (`main` and
        // `Server::new` forget it otherwise).
        drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
    }
}
// ANCHOR_END: kernel_bytes

// ANCHOR: signal_read
impl Server {
    /// Queues a read of one `signalfd_siginfo` from the signalfd, into
    /// `siginfo`: its completion is how a signal reaches the loop.
    pub(crate) fn submit_signal_read(&mut self) -> io::Result<()> {
        let entry = opcode::Read::new(
            types::Fd(self.signals.as_raw_fd()),
            self.siginfo.as_mut_ptr(),
            SIGINFO_BYTES as u32,
        )
        .build()
        .user_data(pack(Kind::Signal, 0, 0));
        // SAFETY: `siginfo` is heap memory held by a raw pointer only; it is
        // freed when the server drops, after every completion is reaped, and
        // nothing of ours touches it until the read completes.
        unsafe { self.push(entry) }
    }

    /// The signal read completed. A whole `signalfd_siginfo` is a signal:
    /// stop. Anything else is not, and the read goes out again (a few
    /// times in a row at most, so a broken signalfd ends the loop with an
    /// error instead of spinning).
    pub(crate) fn on_signal(&mut self, res: i32) -> io::Result<()> {
        if res == SIGINFO_BYTES as i32 {
            self.stopping = true;
            return Ok(());
        }
        let what = if res < 0 {
            io::Error::from_raw_os_error(-res).to_string()
        } else {
            format!("{res} bytes")
        };
        self.signal_errors += 1;
        if self.signal_errors > 3 {
            return Err(io::Error::other(format!(
                "reading the signalfd failed again: {what}"
            )));
        }
        eprintln!("reading the signalfd brought no signal ({what}); reading again");
        self.submit_signal_read()
    }
}
// ANCHOR_END: signal_read

// ANCHOR: shutdown
impl Server {
    /// Cancels every request still in flight and waits for all of their
    /// last completions before anything is freed: until then the kernel may
    /// still write into our buffers. The accept is among them, so when the
    /// listener closes nothing holds it, and the port is free at once.
    pub(crate) fn shutdown(&mut self) -> io::Result<()> {
        // Counted now, from the counters: a cancelled receive closes its
        // connection as it completes, before the end of this function (and
        // a connection of lesson 06's direct accept has no socket here).
        let open = self.stats.accepted - self.stats.closed - self.stats.refused;
        if self.accept == Shot::Armed {
            self.cancel(pack(Kind::Accept, 0, 0))?;
        }
        if self.timeout_armed {
            self.cancel(pack(Kind::Timeout, 0, 0))?;
        }
        for index in 0..self.conns.len() {
            let conn = &self.conns[index];
            let generation = conn.generation;
            let (recv_armed, sending) = (conn.recv == Shot::Armed, conn.sending);
            if recv_armed {
                self.conns[index].recv = Shot::Cancelling;
                self.cancel(pack(Kind::Recv, index, generation))?;
            }
            if sending {
                // A send to a peer that does not read would wait forever.
                self.cancel(pack(Kind::Send, index, generation))?;
            }
        }
        while self.in_flight > 0 {
            self.enter()?;
            self.reap()?;
        }
        // Close what had nothing in flight.
        for index in 0..self.conns.len() {
            if self.conns[index].socket.is_some() {
                self.close_if_done(index)?;
            }
        }
        // No receive is left: the kernel may let go of the buffer rings.
        if let Err(e) = self.pool.unregister(&self.ring) {
            eprintln!("cannot unregister the buffer rings: {e}");
        }
        eprintln!("closed {open} connections");
        Ok(())
    }
}
// ANCHOR_END: shutdown
