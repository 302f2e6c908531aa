//! Exercise 03-partial-writes: keep what `write` did not take.
//!
//! Lesson 03 made small: one thread, nonblocking sockets, a level-triggered
//! epoll loop. This is the epoll echo server as it is often written, and
//! copied: read what has arrived, write it back once, wait for the next
//! event. Typed into `nc` it is perfect, and most of the grader's checks
//! pass. But a nonblocking `write` takes only what fits in the socket's send
//! buffer, and this server forgets the rest.
//!
//! The work is in `Conn` and `on_ready`, below. The rest of the server (the
//! listener, the epoll instance, accepting, and `serve`, which calls
//! `on_ready` for each event and tells epoll what it asks for next) is
//! `exercises/common/epoll.rs`, and the options and `main` are
//! `exercises/programs/03-partial-writes.rs`, included on the first line of
//! code; you need not change them.
//!
//! Run it, and grade it:
//!
//! ```text
//! cargo run --example 03-partial-writes                       # listens on 127.0.0.1:7878
//! cargo run --bin echo-check -- --exercise 03-partial-writes  # builds, starts and grades it
//! ```
//!
//! The statement is `exercises/03-partial-writes/README.md`.

include!("../programs/03-partial-writes.rs");

#[cfg(target_os = "linux")]
// ANCHOR: todo
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
    }

    impl Conn {
        /// A client just accepted: epoll is to report it readable.
        pub fn new(stream: TcpStream) -> Conn {
            Conn {
                stream,
                interest: EpollFlags::EPOLLIN,
                received: 0,
                echoed: 0,
            }
        }
    }

    /// The socket is ready (or has an error or hang-up pending, which epoll
    /// always reports). Returns what epoll should report next, or `None`
    /// when the connection is done and must be closed.
    pub fn on_ready(conn: &mut Conn, scratch: &mut [u8]) -> io::Result<Option<EpollFlags>> {
        // Level-triggered: one read per event is enough. If more is waiting,
        // the next epoll_wait reports the socket again.
        let n = match read_some(&mut conn.stream, scratch)? {
            // Nothing after all: wait for the next "readable".
            None => return Ok(Some(EpollFlags::EPOLLIN)),
            // The peer's FIN: nothing more will come. Say so if it did not
            // get back every byte it sent.
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
        // TODO: a client that sends a lot and reads slowly gets back only part
        // of what it sent, and the server keeps reading from it all the while
        // (grade it, and watch for "a client finished" lines on stderr).
        match conn.stream.write(&scratch[..n]) {
            Ok(written) => conn.echoed += written as u64,
            // The send buffer is full: it will have room next time.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(Some(EpollFlags::EPOLLIN))
    }
}
// ANCHOR_END: todo
