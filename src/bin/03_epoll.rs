//! 03_epoll — one thread, thousands of clients, and not a byte lost.
//!
//! Lesson 02 gave every connection a thread so that one slow client could
//! not block the rest. This lesson gets the same from a single thread: every
//! socket is *nonblocking*, so `read` and `write` return at once with
//! `EAGAIN` ("would block") instead of waiting, and one `epoll_wait` call
//! tells us which sockets are ready. The thread goes where there is work.
//!
//! Nonblocking I/O moves a job from the kernel to us. A blocking `write_all`
//! waited until the peer made room; a nonblocking `write` takes what fits and
//! returns. Whatever it did not take we must keep, in order, and send when
//! epoll says the socket is writable again. Many epoll echo servers people
//! copy from skip this and silently drop bytes under load. And because we
//! now keep bytes for a peer, a peer that never reads could make us keep
//! bytes without end: so past `--max-queued-bytes` we stop reading from it
//! (backpressure) until it catches up.
//!
//! Run it:
//!
//! ```text
//! cargo run --bin 03_epoll                        # level-triggered, 127.0.0.1:7878
//! cargo run --bin 03_epoll -- --trigger edge      # edge-triggered
//! cargo run --bin echo-check -- 127.0.0.1:7878    # every check passes
//! ```

#[cfg(target_os = "linux")]
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
#[cfg(target_os = "linux")]
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
#[cfg(target_os = "linux")]
use nix::errno::Errno;
#[cfg(target_os = "linux")]
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
#[cfg(target_os = "linux")]
use nix::sys::signal::{SigSet, Signal};
#[cfg(target_os = "linux")]
use nix::sys::signalfd::{SfdFlags, SignalFd};
use uring_echo_book::cli::CommonArgs;

// ANCHOR: options
/// A single-threaded echo server on nonblocking sockets and epoll (Linux).
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// How epoll reports readiness. `level`: as long as a socket is ready,
    /// every epoll_wait reports it again. `edge`: only when it *becomes*
    /// ready, so each event must be drained until EAGAIN.
    #[arg(long, value_enum, default_value_t = Trigger::Level)]
    trigger: Trigger,

    /// Bytes one connection may have waiting to be sent before we stop
    /// reading from it. Bounds the memory a peer that never reads can cost.
    #[arg(long, default_value_t = 256 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_queued_bytes: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Trigger {
    Level,
    Edge,
}
// ANCHOR_END: options

/// epoll is a Linux system call; so is signalfd. Lessons 01 and 02 run anywhere.
#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: 03_epoll needs Linux (epoll and signalfd); lessons 01 and 02 run on any OS");
    ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args = Args::parse();
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    let mut server = match Server::new(&args) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match server.run() {
        Ok(()) => {
            eprintln!("{}", server.stats);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: the event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: tokens
// Each registered descriptor carries a 64-bit token that epoll hands back
// with its events. Two tokens are reserved; every other token names a slot
// in the connection table (the "slab") plus that slot's generation.
const LISTENER: u64 = u64::MAX;
const SIGNALS: u64 = u64::MAX - 1;

/// `generation << 32 | index`. Why not a pointer to the connection? A
/// pointer goes stale when the table grows (a `Vec` moves its contents) or
/// the connection is freed, and nothing would tell us. An index is checked
/// against the table on every event.
///
/// Why not the file descriptor? Because the kernel reuses the lowest free
/// descriptor number at once. Close connection A (fd 7) while handling one
/// batch of events, accept connection B (fd 7 again), and a later event of
/// the same batch, queued for A, would be applied to B. A slot index has
/// the same problem, so the slot's generation, bumped on every reuse, goes
/// into the token too, and a stale event is recognised and dropped.
fn token(index: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | index as u64
}

fn untoken(token: u64) -> (usize, u32) {
    ((token & 0xffff_ffff) as usize, (token >> 32) as u32)
}
// ANCHOR_END: tokens

// ANCHOR: conn
/// One client.
struct Conn {
    stream: TcpStream,
    /// Bumped each time this slot is reused; see [`token`].
    generation: u32,
    /// Bytes read but not yet written back, oldest first; `queue[sent..]`
    /// is still to be sent. Empty (and unallocated) while the peer keeps up.
    queue: Vec<u8>,
    sent: usize,
    /// The peer has shut down its side (read returned 0): finish sending,
    /// then close.
    peer_done: bool,
    /// Reading is paused because the queue is full (backpressure).
    paused: bool,
    /// What epoll is currently asked to report for this socket: level mode
    /// changes it as the queue fills and drains; edge mode never does.
    interest: Interest,
    /// Edge mode: this connection is on the server's `again` list, waiting
    /// for another turn. A connection goes on it at most once.
    on_again: bool,
}

/// Readable, writable, or both.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Interest {
    read: bool,
    write: bool,
}

impl Conn {
    fn queued(&self) -> usize {
        self.queue.len() - self.sent
    }
}
// ANCHOR_END: conn

/// What the event loop did, printed at exit so `strace -c` figures can be
/// checked against the program's own count.
#[derive(Default)]
struct Stats {
    accepted: u64,
    closed: u64,
    waits: u64,
    reads: u64,
    writes: u64,
    would_block: u64,
    short_writes: u64,
    backpressure_pauses: u64,
    accept_pauses: u64,
    bytes: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stats: accepted {} closed {} epoll_waits {} reads {} writes {} eagain {} \
             short_writes {} backpressure_pauses {} accept_pauses {} bytes_echoed {}",
            self.accepted,
            self.closed,
            self.waits,
            self.reads,
            self.writes,
            self.would_block,
            self.short_writes,
            self.backpressure_pauses,
            self.accept_pauses,
            self.bytes
        )
    }
}

// ANCHOR: server
/// The whole server: one epoll instance, the listening socket, the signal
/// descriptor, and the table of connections.
#[cfg(target_os = "linux")]
struct Server {
    epoll: Epoll,
    listener: std::net::TcpListener,
    signals: SignalFd,
    /// The slab: connection `i` lives in `conns[i]`; `None` is a free slot,
    /// and `free` lists them so a slot is reused before the table grows.
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    generations: Vec<u32>,
    /// One read buffer for every connection. We read into it and write
    /// straight back out; only bytes the peer cannot take yet are copied
    /// into that connection's own queue. A connection that keeps up costs
    /// no buffer at all.
    scratch: Box<[u8]>,
    trigger: Trigger,
    max_queued: usize,
    /// After EMFILE/ENFILE, accepting is paused until this moment, or until
    /// a connection closes, whichever comes first (see `accept_waiting`).
    accept_paused_until: Option<Instant>,
    /// Edge mode: connections whose turn ended with bytes perhaps still
    /// unread (see `READS_PER_TURN`), to be served again before we sleep,
    /// first come first served, each at most once (`Conn::on_again`).
    again: VecDeque<u64>,
    stats: Stats,
}
// ANCHOR_END: server

#[cfg(target_os = "linux")]
impl Server {
    // ANCHOR: setup
    fn new(args: &Args) -> Result<Server, String> {
        let addr = args.common.addr;
        // socket, SO_REUSEADDR, bind, listen: as in lesson 01.
        let listener = uring_echo_book::listen::bind_or_explain(addr)?;
        // New: the listening socket is nonblocking too, so `accept` returns
        // EAGAIN when the queue is empty instead of waiting.
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot make the listener nonblocking: {e}"))?;

        // SIGINT and SIGTERM become readable bytes on a descriptor, one more
        // event for the loop. They must be blocked first: otherwise the
        // default action (exit at once) would run before we could read them.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.thread_block()
            .map_err(|e| format!("cannot block SIGINT/SIGTERM: {e}"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("cannot create a signalfd: {e}"))?;

        // epoll_create1: the kernel object that watches descriptors for us.
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| format!("cannot create an epoll instance: {e}"))?;
        // The listener is always level-triggered: if we stop accepting half
        // way (EMFILE), it must tell us again that connections are waiting.
        epoll
            .add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
            .map_err(|e| format!("cannot watch the listener: {e}"))?;
        epoll
            .add(&signals, EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS))
            .map_err(|e| format!("cannot watch the signalfd: {e}"))?;

        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        uring_echo_book::listen::announce(local);
        Ok(Server {
            epoll,
            listener,
            signals,
            conns: Vec::new(),
            free: Vec::new(),
            generations: Vec::new(),
            scratch: vec![0u8; 64 * 1024].into_boxed_slice(),
            trigger: args.trigger,
            max_queued: usize::try_from(args.max_queued_bytes).unwrap_or(usize::MAX),
            accept_paused_until: None,
            again: VecDeque::new(),
            stats: Stats::default(),
        })
    }
    // ANCHOR_END: setup

    // ANCHOR: event_loop
    /// Waits for events and handles them, until SIGINT or SIGTERM.
    fn run(&mut self) -> io::Result<()> {
        let mut events = vec![EpollEvent::empty(); 1024];
        loop {
            // A pause in accepting (EMFILE/ENFILE) that has run its time
            // ends here, whatever else is going on. No connection closed to
            // free a descriptor, but descriptors may be free anyway: after
            // ENFILE another process may have closed files, or someone
            // raised our limit. Checked on every turn, not only when the
            // loop is idle: a server with steady traffic never is.
            if self
                .accept_paused_until
                .is_some_and(|until| Instant::now() >= until)
            {
                self.resume_accepting();
            }
            // Block until something is ready. While connections wait for
            // another turn (edge mode), we only look. While accepting is
            // paused, we sleep no longer than the pause has left, rounded
            // up to epoll's milliseconds (waking a moment early would only
            // mean waiting again).
            let timeout = if !self.again.is_empty() {
                EpollTimeout::ZERO
            } else if let Some(until) = self.accept_paused_until {
                let left = until.saturating_duration_since(Instant::now());
                EpollTimeout::try_from(left.as_millis() + 1).unwrap_or(EpollTimeout::MAX)
            } else {
                EpollTimeout::NONE
            };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            self.stats.waits += 1;
            for event in &events[..n] {
                match event.data() {
                    LISTENER => self.accept_waiting(),
                    SIGNALS => {
                        if let Ok(Some(info)) = self.signals.read_signal() {
                            eprintln!(
                                "signal {} received: closing every connection",
                                info.ssi_signo
                            );
                            self.shutdown();
                            return Ok(());
                        }
                    }
                    token => self.on_ready(token),
                }
            }
            // Edge mode: the connections whose turn ran out get their next
            // one now, after everyone epoll reported (and the signal) had
            // theirs. A turn that runs out again queues behind these.
            for _ in 0..self.again.len() {
                let Some(token) = self.again.pop_front() else {
                    break;
                };
                // Off the list: if this turn runs out too, it goes back on.
                if let Some(conn) = self.conn_mut(token) {
                    conn.on_again = false;
                }
                self.on_ready(token);
            }
        }
    }

    /// The open connection a token names, if there still is one: its slot
    /// must hold a connection of the token's generation (see [`token`]).
    fn conn_mut(&mut self, token: u64) -> Option<&mut Conn> {
        let (index, generation) = untoken(token);
        self.conns
            .get_mut(index)?
            .as_mut()
            .filter(|conn| conn.generation == generation)
    }
    // ANCHOR_END: event_loop

    // ANCHOR: accept
    /// Accepts waiting connections, until EAGAIN or until this turn's share
    /// is used up.
    fn accept_waiting(&mut self) {
        // A turn of accepting has a limit, as a turn of reading has (see
        // `READS_PER_TURN`). Without one, a burst of connects keeps the loop
        // here until the whole accept queue is taken, up to 4096 clients
        // (our listen backlog), and meanwhile every connected client, and
        // SIGINT, waits. Stopping early loses nothing: the listener is
        // level-triggered, so the next epoll_wait reports it again while
        // connections wait. How many: each accept costs three system calls
        // (accept4, the ioctl that makes the socket nonblocking, epoll_ctl),
        // so with 64 the clients already connected wait for at most 192 of
        // them, not 12,288, and a full queue is still taken in 64 turns.
        const ACCEPTS_PER_TURN: u32 = 64;
        for _ in 0..ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((stream, _peer)) => self.register(stream),
                // The accept queue is empty: back to epoll_wait.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // EMFILE/ENFILE: out of descriptors. The trap: the listener
                // is level-triggered and still has connections waiting, so
                // the very next epoll_wait reports it again, accept fails
                // again, and the loop spins at 100% CPU doing nothing. So we
                // stop watching the listener until a connection closes (which
                // frees a descriptor) or the pause's time is up.
                Err(e) if is_out_of_descriptors(&e) => {
                    self.pause_accepting(&e);
                    return;
                }
                // The client gave up before we accepted it (ECONNABORTED), or
                // an interrupted call: the next one may work.
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

    fn pause_accepting(&mut self, why: &io::Error) {
        // Long enough that a server out of descriptors sleeps instead of
        // spinning (ten tries a second), short enough that descriptors
        // freed without a connection closing are used soon.
        const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
        if self.accept_paused_until.is_none() {
            eprintln!(
                "accept failed: {why}; pausing accepts for {ACCEPT_PAUSE:?} \
                 or until a connection closes"
            );
            self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
            self.stats.accept_pauses += 1;
            let _ = self.epoll.delete(&self.listener);
        }
    }

    fn resume_accepting(&mut self) {
        if self.accept_paused_until.take().is_some() {
            if let Err(e) = self.epoll.add(
                &self.listener,
                EpollEvent::new(EpollFlags::EPOLLIN, LISTENER),
            ) {
                eprintln!("cannot watch the listener again: {e}");
            }
            // Connections may be waiting already; do not wait for an event.
            // (Out of descriptors still, this pauses again at once.)
            self.accept_waiting();
        }
    }
    // ANCHOR_END: accept

    // ANCHOR: register
    /// Puts a new connection in a free slot and tells epoll about it.
    fn register(&mut self, stream: TcpStream) {
        self.stats.accepted += 1;
        // An accepted socket starts out blocking, whatever the listener is.
        if let Err(e) = stream.set_nonblocking(true) {
            eprintln!("cannot make a connection nonblocking: {e}");
            return;
        }
        let index = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.generations.push(0);
            self.conns.len() - 1
        });
        self.generations[index] = self.generations[index].wrapping_add(1);
        let generation = self.generations[index];
        // Level: ask only for what we need now, which is "readable".
        // Edge: ask once for both, for good; the kernel reports each change.
        let interest = Interest {
            read: true,
            write: self.trigger == Trigger::Edge,
        };
        let event = EpollEvent::new(flags(interest, self.trigger), token(index, generation));
        if let Err(e) = self.epoll.add(&stream, event) {
            eprintln!("cannot watch a connection: {e}");
            self.free.push(index);
            return;
        }
        self.conns[index] = Some(Conn {
            stream,
            generation,
            queue: Vec::new(),
            sent: 0,
            peer_done: false,
            paused: false,
            interest,
            on_again: false,
        });
    }
    // ANCHOR_END: register
}

// ANCHOR: flags
/// The epoll flags for an interest, in the chosen trigger mode.
#[cfg(target_os = "linux")]
fn flags(interest: Interest, trigger: Trigger) -> EpollFlags {
    let mut flags = EpollFlags::empty();
    if interest.read {
        flags |= EpollFlags::EPOLLIN;
    }
    if interest.write {
        flags |= EpollFlags::EPOLLOUT;
    }
    if trigger == Trigger::Edge {
        flags |= EpollFlags::EPOLLET;
    }
    flags
}
// ANCHOR_END: flags

#[cfg(target_os = "linux")]
impl Server {
    // ANCHOR: on_ready
    /// A connection's socket is readable, writable, or has an error or hang-up
    /// pending. Whatever epoll said, the same two steps serve: send what is
    /// queued, then read what there is room for.
    fn on_ready(&mut self, token: u64) {
        let (index, generation) = untoken(token);
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return; // closed earlier in this batch of events
        };
        if conn.generation != generation {
            return; // an event for the slot's previous connection
        }
        let outcome = drive(
            conn,
            &mut self.scratch,
            self.max_queued,
            self.trigger,
            &mut self.stats,
        );
        match outcome {
            Ok(Next::Keep) => self.update_interest(index),
            Ok(Next::TurnOver) => {
                self.update_interest(index);
                // Level mode: epoll reports the unread bytes again by
                // itself. Edge mode: it will not, so we remember them, but
                // only once. A connection still on `again` from the last
                // turn that has an event this turn as well would otherwise
                // go on twice, and, streaming on, once more every turn: more
                // turns for it than for everyone else, and reads for nothing.
                if self.trigger == Trigger::Edge
                    && let Some(conn) = self.conns[index].as_mut()
                    && !conn.on_again
                {
                    conn.on_again = true;
                    // The flag and the list agree; debug builds (the
                    // tests) check it.
                    debug_assert!(!self.again.contains(&token), "on `again` twice");
                    self.again.push_back(token);
                }
            }
            Ok(Next::Close) => self.close(index),
            Err(e) => {
                // ECONNRESET, EPIPE, ...: this client is gone. Nobody else is
                // affected. (Rust ignores SIGPIPE, so EPIPE is only an error.)
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ) {
                    eprintln!("connection error: {e}");
                }
                self.close(index);
            }
        }
    }
    // ANCHOR_END: on_ready

    // ANCHOR: interest
    /// Level-triggered only: watch for "writable" exactly while bytes are
    /// queued (a socket with room to write is writable nearly all the time,
    /// and asking regardless would wake us for nothing), and for "readable"
    /// only while we are willing to read (backpressure).
    fn update_interest(&mut self, index: usize) {
        if self.trigger == Trigger::Edge {
            return;
        }
        let max_queued = self.max_queued;
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        let wanted = Interest {
            read: !conn.peer_done && conn.queued() < max_queued,
            write: conn.queued() > 0,
        };
        if wanted != conn.interest {
            let mut event =
                EpollEvent::new(flags(wanted, self.trigger), token(index, conn.generation));
            match self.epoll.modify(&conn.stream, &mut event) {
                Ok(()) => conn.interest = wanted,
                Err(e) => {
                    eprintln!("cannot change what epoll watches: {e}");
                    self.close(index);
                }
            }
        }
    }
    // ANCHOR_END: interest

    // ANCHOR: close
    /// Closes a connection and frees its slot. Closing the descriptor also
    /// removes it from the epoll set, so no `epoll_ctl(DEL)` is needed.
    fn close(&mut self, index: usize) {
        if self.conns[index].take().is_some() {
            self.free.push(index);
            self.stats.closed += 1;
            // A descriptor is free again: if accepting was paused for lack
            // of one, try now.
            self.resume_accepting();
        }
    }
    // ANCHOR_END: close

    // ANCHOR: shutdown
    /// Stops accepting and closes every connection. Dropping the server
    /// afterwards closes the listener, the epoll instance and the signalfd.
    fn shutdown(&mut self) {
        let _ = self.epoll.delete(&self.listener);
        let open = self.conns.iter().flatten().count();
        self.conns.clear();
        eprintln!("closed {open} connections");
    }
    // ANCHOR_END: shutdown
}

/// EMFILE (this process) or ENFILE (the whole system) ran out of descriptors.
#[cfg(target_os = "linux")]
fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        Errno::EMFILE | Errno::ENFILE
    )
}

/// What to do with a connection after serving an event.
enum Next {
    Keep,
    /// Its turn ran out with bytes perhaps still waiting: serve it again
    /// after the others.
    TurnOver,
    Close,
}

// ANCHOR: drive
/// The most reads one connection gets per turn: 256 KiB with our 64 KiB
/// scratch buffer. Without a limit, a turn lasts as long as reads come back
/// full, which is as long as the peer keeps sending faster than we echo,
/// and meanwhile every other client, and SIGINT, waits. The fault suite
/// (`tests/faults.rs`) found this: 128 clients streaming flat out on a
/// busy machine kept the server from its signal for 13 seconds.
const READS_PER_TURN: u32 = 4;

/// Serves one readiness event: first send what is queued, then read and echo
/// what has arrived, as long as the queue has room and the turn lasts.
fn drive(
    conn: &mut Conn,
    scratch: &mut [u8],
    max_queued: usize,
    trigger: Trigger,
    stats: &mut Stats,
) -> io::Result<Next> {
    flush(conn, stats)?;
    let mut reads = 0;
    let mut turn_over = false;
    while !conn.peer_done && conn.queued() < max_queued {
        if reads == READS_PER_TURN {
            turn_over = true;
            break;
        }
        reads += 1;
        stats.reads += 1;
        let n = match conn.stream.read(scratch) {
            // The peer shut down its side: nothing more will come.
            Ok(0) => {
                conn.peer_done = true;
                break;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                stats.would_block += 1;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        echo(conn, &scratch[..n], stats)?;
        // Level-triggered: a short read means the socket's receive queue was
        // empty a moment ago; if more arrives, epoll will say so again, and
        // we save the read that would only return EAGAIN. Edge-triggered:
        // epoll reports only *new* readiness, so we must read until EAGAIN
        // or data already waiting would never be reported again.
        if trigger == Trigger::Level && n < scratch.len() {
            break;
        }
    }
    // Backpressure: the queue is full, so we stopped reading, and the peer's
    // bytes wait in the kernel (which in turn stops the peer's sends with
    // TCP flow control). In edge mode no new edge will come for data already
    // waiting; the next "writable" edge, when the peer reads, brings us back
    // here, and the loop above resumes once the queue has drained.
    let paused = !conn.peer_done && conn.queued() >= max_queued;
    if paused && !conn.paused {
        stats.backpressure_pauses += 1;
    }
    conn.paused = paused;
    if conn.peer_done && conn.queued() == 0 {
        return Ok(Next::Close); // every byte echoed: close, which sends our FIN
    }
    Ok(if turn_over {
        Next::TurnOver
    } else {
        Next::Keep
    })
}
// ANCHOR_END: drive

// ANCHOR: echo
/// Sends `data` back, keeping whatever the socket does not take.
fn echo(conn: &mut Conn, data: &[u8], stats: &mut Stats) -> io::Result<()> {
    // Bytes already queued must go first, or the peer would get them out of
    // order: append, and let `flush` send them when the socket has room.
    if conn.queued() > 0 {
        // The front of the queue, `queue[..sent]`, is already sent. Drop it
        // once it is half the queue, before appending: otherwise a peer that
        // reads slowly but never lets the queue drain completely would make
        // it grow forever, however few bytes are actually unsent.
        if conn.sent >= conn.queue.len() / 2 {
            conn.queue.drain(..conn.sent);
            conn.sent = 0;
        }
        conn.queue.extend_from_slice(data);
        return Ok(());
    }
    let written = write_some(&mut conn.stream, data, stats)?;
    if written < data.len() {
        // The socket's send buffer is full: the peer is not reading as fast
        // as it sends. Keep the rest; epoll will say when there is room.
        stats.short_writes += 1;
        conn.queue.extend_from_slice(&data[written..]);
        conn.sent = 0;
    }
    Ok(())
}

/// Sends as much of the queue as the socket takes now.
fn flush(conn: &mut Conn, stats: &mut Stats) -> io::Result<()> {
    while conn.queued() > 0 {
        let written = write_some(&mut conn.stream, &conn.queue[conn.sent..], stats)?;
        if written == 0 {
            return Ok(()); // full again; wait for the next "writable"
        }
        conn.sent += written;
    }
    // Drained. A queue that grew large is freed, not kept: an idle
    // connection should cost no buffer.
    conn.sent = 0;
    if conn.queue.capacity() > 64 * 1024 {
        conn.queue = Vec::new();
    } else {
        conn.queue.clear();
    }
    Ok(())
}

/// One write(): how many bytes the kernel took, 0 when its buffer is full.
fn write_some(stream: &mut TcpStream, data: &[u8], stats: &mut Stats) -> io::Result<usize> {
    loop {
        stats.writes += 1;
        match stream.write(data) {
            Ok(n) => {
                stats.bytes += n as u64;
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                stats.would_block += 1;
                return Ok(0);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
// ANCHOR_END: echo
