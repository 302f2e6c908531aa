//! Exercise 03-partial-writes, the reference solution.
//!
//! A nonblocking `write` takes what fits in the socket's send buffer and
//! returns how much that was: all of it, part of it, or nothing (EAGAIN).
//! The starter ignored the count, so whatever did not fit was lost. The
//! grader's `stalled` check found it every time: its client sent 256 MiB
//! without reading, the server read it all and dropped everything after the
//! first 4 MiB or so (what the kernel's buffers held), and the client, once
//! it read again, waited in vain for the rest. `sizes` and `half_close`
//! passed because their clients read while they write, so on loopback the
//! send buffer never filled; on a slower network they could fail too.
//!
//! The fix has three parts, all in `Conn` and `on_ready`:
//! - a queue per connection for the bytes `write` did not take, sent first
//!   when the socket has room again, so nothing is lost or reordered;
//! - EPOLLOUT interest while that queue is not empty: it is how epoll says
//!   "there is room now";
//! - backpressure: no reading while anything is queued (EPOLLOUT instead of
//!   EPOLLIN). A peer that does not read then costs at most one read's worth
//!   of queue, 64 KiB; its further bytes wait in the kernel, and TCP's flow
//!   control stops the peer. Without that, the queue would grow for as long
//!   as the peer keeps sending.
//!
//! Only the `todo` region differs from the starter; the rest of the server
//! is `exercises/programs/03-partial-writes.rs` and
//! `exercises/common/epoll.rs`.
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 03-partial-writes --solution
//! ```

include!("../programs/03-partial-writes.rs");

#[cfg(target_os = "linux")]
// ANCHOR: solution
mod todo {
    use std::io::{self, Write};
    use std::net::TcpStream;

    use nix::sys::epoll::EpollFlags;

    use super::epoll::read_some;

    /// One client.
    pub struct Conn {
        pub stream: TcpStream,
        /// What epoll is asked to report for this socket.
        pub interest: EpollFlags,
        /// Bytes read from the client, and bytes written back to it.
        received: u64,
        echoed: u64,
        /// Bytes read but not yet written back, oldest first. Empty (and
        /// unallocated) while the client keeps up, never more than one read.
        queue: Vec<u8>,
    }

    impl Conn {
        /// A client just accepted: epoll is to report it readable.
        pub fn new(stream: TcpStream) -> Conn {
            Conn {
                stream,
                interest: EpollFlags::EPOLLIN,
                received: 0,
                echoed: 0,
                queue: Vec::new(),
            }
        }
    }

    /// The socket is ready (or has an error or hang-up pending, which epoll
    /// always reports). Returns what epoll should report next, or `None`
    /// when the connection is done and must be closed.
    pub fn on_ready(conn: &mut Conn, scratch: &mut [u8]) -> io::Result<Option<EpollFlags>> {
        // Bytes left over from before go first, or the client would get them
        // out of order. If they still do not all fit, wait for the next
        // "writable", and read nothing meanwhile: that is the backpressure.
        if !conn.queue.is_empty() {
            let written = write_some(&mut conn.stream, &conn.queue)?;
            conn.echoed += written as u64;
            conn.queue.drain(..written);
            if !conn.queue.is_empty() {
                return Ok(Some(EpollFlags::EPOLLOUT));
            }
            conn.queue = Vec::new(); // an idle connection costs no buffer
        }
        // Level-triggered: one read per event is enough. If more is waiting,
        // the next epoll_wait reports the socket again.
        let n = match read_some(&mut conn.stream, scratch)? {
            // Nothing after all: wait for the next "readable".
            None => return Ok(Some(EpollFlags::EPOLLIN)),
            // The peer's FIN: nothing more will come. We only read with an
            // empty queue, so every byte is echoed already and we can close.
            Some(0) => {
                if conn.echoed != conn.received {
                    eprintln!(
                        "a client finished after sending {} bytes, and got {} back",
                        conn.received, conn.echoed
                    );
                }
                return Ok(None);
            }
            Some(n) => n,
        };
        conn.received += n as u64;
        let written = write_some(&mut conn.stream, &scratch[..n])?;
        conn.echoed += written as u64;
        if written == n {
            return Ok(Some(EpollFlags::EPOLLIN));
        }
        // The send buffer is full: the client reads slower than it sends.
        // Keep the rest, and ask for "writable" instead of "readable" until
        // it is sent. (Asking for "writable" while nothing is queued would
        // wake us for nothing: a socket with room to write is writable nearly
        // all the time.)
        conn.queue.extend_from_slice(&scratch[written..n]);
        Ok(Some(EpollFlags::EPOLLOUT))
    }

    /// One `write`: how many bytes the socket took, 0 when its buffer is full.
    fn write_some(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
        match stream.write(data) {
            Ok(written) => Ok(written),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }
}
// ANCHOR_END: solution
