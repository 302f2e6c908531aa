//! Exercises 05-early-recycle and 05-rearm, the reference solution.
//!
//! Both exercises plant a bug in the same compact multishot server, so they
//! share this one solution: the server as it should be.
//!
//! **05-early-recycle** (`on_send` below, the `recycle` region). A buffer
//! goes back into the ring only when nothing refers to it any more: after
//! its send has *completed* (or failed), not when the send was queued. Until
//! then the kernel may still read it: a send to a peer whose socket is full
//! waits, and reads our buffer only when the peer makes room. The starter
//! gave the buffer back as soon as it had queued the send; with four
//! buffers, the next receives refilled it within a few completions, and the
//! waiting send then carried another client's bytes. With `--buffers 4
//! --buffer-size 64` the starter failed `concurrent` and `stalled` on every
//! run (six of six; `stalled` about 4 MB into the echo of the client that
//! had stopped reading); with the default 1,024 buffers it passed all nine
//! checks the grader had then.
//!
//! **05-rearm** (`on_recv` below, the `rearm` region). A multishot receive
//! can end at any completion, also at one that carries data: when the
//! completion queue is full, the kernel posts that data as the request's
//! last completion, without IORING_CQE_F_MORE. The starter looked at F_MORE
//! only on completions without data, so such a receive stayed "armed" in
//! its books, was never re-armed, and its connection was never read again.
//! With `--ring-entries 4` (8 completion entries), 854–975 receives ended
//! that way during one run of the `concurrent` check, and 198–314 during
//! one of `stalled`; with the default 512 completion entries, none in
//! `concurrent` and 2–4 in `stalled`: enough for the starter to fail
//! `stalled` with the defaults too.
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 05-early-recycle --solution
//! cargo run --bin echo-check -- --exercise 05-rearm --solution
//! ```

use std::process::ExitCode;

use clap::Parser;
#[cfg(target_os = "linux")]
use io_uring::{IoUring, cqueue, opcode, squeue, types};
#[cfg(target_os = "linux")]
use nix::libc;
#[cfg(target_os = "linux")]
use std::{collections::VecDeque, io, os::fd::AsRawFd, os::fd::FromRawFd, os::fd::OwnedFd};
use uring_echo_book::cli::CommonArgs;

#[path = "../common/buf_ring.rs"]
mod buf_ring;

/// A compact lesson 05: multishot accept, multishot receive into a
/// registered buffer ring, each echo sent from its buffer (Linux 6.0+).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Entries in the submission queue (the completion queue: twice as many).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=4096))]
    ring_entries: u32,

    /// Buffers in the ring (a power of two, at most 32768).
    #[arg(long, default_value_t = 1024, value_parser = buf_ring::parse_count)]
    buffers: u16,

    /// Size of each buffer in bytes.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    buffer_size: u32,
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: this exercise needs Linux 6.0+ (io_uring with multishot receive)");
    ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    match Server::new(&Args::parse()) {
        Ok(mut server) => {
            let Err(e) = server.run();
            eprintln!("error: the event loop failed: {e}");
            // Receives may still be in flight as `server` drops here: safe,
            // because the buffers they write into are never unmapped (see
            // `BufRing`'s `drop`). The process ends right after.
        }
        Err(e) => eprintln!("error: {e}"),
    }
    ExitCode::FAILURE
}

/// The buffer group our receives take buffers from.
#[cfg(target_os = "linux")]
const GROUP: u16 = 0;

/// A request's user_data: what it is in the high 32 bits (0 for a cancel),
/// the connection's slot in the low 32. A slot is reused only once nothing
/// of its last connection is in flight, so a completion always finds the
/// connection it was for.
#[cfg(target_os = "linux")]
const ACCEPT: u64 = 1 << 32;
#[cfg(target_os = "linux")]
const RECV: u64 = 2 << 32;
#[cfg(target_os = "linux")]
const SEND: u64 = 3 << 32;

/// Where a connection's receive stands: we arm it only when it is idle.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Shot {
    #[default]
    Idle,
    Armed,
    /// We asked the kernel to cancel it; its last completion is still due.
    Cancelling,
}

/// Bytes received into buffer `bid`, of which `sent` have been echoed.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy)]
struct Chunk {
    bid: u16,
    len: u32,
    sent: u32,
}

#[cfg(target_os = "linux")]
#[derive(Default)]
struct Conn {
    socket: Option<OwnedFd>,
    recv: Shot,
    /// Received, not sent yet, oldest first.
    queue: VecDeque<Chunk>,
    /// The one send in flight: two could complete out of order after a
    /// short send, and the peer would get its bytes reordered.
    sending: Option<Chunk>,
    /// Nothing more to read (the peer's FIN, an error): close once the
    /// queue is empty.
    eof: bool,
    /// In line for buffers after ENOBUFS.
    waiting: bool,
}

#[cfg(target_os = "linux")]
impl Conn {
    /// Buffers this connection holds.
    fn held(&self) -> usize {
        self.queue.len() + usize::from(self.sending.is_some())
    }

    fn fd(&self) -> types::Fd {
        types::Fd(self.socket.as_ref().map_or(-1, |s| s.as_raw_fd()))
    }
}

#[cfg(target_os = "linux")]
struct Server {
    ring: IoUring,
    pool: buf_ring::BufRing,
    listener: std::net::TcpListener,
    conns: Vec<Conn>,
    free: Vec<usize>,
    /// Connections whose receive ended with ENOBUFS, oldest first.
    waiting: VecDeque<usize>,
    /// Buffers one connection may hold before we stop receiving from it:
    /// a peer that sends and never reads must not take the whole pool.
    share: usize,
    /// Multishot receives, or one buffer per receive (see `new`).
    multishot: bool,
    buffer_size: u32,
}

#[cfg(target_os = "linux")]
impl Server {
    fn new(args: &Args) -> Result<Server, String> {
        let (ring, pool, listener) = buf_ring::setup(
            args.common.addr,
            args.ring_entries,
            args.buffers,
            args.buffer_size,
            GROUP,
        )?;
        let buffers = usize::from(args.buffers);
        let share = (buffers / 4).clamp(1, 64);
        // A multishot receive takes buffers in bursts (up to about 128 here)
        // before our cancel lands. A pool smaller than twice share + burst
        // could go to one peer that never reads: then each receive asks for
        // one buffer, which keeps the share exact.
        let multishot = buffers >= 2 * (share + 128);
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!(
            "io_uring: {} submission and {} completion entries, {buffers} buffers of {} bytes, \
             {} receives",
            ring.params().sq_entries(),
            ring.params().cq_entries(),
            args.buffer_size,
            if multishot { "multishot" } else { "one-buffer" },
        );
        let mut server = Server {
            ring,
            pool,
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            waiting: VecDeque::new(),
            share,
            multishot,
            buffer_size: args.buffer_size,
        };
        server.arm_accept().map_err(|e| e.to_string())?;
        uring_echo_book::listen::announce(local);
        Ok(server)
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        // SAFETY: the only memory of ours an entry points at is a send's
        // bytes in a pool buffer (receives name no buffer: the kernel picks
        // one; accepts and cancels point at nothing). The buffer stays
        // mapped until the process ends (`BufRing` never unmaps buffers),
        // we never write into it, and it is out of the ring while its send
        // runs, so no receive writes into it either.
        unsafe { buf_ring::push(&mut self.ring, &entry) }
    }

    /// Asks the kernel to end the connection's receive.
    fn cancel_recv(&mut self, index: usize) -> io::Result<()> {
        self.conns[index].recv = Shot::Cancelling;
        let target = RECV | index as u64;
        self.push(opcode::AsyncCancel::new(target).build())
    }

    /// One accept request: one completion per new client.
    fn arm_accept(&mut self) -> io::Result<()> {
        let fd = types::Fd(self.listener.as_raw_fd());
        let entry = opcode::AcceptMulti::new(fd).flags(libc::SOCK_CLOEXEC);
        self.push(entry.build().user_data(ACCEPT))
    }

    fn on_accept(&mut self, res: i32, more: bool) -> io::Result<()> {
        if res >= 0 {
            // SAFETY: a successful accept returns a new descriptor, ours alone.
            let socket = unsafe { OwnedFd::from_raw_fd(res) };
            let index = self.free.pop().unwrap_or_else(|| {
                self.conns.push(Conn::default());
                self.conns.len() - 1
            });
            self.conns[index] = Conn {
                socket: Some(socket),
                ..Conn::default()
            };
            self.arm_recv(index)?;
        } else {
            // ECONNABORTED: a client gave up in the queue. (EMFILE would come
            // back at once; lesson 05 pauses accepting then.)
            eprintln!("accept failed: {}", io::Error::from_raw_os_error(-res));
        }
        if !more {
            self.arm_accept()?; // it ended: without this, nobody else gets in
        }
        Ok(())
    }

    /// Arms the connection's receive, unless it is armed already, has
    /// nothing more to read, waits in line, or holds its share of buffers.
    fn arm_recv(&mut self, index: usize) -> io::Result<()> {
        let conn = &mut self.conns[index];
        if conn.recv != Shot::Idle || conn.eof || conn.waiting {
            return Ok(());
        }
        if conn.held() >= self.share {
            return Ok(()); // backpressure: `on_send` re-arms it
        }
        // No buffer named: the kernel picks one from GROUP when data comes.
        let entry = if self.multishot {
            opcode::RecvMulti::new(conn.fd(), GROUP).build()
        } else {
            opcode::Recv::new(conn.fd(), std::ptr::null_mut(), self.buffer_size)
                .buf_group(GROUP)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT)
        };
        conn.recv = Shot::Armed;
        self.push(entry.user_data(RECV | index as u64))
    }

    // ANCHOR: rearm
    fn on_recv(&mut self, index: usize, res: i32, flags: u32) -> io::Result<()> {
        let more = cqueue::more(flags);
        let share = self.share;
        let conn = &mut self.conns[index];
        // Every completion says whether the receive is still armed, the
        // ones with data too. When the completion queue is full, the kernel
        // ends a multishot receive: it posts the data it has as the last
        // completion, without F_MORE, and receives nothing more. Taken for
        // armed, that receive would never be re-armed, and the peer's bytes
        // would wait in the socket forever.
        if !more {
            conn.recv = Shot::Idle;
        }
        // Data: the flags name the buffer the kernel filled.
        if let Some(bid) = cqueue::buffer_select(flags).filter(|_| res > 0) {
            conn.queue.push_back(Chunk {
                bid,
                len: res as u32,
                sent: 0,
            });
            if conn.held() >= share && conn.recv == Shot::Armed {
                self.cancel_recv(index)?; // backpressure: stop taking buffers
            }
            self.send_next(index)?;
        } else if res == 0 {
            conn.eof = true; // the peer's FIN: echo what is queued, then close
        } else if -res == libc::ENOBUFS {
            // The ring was empty; the data waits in the socket. Get in line:
            // `wake_waiting` re-arms us when buffers come back.
            conn.waiting = true;
            self.waiting.push_back(index);
        } else if -res != libc::ECANCELED {
            conn.eof = true; // ECONNRESET and friends: this connection only
        }
        if !more {
            self.arm_recv(index)?; // it ended: re-arm it, or close
            self.close_if_done(index)?;
        }
        Ok(())
    }

    // ANCHOR_END: rearm

    // ANCHOR: recycle
    /// Sends the oldest unsent bytes, from the buffer they arrived in,
    /// unless a send is in flight already.
    fn send_next(&mut self, index: usize) -> io::Result<()> {
        let conn = &mut self.conns[index];
        if conn.sending.is_some() {
            return Ok(());
        }
        let Some(chunk) = conn.queue.pop_front() else {
            return Ok(());
        };
        // SAFETY: `sent < len <= buffer size`: inside buffer `bid`.
        let from = unsafe { self.pool.addr(chunk.bid).add(chunk.sent as usize) };
        let entry = opcode::Send::new(conn.fd(), from, chunk.len - chunk.sent)
            .flags(libc::MSG_NOSIGNAL) // EPIPE, not SIGPIPE, if the peer left
            .build()
            .user_data(SEND | index as u64);
        conn.sending = Some(chunk);
        // The buffer stays ours while the send is in flight. Queuing the
        // request copies nothing: the kernel reads the buffer when the send
        // runs, which can be much later (a peer that does not read keeps it
        // waiting as long as it likes). Back in the ring before that, the
        // buffer could be refilled with another connection's bytes, and
        // this peer would get those.
        self.push(entry)
    }

    fn on_send(&mut self, index: usize, res: i32) -> io::Result<()> {
        let conn = &mut self.conns[index];
        let Some(mut chunk) = conn.sending.take() else {
            return Ok(());
        };
        if res < 0 {
            // The peer is gone, and the send is over: the buffer is free.
            self.pool.give_back(chunk.bid);
            conn.eof = true;
            for chunk in conn.queue.drain(..) {
                self.pool.give_back(chunk.bid); // never to be sent
            }
            if conn.recv == Shot::Armed {
                self.cancel_recv(index)?;
            }
            return self.close_if_done(index);
        }
        chunk.sent += res as u32;
        if chunk.sent < chunk.len {
            conn.queue.push_front(chunk); // a short send: the rest goes first
        } else {
            // The kernel has read the whole buffer: only now may it refill it.
            self.pool.give_back(chunk.bid);
        }
        if self.conns[index].held() <= self.share / 2 {
            self.arm_recv(index)?; // backpressure released
        }
        self.send_next(index)?;
        self.close_if_done(index)
    }
    // ANCHOR_END: recycle

    /// Closes the connection once it is finished and the kernel holds
    /// nothing of it: no receive armed, no send in flight.
    fn close_if_done(&mut self, index: usize) -> io::Result<()> {
        let conn = &mut self.conns[index];
        if conn.socket.is_none()
            || !conn.eof
            || !conn.queue.is_empty()
            || conn.sending.is_some()
            || conn.recv != Shot::Idle
        {
            return Ok(());
        }
        conn.socket = None; // close(2)
        self.free.push(index);
        Ok(())
    }

    /// Buffers came back, from any connection: re-arm the connections in
    /// line, oldest first, one per buffer in the ring.
    fn wake_waiting(&mut self) -> io::Result<()> {
        let mut budget = self.pool.available();
        while budget > 0 {
            let Some(index) = self.waiting.pop_front() else {
                break;
            };
            // A slot reused meanwhile has `waiting` off; one closed meanwhile
            // has `eof` set, and `arm_recv` leaves it alone.
            if std::mem::take(&mut self.conns[index].waiting) {
                self.arm_recv(index)?;
                budget -= 1;
            }
        }
        Ok(())
    }

    /// Submits, waits, handles the completions; returns only on an error.
    fn run(&mut self) -> io::Result<std::convert::Infallible> {
        loop {
            for (user_data, res, flags) in buf_ring::wait(&mut self.ring)? {
                if let Some(bid) = cqueue::buffer_select(flags) {
                    self.pool.taken(); // the kernel took it from the ring
                    if res <= 0 {
                        // Named, but nothing in it: straight back. (Recent
                        // kernels put such a buffer back themselves, and do
                        // not name it; the flag is what we go by.)
                        self.pool.give_back(bid);
                    }
                }
                let index = (user_data & 0xffff_ffff) as usize;
                match user_data & !0xffff_ffff {
                    ACCEPT => self.on_accept(res, cqueue::more(flags))?,
                    RECV => self.on_recv(index, res, flags)?,
                    SEND => self.on_send(index, res)?,
                    _ => {} // a cancel's own completion
                }
            }
            self.wake_waiting()?;
        }
    }
}
