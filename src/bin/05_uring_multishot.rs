//! 05_uring_multishot — one request, many completions, and buffers the
//! kernel picks.
//!
//! Lesson 04 paid for every receive twice: one request per receive, and one
//! 4 KiB buffer per connection, held even while the connection was idle.
//! Here three io_uring features remove both costs:
//!
//! - **multishot accept**: one accept request, armed for the life of the
//!   server, posts one completion per new connection;
//! - **multishot recv**: one receive request per connection posts one
//!   completion each time data arrives;
//! - **a registered buffer ring**: a pool of buffers we share with the
//!   kernel. A receive takes a buffer from the ring only when data arrives,
//!   and tells us which one it took. An idle connection holds no buffer.
//!
//! Each received buffer is sent back from where it lies, without a copy,
//! and goes back into the ring only after its send has completed.
//!
//! The new difficulties are the pool's: it can run dry (ENOBUFS), and one
//! peer that sends but never reads could take all of it. This file handles
//! both, fairly, and proves that it allocates nothing once it serves.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --bin 05_uring_multishot
//! cargo run --release --bin 05_uring_multishot -- --buffers 4 --buffer-size 64   # watch ENOBUFS
//! cargo run --release --bin 05_uring_multishot -- --batch 32   # fewer enters under load (6.12)
//! cargo run --bin echo-check -- 127.0.0.1:7878
//! ```

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
#[cfg(target_os = "linux")]
use io_uring::{IoUring, cqueue, opcode, squeue, types};
#[cfg(target_os = "linux")]
use nix::libc;
#[cfg(target_os = "linux")]
use nix::sys::signal::{SigSet, Signal};
#[cfg(target_os = "linux")]
use nix::sys::signalfd::{SfdFlags, SignalFd};
#[cfg(target_os = "linux")]
use std::collections::VecDeque;
#[cfg(target_os = "linux")]
use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
#[cfg(target_os = "linux")]
use std::ptr::NonNull;
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicU16, Ordering};
use uring_echo_book::alloc_count::{self, CountingAllocator};
use uring_echo_book::cli::CommonArgs;

/// Counts every allocation, so the stats at exit can show that the event
/// loop made none.
#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

// ANCHOR: options
/// A single-threaded echo server on io_uring with multishot accept, multishot
/// recv and a registered buffer ring (Linux 6.0+).
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Entries in the submission queue.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=32768))]
    ring_entries: u32,

    /// Buffers in the shared pool (a power of two, at most 32768).
    #[arg(long, default_value_t = 1024, value_parser = parse_buffers)]
    buffers: u16,

    /// Size of each buffer in bytes.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    buffer_size: u32,

    /// Buffers one connection may hold (received, not yet sent back) before
    /// we stop receiving from it. A peer that sends but never reads holds
    /// at most this many; the rest of the pool serves everyone else.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=32768))]
    max_buffers_per_conn: u32,

    /// Most connections served at once: the connection table is allocated
    /// at start-up, this big. Accepting pauses at the cap.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..=30000))]
    max_conns: u32,

    /// How connections receive: `multishot` (one request per connection,
    /// buffers taken in bursts), `one-buffer` (one request per buffer, so a
    /// connection never holds more than its share), or `auto`: multishot
    /// when the pool is big enough for bursts, one-buffer otherwise.
    #[arg(long, value_enum, default_value_t = RecvChoice::Auto)]
    recv: RecvChoice,

    /// How the kernel runs completion work for this ring. `auto` tries
    /// `defer`, then `coop`, then `plain`, and says which it got.
    #[arg(long, value_enum, default_value_t = Taskrun::Auto)]
    taskrun: Taskrun,

    /// SO_SNDBUF for every connection, in bytes (default: the kernel's).
    /// A send buffer smaller than one of our buffers makes short sends
    /// frequent: try `--buffer-size 65536 --sndbuf 4096` and watch the
    /// `short_sends` counter at exit.
    #[arg(long, value_name = "BYTES")]
    sndbuf: Option<usize>,

    /// Completions each io_uring_enter waits for. 1 returns as soon as
    /// there is anything to do: the lowest latency. More make fewer system
    /// calls under heavy load, at a cost in latency and, with few busy
    /// clients, in throughput (the chapter measures both). Above 1 it needs
    /// Linux 6.12: past --batch-wait-usec the wait returns with what has come.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: u32,

    /// With --batch above 1: the longest an enter waits for the whole batch
    /// before it settles for what has come, in microseconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch_wait_usec: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum RecvChoice {
    Auto,
    Multishot,
    OneBuffer,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Taskrun {
    Auto,
    /// SINGLE_ISSUER | DEFER_TASKRUN (Linux 6.1): completion work runs only
    /// when we enter the kernel to wait for it, in batches.
    Defer,
    /// COOP_TASKRUN (Linux 5.19): the kernel does not interrupt us to run
    /// completion work; it runs at our next system call.
    Coop,
    /// Neither: completion work may interrupt the program at any time.
    Plain,
}

fn parse_buffers(text: &str) -> Result<u16, String> {
    let n: u32 = text.parse().map_err(|e| format!("{e}"))?;
    if n == 0 || n > 32768 || !n.is_power_of_two() {
        return Err("a power of two from 1 to 32768 (the kernel's rule for buffer rings)".into());
    }
    Ok(n as u16)
}
// ANCHOR_END: options

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!(
        "error: 05_uring_multishot needs Linux 6.0+ (io_uring); lessons 01 and 02 run on any OS"
    );
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
    // Everything the server needs is allocated by now. From here on, the
    // count must not move until the loop ends.
    let before = alloc_count::allocations();
    let result = server.run();
    server.stats.allocations_after_startup = alloc_count::allocations() - before;
    let result = result.and_then(|()| {
        eprintln!("signal received: closing every connection");
        server.shutdown()
    });
    match result {
        Ok(()) => {
            eprintln!("{}", server.stats);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: the event loop failed: {e}");
            // Requests may still be in flight, and the kernel may still write
            // into the pool: never unmap it. The process is exiting, which
            // takes the ring down first.
            std::mem::forget(server);
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: user_data
// 64 bits of user_data per request, as in lesson 04:
//
//   63      56 55                  32 31                               0
//  +----------+----------------------+----------------------------------+
//  |   kind   |  generation (24 bit) |   connection index (32 bit)      |
//  +----------+----------------------+----------------------------------+
//
// With multishot requests the generation matters more than before: one
// request keeps producing completions, so "which connection, which life of
// that slot" must be answerable for every one of them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Signal = 4,
    Timeout = 5,
    Cancel = 6,
}

fn pack(kind: Kind, index: usize, generation: u32) -> u64 {
    ((kind as u64) << 56) | (u64::from(generation & 0xff_ffff) << 32) | (index as u64 & 0xffff_ffff)
}

fn unpack(user_data: u64) -> (Option<Kind>, usize, u32) {
    let kind = match user_data >> 56 {
        1 => Some(Kind::Accept),
        2 => Some(Kind::Recv),
        3 => Some(Kind::Send),
        4 => Some(Kind::Signal),
        5 => Some(Kind::Timeout),
        6 => Some(Kind::Cancel),
        _ => None,
    };
    (
        kind,
        (user_data & 0xffff_ffff) as usize,
        ((user_data >> 32) & 0xff_ffff) as u32,
    )
}
// ANCHOR_END: user_data

// ANCHOR: pool
/// The buffer group id under which the ring is registered. A receive names
/// it to say "take a buffer from this pool".
#[cfg(target_os = "linux")]
const GROUP: u16 = 0;

/// How far past its share a connection's multishot receive can run before
/// our cancel takes effect: the most buffers it can take in one burst.
/// Measured, not promised: on one wake-up the kernel receives up to 32
/// times in a row while data keeps coming, and it may run the request
/// again before we get to see its completions; the `max_held` counter
/// reached share + 97 on a 2-core machine with Linux 6.18.
#[cfg(target_os = "linux")]
const BURST: u32 = 128;

/// "No buffer": the end of a connection's queue of buffers.
#[cfg(target_os = "linux")]
const NONE: u16 = u16::MAX;

/// The registered buffer ring: `count` buffers of `size` bytes, and a ring
/// of `count` entries through which we hand buffers to the kernel.
///
/// ```text
///      ring entries (16 bytes each, read by the kernel)     buffers (ours)
///    +-------+-------+-------+-------+-------+-------+    +----+----+----+--
///    | tail  |       |       |       |       |       |    | b0 | b1 | b2 | ..
///    | b3    | b0    | b5    | b1    |       |       |    +----+----+----+--
///    +-------+-------+-------+-------+-------+-------+
///        ^ head: the kernel takes       ^ tail: we add
/// ```
///
/// An id between head and tail is the kernel's: it may fill that buffer at
/// any moment. From the completion that names a buffer until we write its id
/// at the tail again, the buffer is ours, and the kernel will not touch it.
#[cfg(target_os = "linux")]
struct Pool {
    /// The ring's entries: page-aligned memory from an anonymous mmap, as the
    /// kernel requires. The ring's tail counter shares the first entry.
    ring: NonNull<types::BufRingEntry>,
    ring_bytes: usize,
    /// Where our next returned buffer goes. Published to the kernel as the
    /// ring's tail; it wraps at 65536, as the kernel's own counter does.
    tail: u16,
    mask: u16,
    /// The buffers, `count * size` bytes in one mapping. Only raw pointers
    /// into it exist: the kernel writes into buffers that are in the ring
    /// while we read from ours, and a Rust reference to the whole block would
    /// claim that nobody else writes to it.
    memory: NonNull<u8>,
    memory_bytes: usize,
    size: usize,
    count: usize,
    /// For each buffer: the bytes received into it, and the next buffer in
    /// the same connection's send queue. Allocated once, at start-up.
    len: Box<[u32]>,
    next: Box<[u16]>,
    /// Buffers we hold: received, not yet sent back and returned.
    out: usize,
}

#[cfg(target_os = "linux")]
impl Pool {
    fn new(count: u16, size: u32) -> Result<Pool, String> {
        use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous};
        let count = usize::from(count);
        let size = size as usize;
        let map = |bytes: usize, flags: MapFlags| {
            let length = std::num::NonZeroUsize::new(bytes).expect("at least one buffer");
            // SAFETY: a fresh private anonymous mapping aliases nothing. The
            // kernel returns it page-aligned and zero-filled. It is unmapped
            // in `drop`, after the io_uring that used it is gone.
            unsafe {
                mmap_anonymous(
                    None,
                    length,
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                    flags,
                )
            }
            .map_err(|e| format!("cannot map {bytes} bytes for the buffer pool: {e}"))
        };
        let ring_bytes = count * std::mem::size_of::<types::BufRingEntry>();
        let ring = map(ring_bytes, MapFlags::MAP_PRIVATE | MapFlags::MAP_POPULATE)?.cast();
        // The buffers are mapped but not populated: a page of them costs
        // memory only once the kernel first receives into it.
        let memory_bytes = count * size;
        let memory = map(memory_bytes, MapFlags::MAP_PRIVATE)?.cast();
        let mut pool = Pool {
            ring,
            ring_bytes,
            tail: 0,
            mask: (count - 1) as u16,
            memory,
            memory_bytes,
            size,
            count,
            len: vec![0; count].into_boxed_slice(),
            next: vec![NONE; count].into_boxed_slice(),
            out: count,
        };
        // Every buffer starts out in the ring, the kernel's to fill.
        for bid in 0..count {
            pool.give_back(bid as u16);
        }
        Ok(pool)
    }

    /// Registers the ring with the kernel side of `ring` under [`GROUP`].
    fn register(&self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: the entries are valid for `count` entries and stay mapped
        // until `drop`; the io_uring is dropped (which unregisters the ring)
        // before the pool, as the order of `Server`'s fields ensures.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.ring.as_ptr() as u64,
                self.count as u16,
                GROUP,
                0,
            )
        }
    }

    /// Hands buffer `bid` back to the kernel: writes an entry at the tail,
    /// then publishes the new tail.
    fn give_back(&mut self, bid: u16) {
        let slot = usize::from(self.tail & self.mask);
        // SAFETY: `slot` < `count`, so the entry lies inside the mapping. The
        // kernel only reads entries below the published tail, and this one is
        // at the tail until the store below publishes it.
        let entry = unsafe { &mut *self.ring.as_ptr().add(slot) };
        entry.set_addr(self.addr(bid, 0) as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: `BufRingEntry::tail` points at the ring's tail field, a u16
        // inside the first entry that the kernel reads concurrently, and
        // AtomicU16 has the layout of u16. The release store makes the entry
        // written above visible to the kernel before the tail that covers it.
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring.as_ptr()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
        self.out -= 1;
    }

    /// The address of byte `offset` of buffer `bid`.
    fn addr(&self, bid: u16, offset: usize) -> *const u8 {
        debug_assert!(usize::from(bid) < self.count && offset <= self.size);
        // SAFETY: `bid < count` and `offset <= size`, so the result is inside
        // (or one past the end of a buffer in) the `count * size` mapping.
        unsafe {
            self.memory
                .as_ptr()
                .add(usize::from(bid) * self.size + offset)
        }
    }

    /// Buffers in the ring, as far as we know: the kernel may have taken
    /// some whose completions we have not read yet.
    fn available(&self) -> usize {
        self.count - self.out
    }
}

#[cfg(target_os = "linux")]
impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: both mappings came from `mmap_anonymous` with these lengths,
        // and the kernel no longer uses them: the io_uring was dropped first.
        unsafe {
            let _ = nix::sys::mman::munmap(self.ring.cast(), self.ring_bytes);
            let _ = nix::sys::mman::munmap(self.memory.cast(), self.memory_bytes);
        }
    }
}
// ANCHOR_END: pool

// ANCHOR: conn
/// Where a multishot request (a connection's receive, or the accept) stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shot {
    /// Not armed: it ended, or never started.
    Idle,
    /// Armed: the kernel posts a completion whenever there is something.
    Armed,
    /// We asked the kernel to cancel it; its last completion is still due.
    Cancelling,
}

/// How a connection receives: a multishot request that takes buffers as
/// data comes, or one request per buffer when the pool is too small for
/// bursts (see `share` in `Server::new`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RecvMode {
    Multishot,
    OneBuffer,
}

impl RecvMode {
    fn name(self) -> &'static str {
        match self {
            RecvMode::Multishot => "multishot",
            RecvMode::OneBuffer => "one-buffer",
        }
    }
}

/// One slot of the connection table, allocated once at start-up.
#[cfg(target_os = "linux")]
struct Conn {
    /// The socket; `None` marks a free slot.
    socket: Option<OwnedFd>,
    generation: u32,
    recv: Shot,
    /// A send is in flight. At most one per connection: two could complete
    /// out of order after a short send, and bytes would be reordered.
    sending: bool,
    /// Received buffers waiting to be sent back, oldest first, linked
    /// through `Pool::next`; `offset` bytes of the first are already sent.
    head: u16,
    tail: u16,
    held: u32,
    offset: usize,
    /// The peer shut down its side: a receive returned 0.
    peer_done: bool,
    /// An error ended this connection: close it once nothing is in flight.
    failed: bool,
    /// This slot is in `Server::waiting`, queued for buffers after ENOBUFS.
    /// It belongs to the slot, not to one connection: a slot closed while it
    /// waits keeps its place, and the wake-up finds nothing to do.
    waiting: bool,
}

#[cfg(target_os = "linux")]
impl Conn {
    fn free() -> Conn {
        Conn {
            socket: None,
            generation: 0,
            recv: Shot::Idle,
            sending: false,
            head: NONE,
            tail: NONE,
            held: 0,
            offset: 0,
            peer_done: false,
            failed: false,
            waiting: false,
        }
    }
}
// ANCHOR_END: conn

/// What the server did, printed at exit.
#[derive(Default)]
struct Stats {
    taskrun: &'static str,
    enters: u64,
    /// Batch waits (--batch) whose time limit ran out before anything came.
    batch_timeouts: u64,
    completions: u64,
    accepted: u64,
    refused: u64,
    closed: u64,
    recv_completions: u64,
    rearms: u64,
    enobufs: u64,
    waits: u64,
    backpressure_pauses: u64,
    max_held: u32,
    sends: u64,
    short_sends: u64,
    conn_errors: u64,
    accept_pauses: u64,
    stale: u64,
    cq_overflow: u32,
    allocations_after_startup: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stats: taskrun {} enters {} batch_timeouts {} completions {} accepted {} refused {} closed {} \
             recv_completions {} rearms {} enobufs {} waits {} backpressure_pauses {} max_held {} sends {} \
             short_sends {} conn_errors {} accept_pauses {} stale {} cq_overflow {} \
             allocations_after_startup {}",
            self.taskrun,
            self.enters,
            self.batch_timeouts,
            self.completions,
            self.accepted,
            self.refused,
            self.closed,
            self.recv_completions,
            self.rearms,
            self.enobufs,
            self.waits,
            self.backpressure_pauses,
            self.max_held,
            self.sends,
            self.short_sends,
            self.conn_errors,
            self.accept_pauses,
            self.stale,
            self.cq_overflow,
            self.allocations_after_startup
        )
    }
}

// ANCHOR: server
#[cfg(target_os = "linux")]
struct Server {
    // Field order is drop order: the io_uring goes first, and with it the
    // kernel's use of the buffer ring, before `pool` unmaps the ring.
    ring: IoUring,
    pool: Pool,
    listener: std::net::TcpListener,
    signals: SignalFd,
    /// The kernel writes a `signalfd_siginfo` here when a signal arrives.
    siginfo: Box<[u8; 128]>,
    /// How long accepting pauses after EMFILE; read by the kernel while the
    /// timeout request is in flight.
    pause: Box<types::Timespec>,
    conns: Box<[Conn]>,
    /// Free slots of `conns`, and the slots waiting for buffers after
    /// ENOBUFS, oldest first. Both have room for every slot from the start,
    /// so pushing onto them never allocates.
    free: Vec<u32>,
    waiting: VecDeque<u32>,
    /// Buffers one connection may hold before its receive is stopped.
    max_per_conn: u32,
    recv_mode: RecvMode,
    buffer_size: u32,
    accept: Shot,
    timeout_armed: bool,
    /// Requests whose last completion has not arrived yet.
    in_flight: usize,
    /// Completions each enter waits for (`--batch`), and how long it waits
    /// for all of them before it takes what has come.
    batch_size: usize,
    batch_wait: types::SubmitArgs<'static, 'static>,
    /// The last batch wait ran out with nothing to show: wait plainly next.
    idle: bool,
    stopping: bool,
    /// Completions copied out of the ring: (user_data, result, flags).
    batch: Vec<(u64, i32, u32)>,
    stats: Stats,
}
// ANCHOR_END: server

#[cfg(target_os = "linux")]
impl Server {
    // ANCHOR: setup
    // ANCHOR: setup_ring
    fn new(args: &Args) -> Result<Server, String> {
        use uring_echo_book::uring::{self, Needed};

        // The completion queue must hold every completion that can be
        // pending at once. Multishot requests make that bigger than in 04:
        // each buffer can be named by one pending receive completion, and each
        // connection can have the last completion of its receive, a send and a
        // cancel pending. Past that the kernel keeps the overflow on a list
        // (`cq_overflow` at exit says whether it ever did).
        let max_conns = args.max_conns as usize;
        let cq_entries = (usize::from(args.buffers) + 3 * max_conns + 16)
            .next_power_of_two()
            .min(65536) as u32;
        let (mut ring, taskrun) = build_ring(args.taskrun, args.ring_entries, cq_entries)?;
        uring::require(
            &ring,
            &[
                Needed {
                    code: opcode::Accept::CODE,
                    name: "IORING_OP_ACCEPT",
                    since: "5.5",
                },
                Needed {
                    code: opcode::Recv::CODE,
                    name: "IORING_OP_RECV",
                    since: "5.6",
                },
                Needed {
                    code: opcode::Send::CODE,
                    name: "IORING_OP_SEND",
                    since: "5.6",
                },
                Needed {
                    code: opcode::Read::CODE,
                    name: "IORING_OP_READ",
                    since: "5.6",
                },
                Needed {
                    code: opcode::Timeout::CODE,
                    name: "IORING_OP_TIMEOUT",
                    since: "5.4",
                },
                Needed {
                    code: opcode::AsyncCancel::CODE,
                    name: "IORING_OP_ASYNC_CANCEL",
                    since: "5.5",
                },
            ],
        )?;
        // The probe above cannot tell a multishot receive from a plain one:
        // they share an opcode. So we try one. A kernel that passes has
        // buffer rings and multishot accept too (5.19, older than 6.0).
        uring::check_multishot_recv(&mut ring)?;
        // Waiting for a batch with a time limit on the batch, but not on
        // the wait itself, is the "min-wait" of Linux 6.12, which the ring
        // reports as a feature flag.
        if args.batch > 1 && !ring.params().is_feature_min_timeout() {
            return Err(format!(
                "--batch {} needs Linux 6.12 (IORING_FEAT_MIN_TIMEOUT), which this kernel \
                 lacks; leave --batch at 1",
                args.batch
            ));
        }

        let pool = Pool::new(args.buffers, args.buffer_size)?;
        // ENOMEM here is the locked-memory limit, not an old kernel: the
        // kernel pins the ring's entries and charges them to `ulimit -l`,
        // like the io_uring itself. The library's line says which it was.
        pool.register(&ring)
            .map_err(|e| uring::explain_buf_ring_error(&e))?;
        // ANCHOR_END: setup_ring
        // ANCHOR: share
        // A connection's share: the buffers it may hold before we stop
        // receiving from it. At most a quarter of the pool, whatever the
        // option says, so that one peer that never reads cannot starve the rest.
        let max_per_conn = args
            .max_buffers_per_conn
            .min((u32::from(args.buffers) / 4).max(1));
        if max_per_conn < args.max_buffers_per_conn {
            eprintln!(
                "--max-buffers-per-conn {} is more than a quarter of the {} buffers; using {max_per_conn}",
                args.max_buffers_per_conn, args.buffers
            );
        }
        // We count a connection's buffers as their completions arrive, but a
        // multishot receive takes them in bursts: while data keeps coming,
        // the kernel receives again and again, a buffer each time, and we see
        // the completions only afterwards. So a connection can overshoot its
        // share by a burst, and no cancel of ours can prevent it (see BURST).
        // With a pool of at least twice (share + BURST) that is harmless. With
        // a smaller one, one burst could take all of it, and a peer that does
        // not read would then starve everyone; so `auto` has each receive ask
        // for exactly one buffer instead, which keeps the share exact.
        let recv_mode = match args.recv {
            RecvChoice::Multishot => RecvMode::Multishot,
            RecvChoice::OneBuffer => RecvMode::OneBuffer,
            RecvChoice::Auto if u32::from(args.buffers) >= 2 * (max_per_conn + BURST) => {
                RecvMode::Multishot
            }
            RecvChoice::Auto => RecvMode::OneBuffer,
        };
        // ANCHOR_END: share
        // ANCHOR: setup_rest

        let addr = args.common.addr;
        let listener = uring_echo_book::listen::bind_or_explain(addr)?;
        if let Some(size) = args.sndbuf {
            // Accepted sockets inherit the listener's buffer sizes.
            socket2::SockRef::from(&listener)
                .set_send_buffer_size(size)
                .map_err(|e| format!("cannot set SO_SNDBUF: {e}"))?;
        }

        // SIGINT and SIGTERM arrive as reads on a signalfd, as in lesson 04.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.thread_block()
            .map_err(|e| format!("cannot block SIGINT/SIGTERM: {e}"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("cannot create a signalfd: {e}"))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;

        // Everything the loop will ever need is allocated here, at full size.
        let mut free = Vec::with_capacity(max_conns);
        free.extend((0..max_conns as u32).rev());
        let mut server = Server {
            ring,
            pool,
            listener,
            signals,
            siginfo: Box::new([0; 128]),
            pause: Box::new(types::Timespec::new().nsec(100_000_000)),
            conns: (0..max_conns).map(|_| Conn::free()).collect(),
            free,
            waiting: VecDeque::with_capacity(max_conns),
            max_per_conn,
            recv_mode,
            buffer_size: args.buffer_size,
            accept: Shot::Idle,
            timeout_armed: false,
            in_flight: 0,
            batch_size: args.batch as usize,
            batch_wait: types::SubmitArgs::new().min_wait_usec(args.batch_wait_usec),
            idle: false,
            stopping: false,
            batch: Vec::with_capacity(cq_entries as usize),
            stats: Stats {
                taskrun,
                ..Stats::default()
            },
        };
        server.submit_signal_read().map_err(|e| e.to_string())?;
        server.arm_accept().map_err(|e| e.to_string())?;
        eprintln!(
            "io_uring: taskrun {taskrun}, {} buffers of {} bytes, at most {max_per_conn} per \
             connection, {} receives, {cq_entries} completion entries, waits for {} \
             completion(s){}",
            args.buffers,
            args.buffer_size,
            recv_mode.name(),
            args.batch,
            if args.batch > 1 {
                format!(" or {} µs", args.batch_wait_usec)
            } else {
                String::new()
            }
        );
        uring_echo_book::listen::announce(local);
        Ok(server)
    }
    // ANCHOR_END: setup_rest
    // ANCHOR_END: setup

    /// Queues one request. If the submission queue is full, hands the queued
    /// requests to the kernel first, which empties it.
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the kernel reads and writes what an entry points to
            // until its last completion. Every entry here points only at
            // memory that outlives that: a buffer of the pool, which stays
            // out of the ring while a send reads it, and is unmapped only
            // after the ring is gone; `siginfo` and `pause`, freed only when
            // the server drops, after `shutdown` has reaped every completion.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            self.ring.submit()?;
            self.stats.enters += 1;
        }
    }

    fn submit_signal_read(&mut self) -> io::Result<()> {
        let entry = opcode::Read::new(
            types::Fd(self.signals.as_raw_fd()),
            self.siginfo.as_mut_ptr(),
            self.siginfo.len() as u32,
        )
        .build()
        .user_data(pack(Kind::Signal, 0, 0));
        self.push(entry)
    }

    /// Asks the kernel to cancel the request whose user_data is `target`.
    fn cancel(&mut self, target: u64) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(pack(Kind::Cancel, 0, 0));
        self.push(entry)
    }

    // ANCHOR: accept
    /// Arms the multishot accept: one request, one completion per client,
    /// for as long as the kernel keeps it armed.
    fn arm_accept(&mut self) -> io::Result<()> {
        if self.accept != Shot::Idle || self.stopping || self.free.is_empty() {
            return Ok(());
        }
        let entry = opcode::AcceptMulti::new(types::Fd(self.listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(pack(Kind::Accept, 0, 0));
        self.push(entry)?;
        self.accept = Shot::Armed;
        Ok(())
    }

    fn on_accept(&mut self, res: i32, more: bool) -> io::Result<()> {
        if !more {
            // Ended: by an error, by our cancel, or by the kernel for its own
            // reasons. Whichever, it posts nothing more until we re-arm it.
            self.accept = Shot::Idle;
        }
        if res >= 0 {
            // SAFETY: a successful accept's result is a descriptor the
            // kernel just created for us; nothing else owns it.
            let socket = unsafe { OwnedFd::from_raw_fd(res) };
            self.stats.accepted += 1;
            match self.free.pop() {
                Some(index) if !self.stopping => self.register(index as usize, socket)?,
                // The table is full (clients that arrived before our cancel
                // of the accept took effect), or we are stopping: close it.
                Some(index) => {
                    self.free.push(index);
                    self.stats.refused += 1;
                }
                None => self.stats.refused += 1,
            }
            if self.free.is_empty() && self.accept == Shot::Armed {
                // The table is full: stop accepting until a slot frees up.
                self.stats.accept_pauses += 1;
                self.cancel(pack(Kind::Accept, 0, 0))?;
                self.accept = Shot::Cancelling;
            }
        } else if matches!(
            -res,
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
        ) {
            // Out of descriptors (or of kernel memory). Re-arming at once
            // would fail again at once, forever: a busy loop through the
            // ring. Pause until a connection closes or the timeout fires.
            eprintln!(
                "accept failed: out of file descriptors or memory; pausing accepts until one is free"
            );
            self.stats.accept_pauses += 1;
            if self.accept == Shot::Armed {
                self.cancel(pack(Kind::Accept, 0, 0))?;
                self.accept = Shot::Cancelling;
            }
            return self.arm_timeout();
        }
        // Other errors (ECONNABORTED: a client gave up in the queue;
        // ECANCELED: ours) need nothing but a re-arm, if it ended.
        if self.timeout_armed {
            return Ok(()); // the timeout re-arms it
        }
        self.arm_accept()
    }

    fn arm_timeout(&mut self) -> io::Result<()> {
        if self.timeout_armed || self.stopping {
            return Ok(());
        }
        let entry = opcode::Timeout::new(&*self.pause as *const types::Timespec)
            .build()
            .user_data(pack(Kind::Timeout, 0, 0));
        self.push(entry)?;
        self.timeout_armed = true;
        Ok(())
    }
    // ANCHOR_END: accept

    // ANCHOR: register
    /// Puts a new connection in slot `index` and arms its receive.
    fn register(&mut self, index: usize, socket: OwnedFd) -> io::Result<()> {
        let conn = &mut self.conns[index];
        let waiting = conn.waiting;
        let generation = (conn.generation + 1) & 0xff_ffff;
        *conn = Conn {
            socket: Some(socket),
            generation,
            waiting,
            ..Conn::free()
        };
        self.arm_recv(index, false)
    }
    // ANCHOR_END: register

    // ANCHOR: arm_recv
    /// Arms the connection's multishot receive, unless it should not
    /// receive now: it is closing, it holds its share of buffers
    /// (backpressure), or the pool is empty (then it queues for buffers).
    fn arm_recv(&mut self, index: usize, rearm: bool) -> io::Result<()> {
        let conn = &mut self.conns[index];
        if conn.socket.is_none()
            || conn.waiting // in line for buffers: `wake_waiting` arms it
            || conn.recv != Shot::Idle
            || conn.peer_done
            || conn.failed
            || self.stopping
            || conn.held >= self.max_per_conn
        {
            return Ok(());
        }
        if self.pool.available() == 0 {
            // Arming now would only end in ENOBUFS. Wait in line.
            self.wait_for_buffers(index);
            return Ok(());
        }
        let fd = types::Fd(conn.socket.as_ref().map_or(-1, |s| s.as_raw_fd()));
        // No buffer here: the kernel picks one from GROUP when data arrives.
        let entry = match self.recv_mode {
            RecvMode::Multishot => opcode::RecvMulti::new(fd, GROUP).build(),
            // The same request without the multishot flag: one completion,
            // one buffer. Everything else about it is handled alike.
            RecvMode::OneBuffer => opcode::Recv::new(fd, std::ptr::null_mut(), self.buffer_size)
                .buf_group(GROUP)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT),
        }
        .user_data(pack(Kind::Recv, index, conn.generation));
        conn.recv = Shot::Armed;
        if rearm {
            self.stats.rearms += 1;
        }
        self.push(entry)
    }

    /// Puts the connection at the back of the line for buffers.
    fn wait_for_buffers(&mut self, index: usize) {
        let conn = &mut self.conns[index];
        if !conn.waiting {
            conn.waiting = true;
            self.waiting.push_back(index as u32);
            self.stats.waits += 1;
        }
    }

    /// Buffers came back: arm the connections that wait for them, oldest
    /// first, one per buffer in the ring. Called after every batch, for any
    /// buffer returned by any connection, so no waiting connection depends
    /// on its own sends to wake it.
    fn wake_waiting(&mut self) -> io::Result<()> {
        let mut budget = self.pool.available();
        while budget > 0 {
            let Some(index) = self.waiting.pop_front() else {
                break;
            };
            self.conns[index as usize].waiting = false;
            self.arm_recv(index as usize, true)?;
            budget -= 1;
        }
        Ok(())
    }
    // ANCHOR_END: arm_recv

    // ANCHOR: on_recv
    fn on_recv(&mut self, index: usize, res: i32, flags: u32) -> io::Result<()> {
        let more = cqueue::more(flags);
        let max_per_conn = self.max_per_conn;
        let conn = &mut self.conns[index];
        if !more {
            // The multishot receive has ended, also when `res` is data: a
            // full completion queue, for one, ends it. Re-armed below.
            conn.recv = Shot::Idle;
        }
        if res > 0 {
            self.stats.recv_completions += 1;
            // The kernel says which buffer it filled in the flags.
            let Some(bid) = cqueue::buffer_select(flags) else {
                conn.failed = true; // cannot happen with a buffer-select receive
                return self.after_recv(index, more);
            };
            if conn.failed || self.stopping {
                // Nobody will send these bytes: the buffer goes straight back.
                self.pool.give_back(bid);
                return self.after_recv(index, more);
            }
            // Queue the buffer behind the connection's other unsent ones.
            self.pool.len[usize::from(bid)] = res as u32;
            self.pool.next[usize::from(bid)] = NONE;
            if conn.tail == NONE {
                conn.head = bid;
            } else {
                self.pool.next[usize::from(conn.tail)] = bid;
            }
            conn.tail = bid;
            conn.held += 1;
            self.stats.max_held = self.stats.max_held.max(conn.held);
            if conn.held == max_per_conn {
                // Backpressure: this peer's echoes are not leaving as fast as
                // its bytes arrive. No receive is armed for it again until
                // `on_send` sees its queue drained to half.
                self.stats.backpressure_pauses += 1;
            }
            if conn.held >= max_per_conn && conn.recv == Shot::Armed {
                // An armed multishot would keep taking buffers: cancel it.
                conn.recv = Shot::Cancelling;
                let target = pack(Kind::Recv, index, conn.generation);
                self.cancel(target)?;
            }
            self.send_next(index)?;
        } else if res == 0 {
            self.conns[index].peer_done = true; // EOF: echo what is queued, then close
        } else if -res == libc::ENOBUFS {
            // The ring was empty when data arrived; the data waits in the
            // socket, and the receive has ended. Our count may say buffers
            // are back by now, but re-arming at once would jump ahead of the
            // connections already waiting, and mostly meet ENOBUFS again:
            // join the back of the line instead, and `wake_waiting` re-arms.
            self.stats.enobufs += 1;
            if !more {
                self.wait_for_buffers(index);
            }
        } else if -res != libc::ECANCELED {
            // ECONNRESET and friends: this connection is over, no other.
            self.stats.conn_errors += 1;
            self.conns[index].failed = true;
        }
        self.after_recv(index, more)
    }

    /// Once a receive has ended: re-arm it, or close the connection.
    fn after_recv(&mut self, index: usize, more: bool) -> io::Result<()> {
        if more {
            return Ok(());
        }
        let conn = &self.conns[index];
        if conn.failed || conn.peer_done || self.stopping {
            return self.close_if_done(index);
        }
        self.arm_recv(index, true)
    }
    // ANCHOR_END: on_recv

    // ANCHOR: on_send
    /// Sends the connection's oldest unsent bytes, straight from the buffer
    /// they were received into, unless a send is already in flight.
    fn send_next(&mut self, index: usize) -> io::Result<()> {
        let conn = &mut self.conns[index];
        if conn.sending || conn.head == NONE || conn.failed || self.stopping {
            return Ok(());
        }
        let (bid, offset) = (conn.head, conn.offset);
        let len = self.pool.len[usize::from(bid)] as usize - offset;
        let fd = conn.socket.as_ref().map_or(-1, |s| s.as_raw_fd());
        // MSG_NOSIGNAL: a peer that has gone away fails the send with EPIPE
        // instead of killing us with SIGPIPE.
        let entry = opcode::Send::new(types::Fd(fd), self.pool.addr(bid, offset), len as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(pack(Kind::Send, index, conn.generation));
        conn.sending = true;
        self.stats.sends += 1;
        self.push(entry)
    }

    fn on_send(&mut self, index: usize, res: i32) -> io::Result<()> {
        let conn = &mut self.conns[index];
        conn.sending = false;
        if res < 0 {
            // EPIPE, ECONNRESET (or ECANCELED at shutdown): the peer is gone.
            if -res != libc::ECANCELED {
                self.stats.conn_errors += 1;
            }
            conn.failed = true;
            if conn.recv == Shot::Armed {
                conn.recv = Shot::Cancelling;
                let target = pack(Kind::Recv, index, conn.generation);
                self.cancel(target)?;
            }
            return self.close_if_done(index);
        }
        conn.offset += res as usize;
        let bid = conn.head;
        if conn.offset < self.pool.len[usize::from(bid)] as usize {
            // A short send: the socket took only part. Not an error. Send
            // the rest, from where the kernel stopped, before anything else.
            self.stats.short_sends += 1;
            return self.send_next(index);
        }
        // The whole buffer went out: only now may it go back to the ring.
        conn.head = self.pool.next[usize::from(bid)];
        if conn.head == NONE {
            conn.tail = NONE;
        }
        conn.offset = 0;
        conn.held -= 1;
        self.pool.give_back(bid);
        // Backpressure released: receive again once half the share is back
        // (not at once, or one buffer back would re-arm and the next would
        // cancel again, a request pair per buffer).
        if conn.held <= self.max_per_conn / 2 {
            self.arm_recv(index, true)?;
        }
        if self.conns[index].head != NONE {
            return self.send_next(index);
        }
        self.close_if_done(index) // after EOF, the last echo is out: close
    }
    // ANCHOR_END: on_send

    // ANCHOR: close
    /// Closes the connection if it is finished and the kernel holds nothing
    /// of it: no receive armed, no send in flight. Otherwise the last of
    /// those completions calls this again.
    fn close_if_done(&mut self, index: usize) -> io::Result<()> {
        let conn = &mut self.conns[index];
        let finished = conn.failed || self.stopping || (conn.peer_done && conn.head == NONE);
        if conn.socket.is_none() || !finished || conn.recv != Shot::Idle || conn.sending {
            return Ok(());
        }
        // Buffers still queued (an error or shutdown cut the echo short)
        // go back to the ring.
        while conn.head != NONE {
            let bid = conn.head;
            conn.head = self.pool.next[usize::from(bid)];
            self.pool.give_back(bid);
        }
        conn.tail = NONE;
        conn.held = 0;
        conn.socket = None; // close(2)
        self.free.push(index as u32);
        self.stats.closed += 1;
        // A slot and a descriptor are free: resume accepting if it paused.
        self.arm_accept()
    }
    // ANCHOR_END: close

    // ANCHOR: event_loop
    /// Submits, waits, handles completions; until SIGINT or SIGTERM.
    fn run(&mut self) -> io::Result<()> {
        while !self.stopping {
            self.enter()?;
            self.reap()?;
        }
        Ok(())
    }

    /// One system call: hand the kernel every queued request and wait for
    /// at least one completion. With DEFER_TASKRUN this is also when the
    /// kernel does the deferred work that produces completions, which is
    /// why we always wait here and never just submit.
    ///
    /// How many completions to wait for is a trade. One is the default:
    /// we return as soon as there is work, so no reply waits on others. But
    /// a server faster than its clients then finds one or two completions
    /// per enter, and makes an enter for every other echo. With `--batch N`
    /// the kernel waits for N completions, or for `--batch-wait-usec`,
    /// after which it returns with whatever has come. If nothing at all has
    /// come by then, it returns anyway, with ETIME: so after such a wait we
    /// wait plainly for one completion, or an idle server would wake every
    /// few microseconds for nothing.
    fn enter(&mut self) -> io::Result<()> {
        let waited = if self.batch_size > 1 && !self.idle {
            self.ring
                .submitter()
                .submit_with_args(self.batch_size, &self.batch_wait)
        } else {
            self.ring.submit_and_wait(1)
        };
        self.idle = false;
        match waited {
            Ok(_) => {}
            // ETIME: the batch wait ran out and nothing came; the next
            // enter waits without a time limit. EINTR: a signal interrupted
            // the wait. EBUSY: the completion queue overflowed and the
            // kernel wants us to reap first.
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {
                self.idle = true;
                self.stats.batch_timeouts += 1;
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        self.stats.enters += 1;
        Ok(())
    }

    /// Handles every completion in the queue.
    fn reap(&mut self) -> io::Result<()> {
        // Copy the completions out first: handling one queues new requests,
        // which needs the ring, which the completion queue borrows. The
        // batch has room for a whole completion queue, so this never allocates.
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        let mut completion = self.ring.completion();
        self.stats.cq_overflow = completion.overflow();
        batch.extend(
            completion
                .by_ref()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        drop(completion);
        for &(user_data, res, flags) in &batch {
            self.stats.completions += 1;
            if !cqueue::more(flags) {
                self.in_flight -= 1; // this request's last completion
            }
            self.on_completion(user_data, res, flags)?;
        }
        self.batch = batch;
        self.wake_waiting()
    }

    fn on_completion(&mut self, user_data: u64, res: i32, flags: u32) -> io::Result<()> {
        if cqueue::buffer_select(flags).is_some() {
            // The kernel took a buffer from the ring: it is ours now.
            self.pool.out += 1;
        }
        let (kind, index, generation) = unpack(user_data);
        let current = self
            .conns
            .get(index)
            .is_some_and(|c| c.socket.is_some() && c.generation == generation);
        match kind {
            Some(Kind::Accept) => self.on_accept(res, cqueue::more(flags)),
            Some(Kind::Recv) if current => self.on_recv(index, res, flags),
            Some(Kind::Send) if current => self.on_send(index, res),
            Some(Kind::Recv | Kind::Send) => {
                // A completion for a connection that is gone. Cannot happen
                // while a slot is freed only with nothing in flight; counted,
                // so a bug would show, and its buffer is not lost.
                self.stats.stale += 1;
                if let Some(bid) = cqueue::buffer_select(flags) {
                    self.pool.give_back(bid);
                }
                Ok(())
            }
            Some(Kind::Signal) => {
                self.stopping = true;
                Ok(())
            }
            Some(Kind::Timeout) => {
                self.timeout_armed = false;
                self.arm_accept()
            }
            Some(Kind::Cancel) | None => Ok(()),
        }
    }
    // ANCHOR_END: event_loop

    // ANCHOR: shutdown
    /// Cancels every request still in flight and waits for all of their
    /// last completions before anything is freed: until then the kernel may
    /// still write into our buffers. The multishot accept is among them, so
    /// when the listener closes nothing holds it, and the port is free at once.
    fn shutdown(&mut self) -> io::Result<()> {
        if self.accept == Shot::Armed {
            self.cancel(pack(Kind::Accept, 0, 0))?;
        }
        if self.timeout_armed {
            self.cancel(pack(Kind::Timeout, 0, 0))?;
        }
        for index in 0..self.conns.len() {
            let conn = &self.conns[index];
            let generation = conn.generation;
            let (recv_armed, sending) = (conn.recv == Shot::Armed, conn.sending);
            if recv_armed {
                self.conns[index].recv = Shot::Cancelling;
                self.cancel(pack(Kind::Recv, index, generation))?;
            }
            if sending {
                // A send to a peer that does not read would wait forever.
                self.cancel(pack(Kind::Send, index, generation))?;
            }
        }
        while self.in_flight > 0 {
            self.enter()?;
            self.reap()?;
        }
        // Close what had nothing in flight.
        let mut open = 0;
        for index in 0..self.conns.len() {
            if self.conns[index].socket.is_some() {
                open += 1;
                self.close_if_done(index)?;
            }
        }
        eprintln!("closed {open} connections");
        Ok(())
    }
    // ANCHOR_END: shutdown
}

// ANCHOR: taskrun
/// Sets up the ring in the task-run mode asked for; with `auto`, the best
/// one this kernel has. Returns the ring and the name of the mode.
#[cfg(target_os = "linux")]
fn build_ring(
    taskrun: Taskrun,
    entries: u32,
    cq_entries: u32,
) -> Result<(IoUring, &'static str), String> {
    let tries: &[Taskrun] = match taskrun {
        Taskrun::Auto => &[Taskrun::Defer, Taskrun::Coop, Taskrun::Plain],
        Taskrun::Defer => &[Taskrun::Defer],
        Taskrun::Coop => &[Taskrun::Coop],
        Taskrun::Plain => &[Taskrun::Plain],
    };
    let mut last = String::new();
    for &mode in tries {
        let mut builder: io_uring::Builder = IoUring::builder();
        builder.setup_cqsize(cq_entries).setup_clamp();
        let (name, since) = match mode {
            Taskrun::Defer => {
                // One thread submits (SINGLE_ISSUER), so the kernel may save
                // its completion work for our next wait (DEFER_TASKRUN).
                builder.setup_single_issuer().setup_defer_taskrun();
                ("defer", "6.1")
            }
            Taskrun::Coop => {
                // The kernel does not interrupt us to run completion work;
                // it runs it when we next enter the kernel.
                builder.setup_coop_taskrun().setup_taskrun_flag();
                ("coop", "5.19")
            }
            _ => ("plain", "5.1"),
        };
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, name)),
            // EINVAL: this kernel does not know the flags. Try the next mode.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                last = format!(
                    "the kernel refused taskrun mode {name} ({e}): it needs Linux {since}; \
                     try --taskrun auto"
                );
            }
            Err(e) => return Err(uring_echo_book::uring::explain_setup_error(&e)),
        }
    }
    Err(last)
}
// ANCHOR_END: taskrun
