//! Exercise 04-linked-timeout: close idle connections with a linked timeout.
//!
//! This is lesson 04's server cut down to its core: one accept in flight,
//! and for each connection one receive or one send at a time. It accepts
//! `--idle-timeout SECS` but does nothing with it yet: a client that
//! connects and never sends holds its slot, its socket and its buffer
//! forever. Make the server close a connection that has sent nothing for
//! that long, with a timer the kernel runs for each receive.
//!
//! The work is in the region below: `set_idle_timeout`, which `main` calls
//! once with the option; `Requests`, what a connection counts of its
//! requests in the kernel; `submit_recv`; `on_timeout`, which gets the
//! completions of kind `Kind::Timeout`; and `close`. The rest of the server
//! is `exercises/programs/04-linked-timeout.rs` (the options, `main`,
//! `on_send`) and `exercises/common/uring.rs` (lesson 04 cut down to its
//! core, with the lesson's own `conn.rs`, `ring.rs` and `stats.rs`); you
//! need not change them, but `submit_send` and `on_completion` are there to
//! read.
//!
//! Run it, and grade it:
//!
//! ```text
//! cargo run --example 04-linked-timeout -- --idle-timeout 1
//! cargo run --bin echo-check -- --exercise 04-linked-timeout   # builds, starts and grades it
//! ```
//!
//! The statement is `exercises/04-linked-timeout/README.md`.

include!("../programs/04-linked-timeout.rs");

#[cfg(target_os = "linux")]
// ANCHOR: todo
mod todo {
    use std::io;
    use std::os::fd::AsRawFd;

    use io_uring::{opcode, types};

    use super::Server;
    use super::setup::conn::{Kind, pack};

    /// The option, given once at start. Nothing uses it yet.
    pub fn set_idle_timeout(secs: u64) {
        eprintln!("idle timeout: {secs} s (not enforced yet)");
    }

    /// A connection's requests in the kernel, whose completions have not
    /// come yet. While there is one, its socket must stay open and its
    /// buffer must not be freed.
    pub struct Requests {
        in_flight: u32,
    }

    impl Requests {
        pub fn new() -> Requests {
            Requests { in_flight: 0 }
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
        /// Receives into the connection's whole buffer.
        pub fn submit_recv(&mut self, index: usize) -> io::Result<()> {
            let Some(conn) = self.conns[index].as_mut() else {
                return Ok(());
            };
            // TODO: this receive waits for as long as the client stays quiet,
            // however long that is. Give it a time limit (--idle-timeout).
            let fd = types::Fd(conn.socket.as_raw_fd());
            let entry = opcode::Recv::new(fd, conn.buf.addr(0), conn.buf.len() as u32)
                .build()
                .user_data(pack(Kind::Recv, index, conn.generation));
            conn.requests.started();
            // SAFETY: the kernel writes into `conn.buf`: as for the send (in
            // `submit_send`), its bytes stay put, are freed only after this
            // receive's completion (`close` runs from a completion, with
            // nothing else in flight), and we never touch them.
            unsafe { self.push(entry) }
        }

        /// A completion of kind `Kind::Timeout`. This server submits no
        /// timer yet, so none comes.
        pub fn on_timeout(&mut self, index: usize, res: i32) -> io::Result<()> {
            eprintln!("connection {index}: a timer completed ({res}), but none was submitted");
            Ok(())
        }

        /// Closes a connection: the socket, and the buffer with it.
        pub fn close(&mut self, index: usize) -> io::Result<()> {
            if let Some(conn) = self.conns[index].take() {
                debug_assert_eq!(
                    conn.requests.in_flight, 0,
                    "closed while the kernel holds a request"
                );
                self.free.push(index);
            }
            if self.accepting {
                return Ok(());
            }
            self.submit_accept() // a descriptor is free again
        }
    }
}
// ANCHOR_END: todo
