//! Accepting: one `Accept` in flight at a time, and what its completion
//! brings. The core; what to do when the process is out of descriptors is
//! in `accept_pause.rs`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{opcode, types};
use nix::libc;

use crate::conn::{Kind, pack};
use crate::setup::Server;

impl Server {
    // ANCHOR: accept
    /// One accept request in flight. Its completion carries the new socket's
    /// descriptor (or an error), and we submit the next accept then.
    pub(crate) fn submit_accept(&mut self) -> io::Result<()> {
        if self.accepting || self.stopping || self.live() >= self.max_conns {
            return Ok(());
        }
        let entry = opcode::Accept::new(
            types::Fd(self.listener.as_raw_fd()),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(pack(Kind::Accept, 0, 0));
        // SAFETY: the two null pointers ask for no peer address: this
        // request points to no memory of ours.
        unsafe { self.push(entry) }?;
        self.accepting = true;
        Ok(())
    }

    pub(crate) fn on_accept(&mut self, res: i32) -> io::Result<()> {
        self.accepting = false;
        if res >= 0 {
            // SAFETY: a successful accept completion's result is a new
            // descriptor that the kernel just created for us; nothing else in
            // this process knows it, so `OwnedFd` may own and close it.
            let socket = unsafe { OwnedFd::from_raw_fd(res) };
            self.stats.accepted += 1;
            if self.stopping {
                return Ok(()); // dropped, so closed
            }
            self.register(socket)?;
        } else if matches!(
            -res,
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
        ) {
            // Out of descriptors (or of kernel memory): see `accept_pause.rs`.
            return self.pause_accepts(-res);
        } else if -res != libc::ECONNABORTED && -res != libc::EINTR && -res != libc::ECANCELED {
            eprintln!("accept failed: {}", io::Error::from_raw_os_error(-res));
        }
        if self.live() >= self.max_conns {
            self.stats.accept_pauses += 1;
            return Ok(()); // resumed by `close`
        }
        self.submit_accept()
    }
    // ANCHOR_END: accept
}
