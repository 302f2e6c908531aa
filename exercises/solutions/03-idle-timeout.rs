//! Exercise 03-idle-timeout, the reference solution.
//!
//! Two things make an idle timeout: knowing when each connection was last
//! active, and waking up when nothing happens. The first is one `Instant`
//! per connection, set whenever epoll reports an event for it. The second
//! is the timeout argument of `epoll_wait`: without one it sleeps until a
//! socket is ready, and a silent client makes no socket ready, so the
//! starter never got a chance to notice anything. With a timeout the loop
//! wakes at least every quarter of the idle limit, looks at every
//! connection, and closes those quiet for longer than the limit.
//!
//! Why an event, and not "received a byte", counts as activity: in this
//! server a connection gets an event when bytes or the client's FIN arrive
//! (EPOLLIN), when a client that was not reading has read again (EPOLLOUT:
//! room in the send buffer), or on an error. Each is progress in one
//! direction or the other. A client that sends a lot and then reads slowly
//! is therefore not cut off while its echo is still on the way, as long as
//! it keeps reading; one that neither sends nor reads for the whole limit
//! is closed, whichever way its bytes were flowing.
//!
//! Looking at every connection on each wake-up costs time in proportion to
//! the open connections, four times per limit. A server with a very large
//! number of them keeps them in order of last activity instead (a list
//! that a connection moves to the back of when active), so that only the
//! ones at the front need a look; or it uses a timer wheel.
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 03-idle-timeout --solution
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
#[cfg(target_os = "linux")]
use nix::errno::Errno;
#[cfg(target_os = "linux")]
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
#[cfg(target_os = "linux")]
use nix::sys::signal::{SigSet, Signal};
#[cfg(target_os = "linux")]
use nix::sys::signalfd::{SfdFlags, SignalFd};
use uring_echo_book::cli::CommonArgs;
use uring_echo_book::listen::{announce, bind_or_explain};

/// A small level-triggered epoll echo server that closes idle connections
/// (Linux).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Close a connection after this many seconds without any traffic.
    /// Without it, a connection stays open until its client closes it.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: Option<u64>,
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: this exercise needs Linux (epoll and signalfd)");
    ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args = Args::parse();
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    let mut server = match Server::new(args.common.addr) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match server.run(args.idle_timeout.map(Duration::from_secs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: the event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

// epoll hands back a 64-bit token with each event. Two are reserved; every
// connection gets the next number of a counter, never reused, so an event
// still queued for a connection we closed earlier in the same batch finds
// nothing instead of a newcomer. (Lesson 03 reuses slots and adds a
// generation to the token for the same reason.)
const LISTENER: u64 = u64::MAX;
const SIGNALS: u64 = u64::MAX - 1;

/// The listening socket, the signal descriptor, the open connections, and
/// the epoll instance that watches them all.
#[cfg(target_os = "linux")]
struct Server {
    epoll: Epoll,
    listener: TcpListener,
    signals: SignalFd,
    conns: HashMap<u64, Conn>,
    next_token: u64,
    /// One read buffer shared by every connection.
    scratch: Box<[u8]>,
}

#[cfg(target_os = "linux")]
impl Server {
    fn new(addr: SocketAddr) -> Result<Server, String> {
        let listener = bind_or_explain(addr)?;
        // Nonblocking: `accept` says EAGAIN when no connection waits.
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot make the listener nonblocking: {e}"))?;
        // SIGINT and SIGTERM become readable on a descriptor: one more event.
        // Blocked first, or their default action would end us at once.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.thread_block()
            .map_err(|e| format!("cannot block SIGINT/SIGTERM: {e}"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("cannot create a signalfd: {e}"))?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| format!("cannot create an epoll instance: {e}"))?;
        epoll
            .add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
            .map_err(|e| format!("cannot watch the listener: {e}"))?;
        epoll
            .add(&signals, EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS))
            .map_err(|e| format!("cannot watch the signalfd: {e}"))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        announce(local);
        Ok(Server {
            epoll,
            listener,
            signals,
            conns: HashMap::new(),
            next_token: 0,
            scratch: vec![0u8; 64 * 1024].into_boxed_slice(),
        })
    }
}

// ANCHOR: solution
/// One client.
#[cfg(target_os = "linux")]
struct Conn {
    stream: TcpStream,
    /// What epoll is asked to report for this socket.
    interest: EpollFlags,
    /// Bytes read but not yet written back, oldest first. Empty (and
    /// unallocated) while the client keeps up, never more than one read.
    queue: Vec<u8>,
    /// When epoll last reported anything for this connection: bytes in,
    /// room to send bytes out, the client's FIN, or an error.
    last_active: Instant,
}

#[cfg(target_os = "linux")]
impl Server {
    /// Waits for events and serves them, until SIGINT or SIGTERM.
    fn run(&mut self, idle_timeout: Option<Duration>) -> io::Result<()> {
        match idle_timeout {
            Some(limit) => eprintln!("idle timeout: {} s", limit.as_secs()),
            None => eprintln!("no idle timeout"),
        }
        // Sweeping four times per limit closes a quiet connection between
        // 1 and 1.25 times the limit after its last activity.
        let sweep_every = idle_timeout.map(|limit| limit / 4);
        let mut next_sweep = Instant::now();
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            // Sleep until something is ready, or until the next sweep is
            // due: a silent client makes no socket ready, so without a
            // timeout we would never wake up to notice it. (Rounded up to
            // the next millisecond, epoll_wait's unit: waking up a moment
            // early would only mean waiting again.)
            let timeout = match sweep_every {
                Some(_) => {
                    let left = next_sweep.saturating_duration_since(Instant::now());
                    EpollTimeout::try_from(left.as_millis() + 1).unwrap_or(EpollTimeout::MAX)
                }
                None => EpollTimeout::NONE,
            };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let now = Instant::now();
            for event in &events[..n] {
                match event.data() {
                    LISTENER => self.accept_all(),
                    SIGNALS => {
                        if let Ok(Some(info)) = self.signals.read_signal() {
                            eprintln!(
                                "signal {} received: closing {} connections",
                                info.ssi_signo,
                                self.conns.len()
                            );
                            return Ok(()); // dropping the server closes every socket
                        }
                    }
                    token => {
                        if let Some(conn) = self.conns.get_mut(&token) {
                            conn.last_active = now;
                        }
                        self.serve(token);
                    }
                }
            }
            if let (Some(limit), Some(every)) = (idle_timeout, sweep_every)
                && now >= next_sweep
            {
                // Dropping a connection closes its socket, which also takes
                // it out of the epoll set.
                let before = self.conns.len();
                self.conns
                    .retain(|_, conn| now.duration_since(conn.last_active) < limit);
                let closed = before - self.conns.len();
                if closed > 0 {
                    eprintln!("closed {closed} idle connections");
                }
                next_sweep = now + every;
            }
        }
    }
}
// ANCHOR_END: solution

#[cfg(target_os = "linux")]
impl Server {
    /// Accepts every waiting connection, until EAGAIN. (Lesson 03 also
    /// accepts at most 64 a turn, so that a burst of connects cannot keep
    /// the clients already connected waiting, and handles running out of
    /// descriptors; this exercise needs neither.)
    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _peer)) => self.register(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
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
        let interest = EpollFlags::EPOLLIN;
        if let Err(e) = self.epoll.add(&stream, EpollEvent::new(interest, token)) {
            eprintln!("cannot watch a connection: {e}");
            return;
        }
        let conn = Conn {
            stream,
            interest,
            queue: Vec::new(),
            last_active: Instant::now(),
        };
        self.conns.insert(token, conn);
    }

    /// Serves one event of a connection, then tells epoll what to report
    /// for it next, if that changed, or closes it.
    fn serve(&mut self, token: u64) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return; // closed earlier in this batch of events
        };
        let wanted = match on_ready(conn, &mut self.scratch) {
            Ok(Some(wanted)) => wanted,
            Ok(None) => return self.close(token),
            Err(e) => {
                // ECONNRESET, EPIPE: this client is gone; nobody else is.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ) {
                    eprintln!("connection error: {e}");
                }
                return self.close(token);
            }
        };
        if wanted != conn.interest {
            let mut event = EpollEvent::new(wanted, token);
            if let Err(e) = self.epoll.modify(&conn.stream, &mut event) {
                eprintln!("cannot change what epoll watches: {e}");
                return self.close(token);
            }
            conn.interest = wanted;
        }
    }

    /// Dropping the stream closes the socket, which also takes it out of
    /// the epoll set.
    fn close(&mut self, token: u64) {
        self.conns.remove(&token);
    }
}

/// The socket is ready (or has an error or hang-up pending, which epoll
/// always reports). Returns what epoll should report next, or `None` when
/// the connection is done and must be closed.
#[cfg(target_os = "linux")]
fn on_ready(conn: &mut Conn, scratch: &mut [u8]) -> io::Result<Option<EpollFlags>> {
    // Bytes left over from before go first, or the client would get them
    // out of order. If they still do not all fit, wait for the next
    // "writable", and read nothing meanwhile: that is the backpressure.
    if !conn.queue.is_empty() {
        let written = write_some(&mut conn.stream, &conn.queue)?;
        conn.queue.drain(..written);
        if !conn.queue.is_empty() {
            return Ok(Some(EpollFlags::EPOLLOUT));
        }
        conn.queue = Vec::new(); // an idle connection costs no buffer
    }
    // Level-triggered: one read per event is enough. If more is waiting,
    // the next epoll_wait reports the socket again.
    let n = match conn.stream.read(scratch) {
        // The peer's FIN: nothing more will come. We only read with an
        // empty queue, so every byte is echoed already and we can close.
        Ok(0) => return Ok(None),
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            return Ok(Some(EpollFlags::EPOLLIN));
        }
        Err(e) => return Err(e),
    };
    let written = write_some(&mut conn.stream, &scratch[..n])?;
    if written == n {
        return Ok(Some(EpollFlags::EPOLLIN));
    }
    // The send buffer is full: the client reads slower than it sends. Keep
    // the rest, and ask for "writable" instead of "readable" until it is
    // sent. (Asking for "writable" while nothing is queued would wake us for
    // nothing: a socket with room to write is writable nearly all the time.)
    conn.queue.extend_from_slice(&scratch[written..n]);
    Ok(Some(EpollFlags::EPOLLOUT))
}

/// One `write`: how many bytes the socket took, 0 when its buffer is full.
#[cfg(target_os = "linux")]
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
