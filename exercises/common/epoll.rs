//! What chapter 03's exercise servers share: lesson 03 made small. One
//! thread, nonblocking sockets, one epoll instance in level-triggered mode,
//! and a table of connections; SIGINT and SIGTERM end the process at once
//! (lesson 03 shows the careful way out, the signal as one more event of the
//! loop).
//!
//! A server that takes this file in (`#[path = "../common/epoll.rs"] mod
//! epoll;`) brings, at its crate root, its connection and what to do with
//! it, which is where its exercise is:
//!
//! - `Conn`: one client, with `Conn::new(stream)`, its `stream`, and its
//!   `interest`, what epoll is asked to report for it;
//! - `on_ready(&mut Conn, scratch)`: serve one event of that client, and say
//!   what epoll should report next, or `None` when the connection is done.
//!
//! and its event loop, which calls [`Server::turn`] again and again, and
//! which it hands to [`run`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::{Conn, on_ready};

/// The listener's token. epoll hands back a 64-bit token with each event;
/// every connection gets the next number of a counter, never reused, so an
/// event still queued for a connection closed earlier in the same batch
/// finds nothing instead of a newcomer. (Lesson 03 reuses slots, and puts a
/// generation in the token for the same reason.)
const LISTENER: u64 = u64::MAX;

/// `main` of an epoll exercise server: sets the server up on `addr`, then
/// hands it to `event_loop`, which returns only with an error. Either
/// failure is one line on stderr and a non-zero exit.
pub fn run(
    addr: SocketAddr,
    event_loop: impl FnOnce(&mut Server) -> io::Result<Infallible>,
) -> ExitCode {
    let error = match Server::new(addr) {
        Ok(mut server) => {
            let Err(e) = event_loop(&mut server);
            format!("the event loop failed: {e}")
        }
        Err(e) => e,
    };
    eprintln!("error: {error}");
    ExitCode::FAILURE
}

/// One nonblocking `read` into `buf`: `Some(n)`, the bytes that came, where
/// 0 is the peer's FIN (nothing more will come); or `None`, nothing to read
/// just now (EAGAIN, or a signal interrupted it).
pub fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match stream.read(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The listening socket, the open connections, and the epoll instance that
/// watches them all.
pub struct Server {
    epoll: Epoll,
    listener: TcpListener,
    pub conns: HashMap<u64, Conn>,
    next_token: u64,
    /// One read buffer for every connection: 64 KiB, as in lesson 03.
    scratch: Box<[u8]>,
    events: Vec<EpollEvent>,
}

impl Server {
    /// Everything before the first event; an error is the one line the user
    /// sees.
    fn new(addr: SocketAddr) -> Result<Server, String> {
        uring_echo_book::limits::raise_open_file_limit_or_warn();
        uring_echo_book::signals::exit_on_signal()
            .map_err(|e| format!("cannot install the SIGINT/SIGTERM handler: {e}"))?;
        let listener = uring_echo_book::listen::bind_or_explain(addr)?;
        // Nonblocking: `accept` says EAGAIN when no connection waits.
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot make the listener nonblocking: {e}"))?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| format!("cannot create an epoll instance: {e}"))?;
        epoll
            .add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
            .map_err(|e| format!("cannot watch the listener: {e}"))?;
        let server = Server {
            epoll,
            listener,
            conns: HashMap::new(),
            next_token: 0,
            scratch: vec![0u8; 64 * 1024].into_boxed_slice(),
            events: vec![EpollEvent::empty(); 256],
        };
        // The one line on stdout, once the server is ready for its first
        // client: with port 0, the port the kernel picked.
        let local = server.listener.local_addr();
        let local = local.map_err(|e| format!("cannot read the listening address: {e}"))?;
        uring_echo_book::listen::announce(local);
        Ok(server)
    }

    /// One turn of the event loop: waits until something is ready, or for
    /// `timeout` at most, and serves what is ready.
    pub fn turn(&mut self, timeout: EpollTimeout) -> io::Result<()> {
        let n = match self.epoll.wait(&mut self.events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        for i in 0..n {
            match self.events[i].data() {
                LISTENER => self.accept_all(),
                token => self.serve(token),
            }
        }
        Ok(())
    }

    /// Accepts every waiting connection, until EAGAIN. (Lesson 03 also
    /// accepts at most 64 a turn, so that a burst of connects cannot keep the
    /// clients already connected waiting, and pauses when out of
    /// descriptors; these exercises need neither.)
    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _peer)) => self.register(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // The client gave up in the queue, or a signal came: go on.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn register(&mut self, stream: TcpStream) {
        // An accepted socket starts out blocking, whatever the listener is.
        if let Err(e) = stream.set_nonblocking(true) {
            eprintln!("cannot make a connection nonblocking: {e}");
            return;
        }
        let token = self.next_token;
        self.next_token += 1;
        let conn = Conn::new(stream);
        if let Err(e) = self
            .epoll
            .add(&conn.stream, EpollEvent::new(conn.interest, token))
        {
            eprintln!("cannot watch a connection: {e}");
            return;
        }
        self.conns.insert(token, conn);
    }

    /// Serves one event of a connection with `on_ready`, then tells epoll
    /// what to report for it next, if that changed, or closes it. Closing is
    /// dropping the stream: that closes the socket, which also takes it out
    /// of the epoll set.
    fn serve(&mut self, token: u64) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return; // closed earlier in this batch of events
        };
        let wanted = match on_ready(conn, &mut self.scratch) {
            Ok(Some(wanted)) => wanted,
            Ok(None) => {
                self.conns.remove(&token);
                return;
            }
            Err(e) => {
                // ECONNRESET, EPIPE: this client is gone; nobody else is.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ) {
                    eprintln!("connection error: {e}");
                }
                self.conns.remove(&token);
                return;
            }
        };
        if wanted != conn.interest {
            let mut event = EpollEvent::new(wanted, token);
            if let Err(e) = self.epoll.modify(&conn.stream, &mut event) {
                eprintln!("cannot change what epoll watches: {e}");
                self.conns.remove(&token);
                return;
            }
            conn.interest = wanted;
        }
    }
}
