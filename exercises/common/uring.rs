//! What chapter 04's exercise servers share: lesson 04 cut down to its
//! core. One accept in flight, and for each connection a receive into its
//! own buffer, then a send of what came, then the next receive, with the
//! request's kind, the connection's generation and its slot packed into
//! `user_data`. No signal through the ring, no accept pause, no counters
//! at exit: Ctrl-C ends the process at once, and the kernel tears the ring
//! down after it. Lesson 04's own files do what they do in the lesson:
//! `conn.rs`, `ring.rs` and `stats.rs`, taken in below.
//!
//! A server takes this file in as its module `setup`
//! (`#[path = "../common/uring.rs"] mod setup;`): that is where lesson 04
//! keeps its `Server`, and where `ring.rs` looks for it. The server brings,
//! at its crate root, the parts its exercise is about:
//!
//! - `Requests`: what a connection counts of its requests in the kernel
//!   (`Requests::new`, `started`, `finished`);
//! - the `Server` methods `submit_recv` (the next receive), `on_send` (a
//!   send's completion), `on_timeout` (a completion of `Kind::Timeout`) and
//!   `close`.

use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;

use io_uring::{IoUring, opcode, types};
use nix::libc;
use uring_echo_book::uring::{self, Needed};

// Lesson 04's own files, as they are: `conn.rs` (`user_data`: `Kind`,
// `pack`, `unpack`; `KernelBuf`, the memory lent to the kernel), `ring.rs`
// (`push` and `enter`: how requests reach the kernel) and `stats.rs` (the
// counters `enter` adds to). The lesson's `Conn` keeps one request in
// flight, where an exercise's connection may have two, and the lesson's
// signal and cancel requests are not made here: the allow is for those.
#[allow(dead_code)]
#[path = "../../src/bin/04_uring/conn.rs"]
pub mod conn;
#[path = "../../src/bin/04_uring/ring.rs"]
mod ring;
#[path = "../../src/bin/04_uring/stats.rs"]
mod stats;

use crate::Requests;
use conn::{KernelBuf, Kind, pack, unpack};
use stats::Stats;

/// `main` of a chapter 04 exercise server: runs the server `new` set up,
/// until the event loop fails. Either failure is one line on stderr and a
/// non-zero exit.
pub fn run(new: Result<Server, String>) -> ExitCode {
    let error = match new {
        Ok(mut server) => {
            let Err(e) = server.run();
            // Requests may still be in flight, and the kernel may still
            // write into their buffers: `Server`'s `Drop` leaks those rather
            // than free them. The process is exiting.
            format!("the event loop failed: {e}")
        }
        Err(e) => e,
    };
    eprintln!("error: {error}");
    ExitCode::FAILURE
}

/// One client.
pub struct Conn {
    pub socket: OwnedFd,
    pub generation: u32,
    /// The kernel receives into it and sends from it, through its address.
    pub buf: KernelBuf,
    /// `buf[..filled]` arrived; `buf[..sent]` of it has gone back.
    pub filled: usize,
    pub sent: usize,
    /// Its requests in the kernel, whose completions have not come yet:
    /// `submit_send` (here) and `submit_recv` count each as `started`,
    /// `on_completion` each completion as `finished`. While there is one,
    /// the socket must stay open and `buf` must not be freed.
    pub requests: Requests,
}

pub struct Server {
    pub ring: IoUring,
    listener: TcpListener,
    pub conns: Vec<Option<Conn>>,
    pub free: Vec<usize>,
    next_generation: u32,
    buffer_size: usize,
    /// An accept is in flight. Off while accepting pauses for lack of
    /// descriptors; the next close resumes it.
    pub accepting: bool,
    /// Requests the kernel holds: `push` counts them, each completion takes
    /// one away.
    in_flight: usize,
    stats: Stats,
}

impl Server {
    /// The ring, with every operation the server uses (accept, receive and
    /// send, and those in `needed`); the listener, with `sndbuf` as its
    /// SO_SNDBUF if given; then the first accept. An error is the one line
    /// the user sees.
    pub fn new(
        addr: SocketAddr,
        buffer_size: u32,
        sndbuf: Option<usize>,
        needed: &[Needed],
    ) -> Result<Server, String> {
        uring_echo_book::limits::raise_open_file_limit_or_warn();
        uring_echo_book::signals::exit_on_signal()
            .map_err(|e| format!("cannot install the SIGINT/SIGTERM handler: {e}"))?;
        // Every completion that can be pending at once must fit in the
        // completion queue. 4096 is plenty for the checks; past that the
        // kernel keeps the overflow aside (IORING_FEAT_NODROP, Linux 5.5).
        let mut builder: io_uring::Builder = IoUring::builder();
        builder.setup_cqsize(4096);
        // `build` turns ENOSYS, EPERM and ENOMEM into one line saying why.
        let ring = uring::build(&builder, 256)?;
        let core = [
            (opcode::Accept::CODE, "IORING_OP_ACCEPT", "5.5"),
            (opcode::Recv::CODE, "IORING_OP_RECV", "5.6"),
            (opcode::Send::CODE, "IORING_OP_SEND", "5.6"),
        ];
        let core = core.map(|(code, name, since)| Needed { code, name, since });
        uring::require(&ring, &[&core[..], needed].concat())?;

        let listener = uring_echo_book::listen::bind_or_explain(addr)?;
        if let Some(size) = sndbuf {
            // Accepted sockets inherit the listener's buffer sizes.
            socket2::SockRef::from(&listener)
                .set_send_buffer_size(size)
                .map_err(|e| format!("cannot set SO_SNDBUF: {e}"))?;
        }
        let mut server = Server {
            ring,
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            next_generation: 0,
            buffer_size: buffer_size as usize,
            accepting: false,
            in_flight: 0,
            stats: Stats::default(),
        };
        server.submit_accept().map_err(|e| e.to_string())?;
        // The one line on stdout, once the first accept is queued: with
        // port 0, the port the kernel picked.
        let local = server.listener.local_addr();
        let local = local.map_err(|e| format!("cannot read the listening address: {e}"))?;
        uring_echo_book::listen::announce(local);
        Ok(server)
    }

    /// Submits, sleeps until completions arrive, handles them; forever.
    fn run(&mut self) -> io::Result<Infallible> {
        let mut batch = Vec::new();
        loop {
            self.enter(1)?;
            // Copied out first: handling a completion queues new requests,
            // which needs the ring that the completion queue borrows.
            batch.clear();
            batch.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            for &(user_data, res) in &batch {
                self.in_flight -= 1;
                self.on_completion(user_data, res)?;
            }
        }
    }

    fn on_completion(&mut self, user_data: u64, res: i32) -> io::Result<()> {
        let (kind, index, generation) = unpack(user_data);
        if kind == Some(Kind::Accept) {
            return self.on_accept(res);
        }
        let current = self.conns.get_mut(index).and_then(Option::as_mut);
        let Some(conn) = current.filter(|c| c.generation == generation) else {
            // Cannot happen while a connection is closed only with nothing
            // in flight; said out loud, so a bug would show.
            eprintln!("a stale completion ({user_data:#x}, result {res})");
            return Ok(());
        };
        conn.requests.finished();
        match kind {
            Some(Kind::Recv) => self.on_recv(index, res),
            Some(Kind::Send) => self.on_send(index, res),
            // Lesson 04 uses this kind for its accept pause, which this
            // server does not have: here it is free for an exercise.
            Some(Kind::Timeout) => self.on_timeout(index, res),
            _ => Ok(()),
        }
    }

    pub fn submit_accept(&mut self) -> io::Result<()> {
        let fd = types::Fd(self.listener.as_raw_fd());
        let entry = opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(pack(Kind::Accept, 0, 0));
        // SAFETY: the null pointers ask for no peer address: the request
        // points to no memory of ours.
        unsafe { self.push(entry) }?;
        self.accepting = true;
        Ok(())
    }

    fn on_accept(&mut self, res: i32) -> io::Result<()> {
        self.accepting = false;
        if res < 0 {
            let e = io::Error::from_raw_os_error(-res);
            eprintln!("accept failed: {e}");
            if matches!(-res, libc::EMFILE | libc::ENFILE) && self.conns.len() > self.free.len() {
                // Out of descriptors: accepting again now would fail again
                // at once, forever. The next close resumes it.
                return Ok(());
            }
            return self.submit_accept();
        }
        // SAFETY: a successful accept's result is a new descriptor that
        // nothing else in this process knows, so `OwnedFd` may own it.
        let socket = unsafe { OwnedFd::from_raw_fd(res) };
        self.next_generation = (self.next_generation + 1) & 0xff_ffff;
        let conn = Conn {
            socket,
            generation: self.next_generation,
            buf: KernelBuf::new(self.buffer_size),
            filled: 0,
            sent: 0,
            requests: Requests::new(),
        };
        let index = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        self.conns[index] = Some(conn);
        self.submit_recv(index)?;
        self.submit_accept()
    }

    /// Sends what has not gone back yet: `buf[sent..filled]`.
    pub fn submit_send(&mut self, index: usize) -> io::Result<()> {
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        // MSG_NOSIGNAL: a peer that has gone makes the send fail with EPIPE
        // instead of raising SIGPIPE, which would end the server.
        let entry = opcode::Send::new(
            types::Fd(conn.socket.as_raw_fd()),
            conn.buf.addr(conn.sent),
            (conn.filled - conn.sent) as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(pack(Kind::Send, index, conn.generation));
        conn.requests.started();
        // SAFETY: the kernel reads `conn.buf[sent..filled]`. Those bytes
        // stay put when `conns` grows (only the `KernelBuf`, an address,
        // moves); `requests` now counts this send, and `close` frees the
        // `Conn` only once nothing of it is in the kernel, after this send's
        // completion; and we never read or write them ourselves.
        unsafe { self.push(entry) }
    }

    fn on_recv(&mut self, index: usize, res: i32) -> io::Result<()> {
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        if res <= 0 {
            // 0: the peer closed its side, and everything it sent has been
            // echoed. Negative: ECONNRESET and friends (and, if the receive
            // has a timer, ECANCELED). Either way, done.
            return self.close(index);
        }
        conn.filled = res as usize;
        conn.sent = 0;
        self.submit_send(index)
    }
}

impl Drop for Server {
    /// The server is dropped with requests in flight only when the event
    /// loop failed, or while a panic unwinds. Then the kernel may still
    /// write into the buffers: leak them, rather than free memory it may
    /// still use. The process is on its way out.
    fn drop(&mut self) {
        if self.in_flight > 0 {
            std::mem::forget(std::mem::take(&mut self.conns));
        }
    }
}
