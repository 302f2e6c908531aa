// The server of exercises 05-early-recycle and 05-rearm, all of it but
// their regions, which the file that includes this one defines as the
// modules `recycle` (`send_next` and `on_send`) and `rearm` (`on_recv`):
// each starter has its own region to change and takes the other one,
// solved, from `exercises/solutions/`; the reference solution,
// `exercises/solutions/05-multishot.rs`, takes both.
//
// It is lesson 05 made compact: one multishot accept, a multishot receive
// per connection taking buffers from a registered buffer ring, each echo
// sent from the buffer its bytes arrived in, one send in flight per
// connection. No counters at exit, no task-run modes, no reserve and no
// shutdown of its own: Ctrl-C ends the process at once, and the kernel
// tears the ring down after it. Lesson 05's own files do what they do in
// the lesson: `conn.rs`, `pool.rs`, `probe.rs`, `push.rs` and `stats.rs`,
// below.

use std::process::ExitCode;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;

// Lesson 05's own files, as they are: `conn.rs` (`user_data`: `Kind`,
// `pack`, `unpack`; `Shot`, where a multishot request stands), `pool.rs`
// (the buffers, and the rings through which the kernel gets them),
// `probe.rs` (does this kernel have multishot receive?), `push.rs` (`push`
// and `cancel`, how requests reach the kernel) and `stats.rs`, the
// counters `push` adds to. This server keeps its own connections (a queue
// of chunks, not the lesson's buffers linked through the pool) and leaves
// out the lesson's fairness (the reserve, a quarter of the pool, stays in
// its ring unused): the allows are for what that leaves unused.
#[cfg(target_os = "linux")]
#[allow(dead_code)]
#[path = "../../src/bin/05_uring_multishot/conn.rs"]
mod conn;
#[cfg(target_os = "linux")]
#[allow(dead_code)]
#[path = "../../src/bin/05_uring_multishot/pool.rs"]
mod pool;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/probe.rs"]
mod probe;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/push.rs"]
mod push;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/stats.rs"]
mod stats;

// Lesson 05's files find the server at `crate::setup::Server`, where the
// lesson defines it; here it is this file's `Server`, which has the fields
// `push.rs` uses (`ring`, `in_flight`, `stats`).
#[cfg(target_os = "linux")]
mod setup {
    pub(crate) use crate::Server;
}

#[cfg(target_os = "linux")]
use {
    conn::{Kind, Shot, pack, unpack},
    io_uring::{IoUring, cqueue, opcode, squeue, types},
    nix::libc,
    pool::{OPEN, Pool},
    push::{RETRIES, is_transient},
    stats::Stats,
    std::collections::VecDeque,
    std::io,
    std::mem::ManuallyDrop,
    std::os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// A compact lesson 05: multishot accept, multishot receive into a
/// registered buffer ring, each echo sent from its buffer (exercises
/// 05-early-recycle and 05-rearm; Linux 6.0+).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Entries in the submission queue (the completion queue: twice as many).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=4096))]
    ring_entries: u32,

    /// Buffers in the pool (a power of two, at most 32768); as in lesson
    /// 05, a quarter of them is its reserve, which this server leaves unused.
    #[arg(long, default_value_t = 1024, value_parser = parse_buffers)]
    buffers: u16,

    /// Size of each buffer in bytes.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    buffer_size: u32,
}

/// `--buffers`: the kernel's rule for a buffer ring is a power of two, at
/// most 32768 entries.
fn parse_buffers(text: &str) -> Result<u16, String> {
    match text.parse::<u32>() {
        Ok(n) if (2..=32768).contains(&n) && n.is_power_of_two() => Ok(n as u16),
        _ => Err("a power of two from 2 to 32768 (the kernel's rule for buffer rings)".into()),
    }
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    match Server::new(&Args::parse()) {
        Ok(mut server) => {
            let Err(e) = server.run();
            eprintln!("error: the event loop failed: {e}");
            // Receives may still be in flight as `server` drops here: safe,
            // because the buffers they write into are never unmapped (see
            // `Server::pool`). The process ends right after.
        }
        Err(e) => eprintln!("error: {e}"),
    }
    ExitCode::FAILURE
}

/// Bytes received into buffer `bid`, of which `sent` have been echoed.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy)]
struct Chunk {
    bid: u16,
    len: u32,
    sent: u32,
}

/// One slot of the connection table.
#[cfg(target_os = "linux")]
struct Conn {
    /// The socket; `None` marks a free slot.
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
    fn new(socket: Option<OwnedFd>) -> Conn {
        Conn {
            socket,
            recv: Shot::Idle,
            queue: VecDeque::new(),
            sending: None,
            eof: false,
            waiting: false,
        }
    }

    /// Buffers this connection holds.
    fn held(&self) -> usize {
        self.queue.len() + usize::from(self.sending.is_some())
    }

    fn fd(&self) -> types::Fd {
        types::Fd(self.socket.as_ref().map_or(-1, |s| s.as_raw_fd()))
    }
}

// A request's `user_data` (lesson 05's `pack`) names its kind and the
// connection's slot. A slot is reused only once nothing of its last
// connection is in flight, so a completion always finds the connection it
// was for: the generation can stay 0.

#[cfg(target_os = "linux")]
struct Server {
    ring: IoUring,
    /// Lesson 05's pool. Never dropped, so its buffers are never unmapped:
    /// a receive may be in flight when the server goes (Ctrl-C ends the
    /// process from another thread; an error or a panic leaves receives
    /// armed), and the kernel would write into memory that is no longer
    /// ours. The process ends right after, and the memory with it.
    pool: ManuallyDrop<Pool>,
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
    /// Requests whose last completion has not come yet: `push` counts them.
    in_flight: usize,
    stats: Stats,
}

#[cfg(target_os = "linux")]
impl Server {
    /// The ring, the multishot receive probed, the pool registered, the
    /// listener; then the accept. An error is the one line the user sees.
    fn new(args: &Args) -> Result<Server, String> {
        use uring_echo_book::uring;
        uring_echo_book::limits::raise_open_file_limit_or_warn();
        uring_echo_book::signals::exit_on_signal()
            .map_err(|e| format!("cannot handle SIGINT/SIGTERM: {e}"))?;
        let mut ring = uring::build(&IoUring::builder(), args.ring_entries)?;
        // The opcode probe cannot tell a multishot receive from a plain one
        // (they share an opcode), so lesson 05's probe tries one. A kernel
        // that has it (6.0) has multishot accept and buffer rings (5.19) too.
        probe::check_multishot_recv(&mut ring)?;
        let pool = Pool::new(args.buffers, args.buffer_size)?;
        pool.register(&ring)
            .map_err(|e| uring::explain_buf_ring_error(&e))?;
        let listener = uring_echo_book::listen::bind_or_explain(args.common.addr)?;
        let share = (pool.open / 4).clamp(1, 64);
        // A multishot receive takes buffers in bursts (up to about 128 here)
        // before our cancel lands. A pool smaller than twice share + burst
        // could go to one peer that never reads: then each receive asks for
        // one buffer, which keeps the share exact.
        let multishot = pool.open >= 2 * (share + 128);
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!(
            "io_uring: {} submission and {} completion entries, {} buffers of {} bytes \
             (and {} in the unused reserve), {} receives",
            ring.params().sq_entries(),
            ring.params().cq_entries(),
            pool.open,
            args.buffer_size,
            pool.count - pool.open,
            if multishot { "multishot" } else { "one-buffer" },
        );
        let mut server = Server {
            ring,
            pool: ManuallyDrop::new(pool),
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            waiting: VecDeque::new(),
            share,
            multishot,
            buffer_size: args.buffer_size,
            in_flight: 0,
            stats: Stats::default(),
        };
        server.arm_accept().map_err(|e| e.to_string())?;
        uring_echo_book::listen::announce(local);
        Ok(server)
    }

    /// Queues a request with lesson 05's `push`.
    fn submit(&mut self, entry: squeue::Entry) -> io::Result<()> {
        // SAFETY: the only memory of ours an entry points at is a send's
        // bytes in a pool buffer (receives name no buffer: the kernel picks
        // one; accepts and cancels point at nothing). The buffer stays
        // mapped until the process ends (the pool is never dropped), we
        // never write into it, and it is out of the ring while its send
        // runs, so no receive writes into it either.
        unsafe { self.push(entry) }
    }

    /// Asks the kernel to end the connection's receive.
    fn cancel_recv(&mut self, index: usize) -> io::Result<()> {
        self.conns[index].recv = Shot::Cancelling;
        self.cancel(pack(Kind::Recv, index, 0))
    }

    /// One accept request: one completion per new client.
    fn arm_accept(&mut self) -> io::Result<()> {
        let fd = types::Fd(self.listener.as_raw_fd());
        let entry = opcode::AcceptMulti::new(fd).flags(libc::SOCK_CLOEXEC);
        self.submit(entry.build().user_data(pack(Kind::Accept, 0, 0)))
    }

    fn on_accept(&mut self, res: i32, more: bool) -> io::Result<()> {
        if res >= 0 {
            // SAFETY: a successful accept returns a new descriptor, ours alone.
            let socket = unsafe { OwnedFd::from_raw_fd(res) };
            let index = self.free.pop().unwrap_or_else(|| {
                self.conns.push(Conn::new(None));
                self.conns.len() - 1
            });
            self.conns[index] = Conn::new(Some(socket));
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
        // No buffer named: the kernel picks one from the open pool's ring
        // when data comes.
        let entry = if self.multishot {
            opcode::RecvMulti::new(conn.fd(), OPEN).build()
        } else {
            opcode::Recv::new(conn.fd(), std::ptr::null_mut(), self.buffer_size)
                .buf_group(OPEN)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT)
        };
        conn.recv = Shot::Armed;
        self.submit(entry.user_data(pack(Kind::Recv, index, 0)))
    }

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

    /// Buffers came back, from any connection: while the ring has some,
    /// re-arm the connections in line, oldest first.
    ///
    /// Every one of them, not one per buffer in the ring. A receive armed
    /// on an empty ring ends at once with ENOBUFS, whether or not bytes
    /// are waiting, so a connection in line may have nothing to say: its
    /// receive, re-armed, takes no buffer until bytes come. One per buffer,
    /// the wake-up could go to silent connections only, and one with bytes
    /// waiting behind them would wait for a wake-up that no completion
    /// brings any more. (Lesson 05 asks the kernel to wait for bytes before
    /// it picks a buffer, `POLL_FIRST`, so that ENOBUFS means bytes; this
    /// server keeps the plain receive of the exercises.) Those that find
    /// the ring empty again get back in line.
    fn wake_waiting(&mut self) -> io::Result<()> {
        if self.pool.open_available() == 0 {
            return Ok(());
        }
        for index in std::mem::take(&mut self.waiting) {
            // A slot reused meanwhile has `waiting` off; one closed meanwhile
            // has `eof` set, and `arm_recv` leaves it alone.
            if std::mem::take(&mut self.conns[index].waiting) {
                self.arm_recv(index)?;
            }
        }
        Ok(())
    }

    /// One `io_uring_enter`: hands the kernel every queued request and
    /// waits for at least one completion; tried again, a bounded number of
    /// times, when the kernel asks for it (lesson 05's `is_transient`).
    fn enter(&mut self) -> io::Result<()> {
        let mut tries = 0;
        loop {
            self.stats.enters += 1;
            let Err(e) = self.ring.submit_and_wait(1) else {
                return Ok(());
            };
            if !is_transient(&e) || tries == RETRIES {
                return Err(e);
            }
            tries += 1;
        }
    }

    /// Submits, waits, handles the completions; returns only on an error.
    fn run(&mut self) -> io::Result<std::convert::Infallible> {
        let mut batch = Vec::new();
        loop {
            self.enter()?;
            // Copied out first: handling one pushes new requests, and that
            // needs the ring the completion queue borrows.
            batch.clear();
            batch.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(user_data, res, flags) in &batch {
                if !cqueue::more(flags) {
                    self.in_flight -= 1; // this request's last completion
                }
                if let Some(bid) = cqueue::buffer_select(flags) {
                    self.pool.taken(bid); // the kernel took it from the ring
                    if res <= 0 {
                        // Named, but nothing in it: straight back. (Recent
                        // kernels put such a buffer back themselves, and do
                        // not name it; the flag is what we go by.)
                        self.pool.give_back(bid);
                    }
                }
                let (kind, index, _) = unpack(user_data);
                match kind {
                    Some(Kind::Accept) => self.on_accept(res, cqueue::more(flags))?,
                    Some(Kind::Recv) => self.on_recv(index, res, flags)?,
                    Some(Kind::Send) => self.on_send(index, res)?,
                    _ => {} // a cancel's own completion
                }
            }
            self.wake_waiting()?;
        }
    }
}

// Elsewhere, the server says what it needs, and stops.
#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: this exercise needs Linux 6.0+ (io_uring with multishot receive)");
    ExitCode::FAILURE
}
