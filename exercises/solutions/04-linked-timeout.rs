//! Exercise 04-linked-timeout, the reference solution.
//!
//! Every receive goes to the kernel with a timer linked to it: the receive
//! carries `IOSQE_IO_LINK`, and an `IORING_OP_LINK_TIMEOUT` follows it in
//! the same submission. Whichever finishes first cancels the other. Data in
//! time: the receive completes as usual and the timer's completion says
//! -ECANCELED. Silence for `--idle-timeout` seconds: the receive completes
//! with -ECANCELED, which the server already treats as the end of the
//! connection, and the timer's completion says -ETIME. Two completions
//! either way, in either order, so a connection now has up to two requests
//! in the kernel, and is closed only when the last of them has come back.
//!
//! Only the `todo` region differs from the starter; the rest of the server
//! is `exercises/programs/04-linked-timeout.rs` and `exercises/common/uring.rs`.
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 04-linked-timeout --solution
//! ```

include!("../programs/04-linked-timeout.rs");

#[cfg(target_os = "linux")]
// ANCHOR: solution
mod todo {
    use std::io;
    use std::os::fd::AsRawFd;
    use std::sync::OnceLock;

    use io_uring::{opcode, squeue, types};
    use nix::libc;

    use super::Server;
    use super::setup::conn::{Kind, pack};

    /// How long a receive may wait. Each linked timeout points to it, and
    /// the kernel copies it from there as it takes the timeout from the
    /// submission queue, at the next `enter`: it need only be valid until
    /// then. A `static`, like lesson 04's `PAUSE`, valid for as long as the
    /// program runs; set once, at start, from the option.
    static IDLE: OnceLock<types::Timespec> = OnceLock::new();

    /// The option, given once at start.
    pub fn set_idle_timeout(secs: u64) {
        eprintln!("idle timeout: {secs} s");
        IDLE.get_or_init(|| types::Timespec::new().sec(secs));
    }

    /// A connection's requests in the kernel, whose completions have not
    /// come yet. While there is one, its socket must stay open and its
    /// buffer must not be freed.
    pub struct Requests {
        in_flight: u32,
        /// The connection is over, and is closed when `in_flight` reaches
        /// zero.
        closing: bool,
    }

    impl Requests {
        pub fn new() -> Requests {
            Requests {
                in_flight: 0,
                closing: false,
            }
        }

        /// One more is in the kernel.
        pub fn started(&mut self) {
            self.in_flight += 1;
        }

        /// One came back: `on_completion` calls this for every completion
        /// of the connection, before it hands the completion on.
        pub fn finished(&mut self) {
            self.in_flight -= 1;
        }
    }

    impl Server {
        /// Receives into the connection's whole buffer, for at most the
        /// idle timeout.
        pub fn submit_recv(&mut self, index: usize) -> io::Result<()> {
            let Some(conn) = self.conns[index].as_mut() else {
                return Ok(());
            };
            let fd = types::Fd(conn.socket.as_raw_fd());
            // IO_LINK: the next entry in the submission belongs to this one.
            let recv = opcode::Recv::new(fd, conn.buf.addr(0), conn.buf.len() as u32)
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(pack(Kind::Recv, index, conn.generation));
            // The timer runs from when the receive starts, and acts on it
            // alone.
            let idle: &'static types::Timespec = IDLE.get().expect("set at start");
            let timeout = opcode::LinkTimeout::new(idle).build().user_data(pack(
                Kind::Timeout,
                index,
                conn.generation,
            ));
            conn.requests.started();
            conn.requests.started();
            // A link ends with the submission it is in. If the queue filled
            // up between the two pushes, `push` would submit the receive
            // alone: it would run without a timer, and the timeout, linked to
            // nothing, would fail with EINVAL. No check notices, as the echo
            // still works; only stderr does. With a 4-entry ring and without
            // this, `concurrent`, `idle` and `churn` passed here, with 632
            // failed timeouts. So make room for both first.
            let room = {
                let queue = self.ring.submission();
                queue.capacity() - queue.len()
            };
            if room < 2 {
                self.enter(0)?;
            }
            // SAFETY: the receive writes into `conn.buf`: as for the send (in
            // `submit_send`), its bytes stay put, are freed only when `close`
            // finds nothing in flight, after this receive's completion, and
            // we never touch them.
            unsafe { self.push(recv) }?;
            // SAFETY: the timeout's only memory is `IDLE`'s value, a static:
            // never freed, and never written once set, so valid at the next
            // `enter`, when the kernel copies it.
            unsafe { self.push(timeout) }
        }

        /// The timer's own completion: -ETIME if it fired (the receive then
        /// completes with -ECANCELED), -ECANCELED if the receive finished
        /// first.
        pub fn on_timeout(&mut self, index: usize, res: i32) -> io::Result<()> {
            if res != -libc::ETIME && res != -libc::ECANCELED {
                let e = io::Error::from_raw_os_error(-res);
                eprintln!("a linked timeout failed: {e}");
            }
            match self.conns[index].as_ref() {
                // The receive it guarded has already ended the connection.
                Some(conn) if conn.requests.closing => self.close(index),
                _ => Ok(()),
            }
        }

        /// Closes a connection: the socket, and the buffer with it. Not
        /// while the kernel holds a request of it: the receive and its timer
        /// complete in either order, and closing at the first would free the
        /// buffer under a receive still in flight (or, closing on the
        /// receive's completion, give the slot to a new client before the old
        /// timer's completion came). So a connection that is over waits,
        /// `closing`, for its last one.
        pub fn close(&mut self, index: usize) -> io::Result<()> {
            let Some(conn) = self.conns[index].as_mut() else {
                return Ok(());
            };
            conn.requests.closing = true;
            if conn.requests.in_flight > 0 {
                return Ok(()); // the last completion calls us again
            }
            self.conns[index] = None;
            self.free.push(index);
            if self.accepting {
                return Ok(());
            }
            self.submit_accept() // a descriptor is free again
        }
    }
}
// ANCHOR_END: solution
