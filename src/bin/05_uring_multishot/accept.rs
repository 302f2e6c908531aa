//! The core: accepting. One multishot accept serves every client while the
//! connection table has room; near its cap, one single-shot accept at a
//! time; out of descriptors, a pause. Then a new connection gets its slot.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{opcode, types};
use nix::libc;

use crate::conn::{Conn, Kind, Shot, pack};
use crate::recv::Arm;
use crate::setup::Server;

// ANCHOR: accept
/// How long accepting pauses after EMFILE. A `static`: the kernel copies it
/// once, when it takes the timeout request from the submission queue at our
/// next enter, and a static is there whenever that is.
static ACCEPT_PAUSE: types::Timespec = types::Timespec::new().nsec(100_000_000);

/// A multishot accept keeps accepting while the listen queue is not empty
/// (the kernel's accept loops while `IORING_CQE_F_SOCK_NONEMPTY` holds), so
/// by the time a cancel arrives it may have taken the whole queue, up to the
/// backlog, and more if clients keep coming. So multishot only while more
/// slots are free than twice the backlog; nearer the cap, one single-shot
/// accept at a time, which takes exactly one client, and none while no slot
/// is free. Clients beyond the cap wait in the kernel's queue.
const MULTISHOT_ACCEPT_ABOVE: usize = 2 * uring_echo_book::listen::BACKLOG as usize;

impl Server {
    // ANCHOR: arm_accept
    /// Arms the accept: a multishot one while many slots are free, a
    /// single-shot one near the cap (see `MULTISHOT_ACCEPT_ABOVE`).
    pub(crate) fn arm_accept(&mut self) -> io::Result<()> {
        if self.accept != Shot::Idle || self.stopping || self.free.is_empty() {
            return Ok(());
        }
        let listener = types::Fd(self.listener.as_raw_fd());
        self.accept_multishot = self.free.len() > MULTISHOT_ACCEPT_ABOVE;
        let entry = if self.accept_multishot {
            opcode::AcceptMulti::new(listener)
                .flags(libc::SOCK_CLOEXEC)
                .build()
        } else {
            // No address wanted: two null pointers.
            opcode::Accept::new(listener, std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
        };
        // SAFETY: an accept without an address points at no memory of ours.
        unsafe { self.push(entry.user_data(pack(Kind::Accept, 0, 0)))? };
        self.accept = Shot::Armed;
        Ok(())
    }
    // ANCHOR_END: arm_accept

    // ANCHOR: on_accept
    pub(crate) fn on_accept(&mut self, res: i32, more: bool) -> io::Result<()> {
        if !more {
            // Ended: a single-shot accept always, a multishot one by an
            // error, by our cancel, or by the kernel for its own reasons.
            self.accept = Shot::Idle;
        }
        if res >= 0 {
            // SAFETY: a successful accept's result is a descriptor the
            // kernel just created for us; nothing else owns it.
            let socket = unsafe { OwnedFd::from_raw_fd(res) };
            self.stats.accepted += 1;
            match self.free.pop() {
                Some(index) if !self.stopping => self.register(index as usize, socket)?,
                // We are stopping: `socket` drops here, which closes it.
                Some(index) => {
                    self.free.push(index);
                    self.stats.closed += 1;
                }
                // The table is full. The headroom below makes this next to
                // impossible; if it ever happens, the client is closed and
                // counted, and `refused` at exit shows it.
                None => self.stats.refused += 1,
            }
            if self.free.is_empty() {
                self.stats.accept_pauses += 1; // resumed by `close_if_done`
            }
            if self.accept == Shot::Armed
                && self.accept_multishot
                && self.free.len() <= MULTISHOT_ACCEPT_ABOVE
            {
                // Close to the cap: from now on, one accept at a time.
                self.cancel(pack(Kind::Accept, 0, 0))?;
                self.accept = Shot::Cancelling;
            }
        } else if matches!(
            -res,
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
        ) {
            // Out of descriptors (or of kernel memory). Re-arming at once
            // would fail again at once, forever: a busy loop through the
            // ring. Pause until a connection closes or the timeout fires.
            eprintln!(
                "accept failed: out of file descriptors or memory; pausing accepts until one is free"
            );
            self.stats.accept_pauses += 1;
            if self.accept == Shot::Armed {
                self.cancel(pack(Kind::Accept, 0, 0))?;
                self.accept = Shot::Cancelling;
            }
            return self.arm_timeout();
        }
        // Other errors (ECONNABORTED: a client gave up in the queue;
        // ECANCELED: ours) need nothing but a re-arm, if it ended.
        if self.timeout_armed {
            return Ok(()); // the timeout re-arms it
        }
        self.arm_accept()
    }
    // ANCHOR_END: on_accept

    fn arm_timeout(&mut self) -> io::Result<()> {
        if self.timeout_armed || self.stopping {
            return Ok(());
        }
        let entry =
            opcode::Timeout::new(&ACCEPT_PAUSE)
                .build()
                .user_data(pack(Kind::Timeout, 0, 0));
        // SAFETY: the timespec is a `static`, there for the whole run, and the
        // kernel reads it only once, when it takes the request from the queue.
        unsafe { self.push(entry)? };
        self.timeout_armed = true;
        Ok(())
    }
}
// ANCHOR_END: accept

// ANCHOR: register
impl Server {
    /// Puts a new connection in slot `index` and arms its receive.
    fn register(&mut self, index: usize, socket: OwnedFd) -> io::Result<()> {
        let conn = &mut self.conns[index];
        let waiting = conn.waiting;
        let generation = (conn.generation + 1) & 0xff_ffff;
        *conn = Conn {
            socket: Some(socket),
            generation,
            waiting,
            ..Conn::free()
        };
        self.arm_recv(index, Arm::First)
    }
}
// ANCHOR_END: register
