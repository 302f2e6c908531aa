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
//! The new difficulties are the pool's: it can run dry (ENOBUFS), and peers
//! that send but never read could take all of it, because a multishot
//! receive takes buffers in bursts that no cancel of ours can stop in time.
//! So a quarter of the pool is a *reserve* that only exact, one-buffer
//! receives draw from, and only for connections that hold no buffer: however
//! many buffers stuck peers hold, a connection with empty hands still gets
//! one. This file also proves that it allocates nothing once it serves.
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

    /// Buffers in the shared pool (a power of two, from 2 to 32768). A
    /// quarter of them (at least one) is the reserve for connections that
    /// hold no buffer; the rest is the open pool every receive draws from.
    #[arg(long, default_value_t = 1024, value_parser = parse_buffers)]
    buffers: u16,

    /// Size of each buffer in bytes.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    buffer_size: u32,

    /// Buffers of the open pool one connection may hold (received, not yet
    /// sent back) before we stop receiving from it. At most a quarter of
    /// the open pool, whatever this says.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=32768))]
    max_buffers_per_conn: u32,

    /// Most connections served at once: the connection table is allocated
    /// at start-up, this big. Accepting pauses at the cap: clients beyond
    /// it wait in the kernel's listen queue until a slot frees up.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..=30000))]
    max_conns: u32,

    /// How connections receive from the open pool: `multishot` (one request
    /// per connection, buffers taken in bursts), `one-buffer` (one request
    /// per buffer, so a connection never holds more than its share), or
    /// `auto`: multishot where the kernel bounds a burst (Linux 6.8) and the
    /// open pool is big enough for bursts, one-buffer otherwise.
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
    if !(2..=32768).contains(&n) || !n.is_power_of_two() {
        return Err(
            "a power of two from 2 to 32768 (the kernel's rule for buffer rings, and one \
             buffer at least for the reserve)"
                .into(),
        );
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
            // into the pool and into `siginfo`: never free them. The process
            // is exiting, which takes the ring down first.
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
/// The buffer groups: two rings, registered under these ids. A receive
/// names one to say "take a buffer from this one". Every receive may draw
/// from the open pool; only exact one-buffer receives, for connections that
/// hold no buffer, draw from the reserve (see `arm_recv`).
#[cfg(target_os = "linux")]
const OPEN: u16 = 0;
#[cfg(target_os = "linux")]
const RESERVE: u16 = 1;

/// "No buffer": the end of a connection's queue of buffers.
#[cfg(target_os = "linux")]
const NONE: u16 = u16::MAX;

/// One entry of a buffer ring, laid out as the kernel's `struct io_uring_buf`:
/// where a buffer is, how long it is, and its id. In entry 0 the last two
/// bytes are not `resv` but the ring's tail: the kernel reads them there.
#[cfg(target_os = "linux")]
#[repr(C)]
struct RingEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

#[cfg(target_os = "linux")]
const _: () = assert!(std::mem::size_of::<RingEntry>() == 16);

/// A registered buffer ring: the entries through which we hand one group's
/// buffers to the kernel.
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
struct BufRing {
    group: u16,
    /// Page-aligned memory from an anonymous mmap, as the kernel requires,
    /// `entries` long (a power of two). Only raw pointers into it exist: the
    /// kernel reads it at any time, tail included.
    entries: NonNull<RingEntry>,
    count: usize,
    /// Where our next returned buffer goes. Published to the kernel as the
    /// ring's tail; it wraps at 65536, as the kernel's own counter does.
    tail: u16,
    mask: u16,
}

#[cfg(target_os = "linux")]
impl BufRing {
    /// A ring with room for `buffers` entries, rounded up to a power of two.
    fn new(group: u16, buffers: usize) -> Result<BufRing, String> {
        let count = buffers.next_power_of_two();
        let bytes = count * std::mem::size_of::<RingEntry>();
        Ok(BufRing {
            group,
            entries: map_anonymous(bytes, true)?.cast(),
            count,
            tail: 0,
            mask: (count - 1) as u16,
        })
    }

    fn register(&self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: the entries are mapped, `count` long, until `drop`. The
        // kernel pins their pages when it registers them and reads them
        // through its own mapping until it lets go (at `unregister`, or when
        // the ring is torn down), so even our unmapping them first would
        // leave the kernel's reads valid.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.entries.as_ptr() as u64,
                self.count as u16,
                self.group,
                0,
            )
        }
    }

    /// Writes an entry at the tail, then publishes the new tail.
    fn publish(&mut self, addr: *const u8, len: u32, bid: u16) {
        let slot = usize::from(self.tail & self.mask);
        // SAFETY: `slot < count`, so the entry lies inside the mapping. We
        // write its fields through raw pointers, never through a `&mut
        // RingEntry`: a reference to entry 0 would also cover the tail, which
        // the kernel reads concurrently. The kernel reads this entry's fields
        // only once a published tail covers it, which the store below does.
        unsafe {
            let entry = self.entries.as_ptr().add(slot);
            (&raw mut (*entry).addr).write(addr as u64);
            (&raw mut (*entry).len).write(len);
            (&raw mut (*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the u16 in the last two bytes of entry 0,
        // inside the mapping and 2-aligned; an AtomicU16 has the size and
        // alignment of a u16. The kernel reads it concurrently, so we store
        // it atomically, and with Release, so that the entry written above
        // is visible to the kernel before the tail that covers it.
        unsafe {
            AtomicU16::from_ptr(&raw mut (*self.entries.as_ptr()).resv)
                .store(self.tail, Ordering::Release);
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for BufRing {
    fn drop(&mut self) {
        let bytes = self.count * std::mem::size_of::<RingEntry>();
        // SAFETY: the mapping came from `map_anonymous` with this length.
        // The kernel reads the ring through its own pinned pages, never
        // through this mapping (see `register`), so unmapping our view is
        // safe whether or not the ring is still registered.
        let _ = unsafe { nix::sys::mman::munmap(self.entries.cast(), bytes) };
    }
}

/// The pool: `count` buffers of `size` bytes in one mapping, handed to the
/// kernel through two rings. Buffers `0..open` go through the OPEN ring,
/// the rest (a quarter) through the RESERVE ring.
#[cfg(target_os = "linux")]
struct Pool {
    rings: [BufRing; 2],
    /// The buffers. Only raw pointers into them exist: the kernel writes into
    /// buffers that are in a ring while we read ours, and a Rust reference
    /// to the whole block would claim that nobody else writes to it.
    memory: NonNull<u8>,
    memory_bytes: usize,
    size: usize,
    count: usize,
    open: usize,
    /// For each buffer: the bytes received into it, and the next buffer in
    /// the same connection's send queue. Allocated once, at start-up.
    len: Box<[u32]>,
    next: Box<[u16]>,
    /// Buffers of each group that we hold: received, not yet given back.
    out: [usize; 2],
    /// Reserve buffers promised to one-buffer receives that are armed: each
    /// will take at most one, so the reserve is never overdrawn.
    promised: usize,
}

#[cfg(target_os = "linux")]
impl Pool {
    fn new(count: u16, size: u32) -> Result<Pool, String> {
        let count = usize::from(count);
        let size = size as usize;
        let reserve = (count / 4).max(1);
        let open = count - reserve;
        let memory_bytes = count * size;
        let mut pool = Pool {
            rings: [BufRing::new(OPEN, open)?, BufRing::new(RESERVE, reserve)?],
            // The buffers are mapped but not populated: a page of them costs
            // memory only once the kernel first receives into it.
            memory: map_anonymous(memory_bytes, false)?,
            memory_bytes,
            size,
            count,
            open,
            len: vec![0; count].into_boxed_slice(),
            next: vec![NONE; count].into_boxed_slice(),
            out: [open, reserve],
            promised: 0,
        };
        // Every buffer starts out in its ring, the kernel's to fill.
        for bid in 0..count {
            pool.give_back(bid as u16);
        }
        Ok(pool)
    }

    /// Registers both rings with the kernel side of `ring`.
    fn register(&self, ring: &IoUring) -> io::Result<()> {
        self.rings.iter().try_for_each(|r| r.register(ring))
    }

    /// Unregisters both rings: after this the kernel keeps no reference to
    /// them. Called at the end of `shutdown`, when no receive is left.
    fn unregister(&self, ring: &IoUring) -> io::Result<()> {
        self.rings
            .iter()
            .try_for_each(|r| ring.submitter().unregister_buf_ring(r.group))
    }

    fn group_of(&self, bid: u16) -> usize {
        usize::from(usize::from(bid) >= self.open)
    }

    /// A completion named buffer `bid`: the kernel took it, it is ours.
    fn taken(&mut self, bid: u16) {
        let group = self.group_of(bid);
        self.out[group] += 1;
    }

    /// Hands buffer `bid` back to the kernel, through its group's ring.
    fn give_back(&mut self, bid: u16) {
        let group = self.group_of(bid);
        let (addr, len) = (self.addr(bid, 0), self.size as u32);
        self.rings[group].publish(addr, len, bid);
        self.out[group] -= 1;
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

    /// Buffers of the open pool in its ring, as far as we know: the kernel
    /// may have taken some whose completions we have not read yet.
    fn open_available(&self) -> usize {
        self.open - self.out[0]
    }

    /// Reserve buffers in its ring and not promised to an armed receive:
    /// exact, because only our one-buffer receives take from the reserve.
    fn reserve_unpromised(&self) -> usize {
        (self.count - self.open) - self.out[1] - self.promised
    }
}

#[cfg(target_os = "linux")]
impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: the mapping came from `map_anonymous` with this length, and
        // no request that could write into a buffer is in flight: a `Server`
        // (which owns the pool) is dropped only after `shutdown` has reaped
        // every completion; `main` forgets it otherwise, and `Server::new`
        // arms no receive before it has returned the server.
        let _ = unsafe { nix::sys::mman::munmap(self.memory.cast(), self.memory_bytes) };
    }
}

/// A private anonymous mapping of `bytes`, page-aligned and zero-filled, as
/// buffer rings need; `populate` makes its pages resident at once.
#[cfg(target_os = "linux")]
fn map_anonymous(bytes: usize, populate: bool) -> Result<NonNull<u8>, String> {
    use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous};
    let length = std::num::NonZeroUsize::new(bytes).ok_or("a mapping of 0 bytes")?;
    let mut flags = MapFlags::MAP_PRIVATE;
    if populate {
        flags |= MapFlags::MAP_POPULATE;
    }
    // SAFETY: a fresh private anonymous mapping aliases nothing; its owner
    // unmaps it with this length in its `Drop`.
    unsafe {
        mmap_anonymous(
            None,
            length,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            flags,
        )
    }
    .map(|p| p.cast())
    .map_err(|e| format!("cannot map {bytes} bytes for the buffer pool: {e}"))
}
// ANCHOR_END: pool

// ANCHOR: kernel_bytes
/// Heap memory the kernel writes into while a request is in flight: the
/// `signalfd_siginfo` that the signal read fills.
///
/// Not a `Box`: a `Box` tells Rust that nothing else reads or writes what it
/// points to, and moving it (as `main` moves the `Server` out of
/// `Server::new`, after the read was queued) asserts that again, while the
/// kernel may be writing. So we make it with a `Box`, let go of the `Box` at
/// once, and keep a raw pointer, which promises nothing.
#[cfg(target_os = "linux")]
struct KernelBytes {
    ptr: NonNull<[u8; SIGINFO_BYTES]>,
}

/// The size of one `struct signalfd_siginfo`: what one signal reads as.
#[cfg(target_os = "linux")]
const SIGINFO_BYTES: usize = std::mem::size_of::<libc::signalfd_siginfo>();

#[cfg(target_os = "linux")]
impl KernelBytes {
    fn new() -> KernelBytes {
        let ptr = NonNull::from(Box::leak(Box::new([0u8; SIGINFO_BYTES])));
        KernelBytes { ptr }
    }

    fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr().cast()
    }
}

#[cfg(target_os = "linux")]
impl Drop for KernelBytes {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `Box::leak` in `new` and is freed only
        // here. No read into it is in flight: the `Server` that owns it is
        // dropped only after `shutdown` reaped every completion (`main` and
        // `Server::new` forget it otherwise).
        drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
    }
}
// ANCHOR_END: kernel_bytes

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

/// How a connection receives from the open pool: a multishot request that
/// takes buffers as data comes, or one request per buffer (see `choose_recv`).
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
    /// The group the armed receive draws from: OPEN or RESERVE.
    recv_from: u16,
    /// A receive met an empty open pool (ENOBUFS): the data waits in the
    /// socket, and the next receive comes from the reserve.
    starved: bool,
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
    /// This slot is in `Server::waiting`, in line for a buffer.
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
            recv_from: OPEN,
            starved: false,
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
    reserve_recvs: u64,
    waits: u64,
    backpressure_pauses: u64,
    max_held: u32,
    sends: u64,
    short_sends: u64,
    conn_errors: u64,
    accept_pauses: u64,
    stale: u64,
    /// Reaps that found the kernel keeping completions on its overflow list
    /// (`IORING_SQ_CQ_OVERFLOW`): the completion queue was full.
    cq_overflowed: u64,
    /// Completions the kernel dropped, because it could not even keep them
    /// on its overflow list (`CompletionQueue::overflow()`).
    cq_dropped: u32,
    allocations_after_startup: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stats: taskrun {} enters {} batch_timeouts {} completions {} accepted {} refused {} closed {} \
             recv_completions {} rearms {} enobufs {} reserve_recvs {} waits {} backpressure_pauses {} \
             max_held {} sends {} short_sends {} conn_errors {} accept_pauses {} stale {} \
             cq_overflowed {} cq_dropped {} allocations_after_startup {}",
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
            self.reserve_recvs,
            self.waits,
            self.backpressure_pauses,
            self.max_held,
            self.sends,
            self.short_sends,
            self.conn_errors,
            self.accept_pauses,
            self.stale,
            self.cq_overflowed,
            self.cq_dropped,
            self.allocations_after_startup
        )
    }
}

// ANCHOR: server
#[cfg(target_os = "linux")]
struct Server {
    ring: IoUring,
    pool: Pool,
    listener: std::net::TcpListener,
    signals: SignalFd,
    /// The kernel writes a `signalfd_siginfo` here when a signal arrives.
    siginfo: KernelBytes,
    conns: Box<[Conn]>,
    /// Free slots of `conns`, and the slots waiting for buffers, oldest
    /// first. Both have room for every slot from the start, so pushing onto
    /// them never allocates.
    free: Vec<u32>,
    waiting: VecDeque<u32>,
    /// Buffers of the open pool one connection may hold before its receive
    /// is stopped.
    max_per_conn: u32,
    recv_mode: RecvMode,
    buffer_size: u32,
    accept: Shot,
    /// The armed accept is a multishot one (many free slots), not a
    /// single-shot one (near the cap).
    accept_multishot: bool,
    timeout_armed: bool,
    /// Requests whose last completion has not arrived yet.
    in_flight: usize,
    /// Completions each enter waits for (`--batch`), and how long it waits
    /// for all of them before it takes what has come.
    batch_size: usize,
    batch_wait: types::SubmitArgs<'static, 'static>,
    /// The last batch wait ran out with nothing to show: wait plainly next.
    idle: bool,
    /// Enters in a row that the kernel asked us to retry (EAGAIN, EBUSY,
    /// EINTR), and signal reads in a row that brought no signal.
    retries: u32,
    signal_errors: u32,
    stopping: bool,
    /// Completions copied out of the ring: (user_data, result, flags).
    batch: Vec<(u64, i32, u32)>,
    stats: Stats,
}
// ANCHOR_END: server

/// How often in a row the kernel may ask us to try an enter again (EAGAIN:
/// no memory for a request just now; EBUSY: the same on older kernels;
/// EINTR: a signal interrupted the wait) before we give up. None of these is
/// the server's fault, and each usually clears at the next try.
#[cfg(target_os = "linux")]
const RETRIES: u32 = 100;

#[cfg(target_os = "linux")]
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN | libc::EBUSY | libc::EINTR)
    )
}

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
        // (`cq_overflowed` at exit says whether it ever did).
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
        // kernel pins the rings' entries and charges them to `ulimit -l`,
        // like the io_uring itself. The library's line says which it was.
        pool.register(&ring)
            .map_err(|e| uring::explain_buf_ring_error(&e))?;
        // ANCHOR_END: setup_ring
        // ANCHOR: share
        // A connection's share: the open pool's buffers it may hold before
        // we stop receiving from it. At most a quarter of the open pool,
        // whatever the option says.
        let max_per_conn = args.max_buffers_per_conn.min((pool.open as u32 / 4).max(1));
        if max_per_conn < args.max_buffers_per_conn {
            eprintln!(
                "--max-buffers-per-conn {} is more than a quarter of the {} open buffers; using \
                 {max_per_conn}",
                args.max_buffers_per_conn, pool.open
            );
        }
        let (recv_mode, why) = choose_recv(
            args.recv,
            uring_echo_book::uring::kernel_version(),
            pool.open as u32,
            max_per_conn,
        );
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
        let (open, reserve) = (pool.open, pool.count - pool.open);
        let mut server = Server {
            ring,
            pool,
            listener,
            signals,
            siginfo: KernelBytes::new(),
            conns: (0..max_conns).map(|_| Conn::free()).collect(),
            free,
            waiting: VecDeque::with_capacity(max_conns),
            max_per_conn,
            recv_mode,
            buffer_size: args.buffer_size,
            accept: Shot::Idle,
            accept_multishot: false,
            timeout_armed: false,
            in_flight: 0,
            batch_size: args.batch as usize,
            batch_wait: types::SubmitArgs::new().min_wait_usec(args.batch_wait_usec),
            idle: false,
            retries: 0,
            signal_errors: 0,
            stopping: false,
            batch: Vec::with_capacity(cq_entries as usize),
            stats: Stats {
                taskrun,
                ..Stats::default()
            },
        };
        if let Err(e) = server
            .submit_signal_read()
            .and_then(|()| server.arm_accept())
        {
            // The signal read may be queued or in flight, writing into
            // `siginfo`: never free it.
            std::mem::forget(server);
            return Err(e.to_string());
        }
        eprintln!(
            "io_uring: taskrun {taskrun}, {open} buffers of {} bytes and a reserve of {reserve}, \
             at most {max_per_conn} per connection, {} receives ({why}), {cq_entries} completion \
             entries, waits for {} completion(s){}",
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

    // ANCHOR: push
    /// Queues one request. If the submission queue is full, hands the queued
    /// requests to the kernel first, which empties it.
    ///
    /// # Safety
    ///
    /// The kernel uses what `entry` points at after this returns. Until the
    /// request's last completion has been reaped, that memory must stay
    /// allocated and in place, and we must not write it (nor hold a
    /// reference to it) while the kernel may write it. A pointer the kernel
    /// only reads when it takes the request from the queue (a timeout's
    /// `timespec`) must stay valid until our next `io_uring_enter`.
    unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: our caller keeps the promise above for `entry`.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            self.submit_queued()?;
        }
    }

    /// One `io_uring_enter` that hands the queued requests to the kernel
    /// without waiting; tried again, a bounded number of times, when the
    /// kernel asks for it (see `RETRIES`).
    fn submit_queued(&mut self) -> io::Result<()> {
        let mut tries = 0;
        loop {
            self.stats.enters += 1;
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if is_transient(&e) && tries < RETRIES => {
                    tries += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
        }
    }
    // ANCHOR_END: push

    fn submit_signal_read(&mut self) -> io::Result<()> {
        let entry = opcode::Read::new(
            types::Fd(self.signals.as_raw_fd()),
            self.siginfo.as_mut_ptr(),
            SIGINFO_BYTES as u32,
        )
        .build()
        .user_data(pack(Kind::Signal, 0, 0));
        // SAFETY: `siginfo` is heap memory held by a raw pointer only; it is
        // freed when the server drops, after every completion is reaped, and
        // nothing of ours touches it until the read completes.
        unsafe { self.push(entry) }
    }

    /// Asks the kernel to cancel the request whose user_data is `target`.
    fn cancel(&mut self, target: u64) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(pack(Kind::Cancel, 0, 0));
        // SAFETY: a cancel points at no memory of ours.
        unsafe { self.push(entry) }
    }

    // ANCHOR: accept
    /// Arms the accept: a multishot one while many slots are free, a
    /// single-shot one near the cap (see `MULTISHOT_ACCEPT_ABOVE`).
    fn arm_accept(&mut self) -> io::Result<()> {
        if self.accept != Shot::Idle || self.stopping || self.free.is_empty() {
            return Ok(());
        }
        let listener = types::Fd(self.listener.as_raw_fd());
        self.accept_multishot = self.free.len() > MULTISHOT_ACCEPT_ABOVE;
        let entry = if self.accept_multishot {
            opcode::AcceptMulti::new(listener)
                .flags(libc::SOCK_CLOEXEC)
                .build()
        } else {
            // No address wanted: two null pointers.
            opcode::Accept::new(listener, std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
        };
        // SAFETY: an accept without an address points at no memory of ours.
        unsafe { self.push(entry.user_data(pack(Kind::Accept, 0, 0)))? };
        self.accept = Shot::Armed;
        Ok(())
    }

    fn on_accept(&mut self, res: i32, more: bool) -> io::Result<()> {
        if !more {
            // Ended: a single-shot accept always, a multishot one by an
            // error, by our cancel, or by the kernel for its own reasons.
            self.accept = Shot::Idle;
        }
        if res >= 0 {
            // SAFETY: a successful accept's result is a descriptor the
            // kernel just created for us; nothing else owns it.
            let socket = unsafe { OwnedFd::from_raw_fd(res) };
            self.stats.accepted += 1;
            match self.free.pop() {
                Some(index) if !self.stopping => self.register(index as usize, socket)?,
                // We are stopping: `socket` drops here, which closes it.
                Some(index) => {
                    self.free.push(index);
                    self.stats.closed += 1;
                }
                // The table is full. The headroom below makes this next to
                // impossible; if it ever happens, the client is closed and
                // counted, and `refused` at exit shows it.
                None => self.stats.refused += 1,
            }
            if self.free.is_empty() {
                self.stats.accept_pauses += 1; // resumed by `close_if_done`
            }
            if self.accept == Shot::Armed
                && self.accept_multishot
                && self.free.len() <= MULTISHOT_ACCEPT_ABOVE
            {
                // Close to the cap: from now on, one accept at a time.
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
        let entry =
            opcode::Timeout::new(&ACCEPT_PAUSE)
                .build()
                .user_data(pack(Kind::Timeout, 0, 0));
        // SAFETY: the timespec is a `static`, there for the whole run, and the
        // kernel reads it only once, when it takes the request from the queue.
        unsafe { self.push(entry)? };
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
        self.arm_recv(index, Arm::First)
    }
    // ANCHOR_END: register

    // ANCHOR: arm_recv
    /// Arms the connection's receive, unless it should not receive now: it
    /// is closing, it holds its share (backpressure), or it is starved and
    /// the reserve cannot serve it yet.
    ///
    /// The fairness rule: a starved connection (its receive met an empty
    /// open pool) receives next from the reserve, with one exact one-buffer
    /// receive, and only once it holds no buffer at all; in line, oldest
    /// first, when the reserve is all promised. So each connection holds at
    /// most one reserve buffer at a time, and peers that never read cannot
    /// take more of the reserve than one buffer each.
    fn arm_recv(&mut self, index: usize, why: Arm) -> io::Result<()> {
        let conn = &self.conns[index];
        let Some(socket) = conn.socket.as_ref() else {
            return Ok(());
        };
        if (conn.waiting && why != Arm::FromLine) // in line: `wake_waiting` arms it
            || conn.recv != Shot::Idle
            || conn.peer_done
            || conn.failed
            || self.stopping
        {
            return Ok(());
        }
        let fd = types::Fd(socket.as_raw_fd());
        let (starved, held, generation) = (conn.starved, conn.held, conn.generation);
        let entry = if starved {
            if held > 0 {
                return Ok(()); // `on_send` re-arms it once its last echo is out
            }
            let ahead = why != Arm::FromLine && !self.waiting.is_empty();
            if ahead || self.pool.reserve_unpromised() == 0 {
                self.wait_for_buffers(index);
                return Ok(());
            }
            // Exactly one buffer, promised to this receive until it completes.
            self.pool.promised += 1;
            self.stats.reserve_recvs += 1;
            one_buffer_recv(fd, RESERVE, self.buffer_size)
        } else {
            if held >= self.max_per_conn {
                return Ok(()); // backpressure: `on_send` re-arms it
            }
            open_recv(fd, self.recv_mode, self.buffer_size)
        };
        let conn = &mut self.conns[index];
        conn.recv_from = if starved { RESERVE } else { OPEN };
        conn.recv = Shot::Armed;
        if why != Arm::First {
            self.stats.rearms += 1;
        }
        let entry = entry.user_data(pack(Kind::Recv, index, generation));
        // SAFETY: a buffer-select receive points at no memory of ours until
        // the kernel picks a buffer from a registered ring, whose buffers
        // stay mapped until the server drops, after every completion.
        unsafe { self.push(entry) }
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

    /// Buffers came back: arm the connections in line, oldest first, one per
    /// free buffer: from the open pool while it has some (the connection is
    /// no longer starved), then from the reserve. Called after every batch,
    /// for any buffer returned by any connection, so no waiting connection
    /// depends on its own sends to wake it.
    fn wake_waiting(&mut self) -> io::Result<()> {
        let mut open = self.pool.open_available();
        let mut reserve = self.pool.reserve_unpromised();
        while open + reserve > 0 {
            let Some(index) = self.waiting.pop_front() else {
                break;
            };
            let conn = &mut self.conns[index as usize];
            conn.waiting = false;
            if open > 0 {
                conn.starved = false;
                open -= 1;
            } else {
                reserve -= 1;
            }
            self.arm_recv(index as usize, Arm::FromLine)?;
        }
        Ok(())
    }
    // ANCHOR_END: arm_recv

    // ANCHOR: on_recv
    fn on_recv(&mut self, index: usize, res: i32, flags: u32) -> io::Result<()> {
        let more = cqueue::more(flags);
        if !more {
            // The receive has ended, also when `res` is data: a full
            // completion queue, for one, ends a multishot receive.
            self.conns[index].recv = Shot::Idle;
            if self.conns[index].recv_from == RESERVE {
                self.pool.promised -= 1; // the buffer is ours now, or back
            }
        }
        // The kernel says which buffer it filled in the flags. Any buffer a
        // completion names is ours, whatever `res` says: one that carries
        // no bytes to echo goes straight back. (Today's kernels put such a
        // buffer back themselves, but the flag is what counts.)
        let bid = cqueue::buffer_select(flags);
        let conn = &self.conns[index];
        if res <= 0 || conn.failed || self.stopping {
            if let Some(bid) = bid {
                self.pool.give_back(bid);
            }
        } else if let Some(bid) = bid {
            self.stats.recv_completions += 1;
            self.queue_for_sending(index, bid, res as u32)?;
        } else {
            self.conns[index].failed = true; // cannot happen with a buffer-select receive
        }
        let conn = &mut self.conns[index];
        if res == 0 {
            conn.peer_done = true; // EOF: echo what is queued, then close
        } else if -res == libc::ENOBUFS {
            // The ring was empty when data arrived; the data waits in the
            // socket, and the receive has ended. The next receive comes from
            // the reserve, by the fairness rule in `arm_recv`.
            self.stats.enobufs += 1;
            conn.starved = true;
        } else if res < 0 && -res != libc::ECANCELED {
            // ECONNRESET and friends: this connection is over, no other.
            self.stats.conn_errors += 1;
            conn.failed = true;
        }
        self.after_recv(index, more)
    }

    /// Queues a received buffer behind the connection's other unsent ones,
    /// and sends it unless a send is in flight.
    fn queue_for_sending(&mut self, index: usize, bid: u16, len: u32) -> io::Result<()> {
        let max_per_conn = self.max_per_conn;
        let conn = &mut self.conns[index];
        conn.starved = false;
        self.pool.len[usize::from(bid)] = len;
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
        self.send_next(index).map(drop)
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
        self.arm_recv(index, Arm::Again)
    }
    // ANCHOR_END: on_recv

    // ANCHOR: on_send
    /// Sends the connection's oldest unsent bytes, straight from the buffer
    /// they were received into, unless a send is already in flight. Returns
    /// whether a send is in flight now.
    fn send_next(&mut self, index: usize) -> io::Result<bool> {
        let conn = &mut self.conns[index];
        if conn.sending {
            return Ok(true);
        }
        if conn.head == NONE || conn.failed || self.stopping {
            return Ok(false);
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
        // SAFETY: buffer `bid` is out of the ring, so the kernel will not
        // receive into it, and it stays at the head of this connection's
        // queue, untouched, until this send's completion: only `on_send` (or
        // a close, which waits for it) gives it back.
        unsafe { self.push(entry)? };
        Ok(true)
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
        } else {
            // The whole buffer went out: only now may it go back to the ring.
            conn.head = self.pool.next[usize::from(bid)];
            if conn.head == NONE {
                conn.tail = NONE;
            }
            conn.offset = 0;
            conn.held -= 1;
            self.pool.give_back(bid);
            // Backpressure released: receive again once half the share is
            // back (not at once, or one buffer back would re-arm and the next
            // would cancel again, a request pair per buffer).
            if conn.held <= self.max_per_conn / 2 {
                self.arm_recv(index, Arm::Again)?;
            }
        }
        if self.send_next(index)? {
            return Ok(());
        }
        // Nothing left to send: after EOF, or after the receive side failed,
        // this was the last thing in flight, and the connection closes.
        self.close_if_done(index)
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
        self.stats.enters += 1;
        match waited {
            Ok(_) => self.retries = 0,
            // ETIME: the batch wait ran out and nothing came; the next
            // enter waits without a time limit.
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {
                self.idle = true;
                self.stats.batch_timeouts += 1;
            }
            // EINTR, EAGAIN, EBUSY: try again, but not forever.
            Err(e) if is_transient(&e) && self.retries < RETRIES => self.retries += 1,
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Handles every completion in the queue.
    fn reap(&mut self) -> io::Result<()> {
        // Copy the completions out first: handling one queues new requests,
        // which needs the ring, which the completion queue borrows. The
        // batch has room for a whole completion queue, so this never allocates.
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        if self.ring.submission().cq_overflow() {
            // The queue was full and the kernel kept completions aside; it
            // hands them over as we make room. Nothing is lost, but it is a
            // sign that the queue is too small for the load.
            self.stats.cq_overflowed += 1;
        }
        let mut completion = self.ring.completion();
        self.stats.cq_dropped = completion.overflow();
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
        if let Some(bid) = cqueue::buffer_select(flags) {
            // The kernel took a buffer from a ring: it is ours now.
            self.pool.taken(bid);
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
            Some(Kind::Signal) => self.on_signal(res),
            Some(Kind::Timeout) => {
                self.timeout_armed = false;
                self.arm_accept()
            }
            Some(Kind::Cancel) | None => Ok(()),
        }
    }

    /// The signal read completed. A whole `signalfd_siginfo` is a signal:
    /// stop. Anything else is not, and the read goes out again (a few
    /// times in a row at most, so a broken signalfd ends the loop with an
    /// error instead of spinning).
    fn on_signal(&mut self, res: i32) -> io::Result<()> {
        if res == SIGINFO_BYTES as i32 {
            self.stopping = true;
            return Ok(());
        }
        let what = if res < 0 {
            io::Error::from_raw_os_error(-res).to_string()
        } else {
            format!("{res} bytes")
        };
        self.signal_errors += 1;
        if self.signal_errors > 3 {
            return Err(io::Error::other(format!(
                "reading the signalfd failed again: {what}"
            )));
        }
        eprintln!("reading the signalfd brought no signal ({what}); reading again");
        self.submit_signal_read()
    }
    // ANCHOR_END: event_loop

    // ANCHOR: shutdown
    /// Cancels every request still in flight and waits for all of their
    /// last completions before anything is freed: until then the kernel may
    /// still write into our buffers. The accept is among them, so when the
    /// listener closes nothing holds it, and the port is free at once.
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
        // No receive is left: the kernel may let go of the buffer rings.
        if let Err(e) = self.pool.unregister(&self.ring) {
            eprintln!("cannot unregister the buffer rings: {e}");
        }
        eprintln!("closed {open} connections");
        Ok(())
    }
    // ANCHOR_END: shutdown
}

/// Why `arm_recv` is called: a new connection's first receive, a re-arm,
/// or a turn in line for buffers (which may not queue behind the line again).
#[cfg(target_os = "linux")]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Arm {
    First,
    Again,
    FromLine,
}

/// Flags of a receive request, in its `ioprio` field (the io-uring crate
/// does not export them). `POLL_FIRST` (Linux 5.19): wait until the socket
/// is readable before trying to receive. `MULTISHOT` (6.0): stay armed.
#[cfg(target_os = "linux")]
const RECV_POLL_FIRST: u16 = 1;
#[cfg(target_os = "linux")]
const RECV_MULTISHOT: u16 = 2;

/// A receive from the open pool. No buffer here: the kernel picks one from
/// OPEN when data arrives.
///
/// Why POLL_FIRST: without it, a receive tries at once, and it picks its
/// buffer *before* it looks for data. On an empty pool a connection with
/// nothing to say would then get ENOBUFS, be taken for starved, and hold a
/// reserve buffer's promise while it stays silent. With it, the kernel
/// first waits for the socket to be readable, so ENOBUFS always means that
/// bytes (or the peer's FIN) are waiting. (`opcode::RecvMulti` is this
/// request without POLL_FIRST; we build it from `opcode::Recv` to add it.)
#[cfg(target_os = "linux")]
fn open_recv(fd: types::Fd, mode: RecvMode, size: u32) -> squeue::Entry {
    let (flags, len) = match mode {
        RecvMode::Multishot => (RECV_POLL_FIRST | RECV_MULTISHOT, 0), // 0: a whole buffer each time
        RecvMode::OneBuffer => (RECV_POLL_FIRST, size),
    };
    opcode::Recv::new(fd, std::ptr::null_mut(), len)
        .buf_group(OPEN)
        .ioprio(flags)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT)
}

/// A receive that takes exactly one buffer from `group` and ends: the
/// receive of lesson 04, with the kernel picking the buffer. It tries at
/// once: it is armed only for a starved connection, whose bytes wait.
#[cfg(target_os = "linux")]
fn one_buffer_recv(fd: types::Fd, group: u16, size: u32) -> squeue::Entry {
    opcode::Recv::new(fd, std::ptr::null_mut(), size)
        .buf_group(group)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT)
}

/// How long accepting pauses after EMFILE. A `static`: the kernel copies it
/// once, when it takes the timeout request from the submission queue at our
/// next enter, and a static is there whenever that is.
#[cfg(target_os = "linux")]
static ACCEPT_PAUSE: types::Timespec = types::Timespec::new().nsec(100_000_000);

/// A multishot accept keeps accepting while the listen queue is not empty
/// (the kernel's accept loops while `IORING_CQE_F_SOCK_NONEMPTY` holds), so
/// by the time a cancel arrives it may have taken the whole queue, up to the
/// backlog, and more if clients keep coming. So multishot only while more
/// slots are free than twice the backlog; nearer the cap, one single-shot
/// accept at a time, which takes exactly one client, and none while no slot
/// is free. Clients beyond the cap wait in the kernel's queue.
#[cfg(target_os = "linux")]
const MULTISHOT_ACCEPT_ABOVE: usize = 2 * uring_echo_book::listen::BACKLOG as usize;

// ANCHOR: choose_recv
/// How far past its share a connection's multishot receive can run before
/// our cancel takes effect, in buffers: measured, not promised. While data
/// keeps coming the kernel receives up to 32 times in a row on one wake-up
/// (`MULTISHOT_MAX_RETRY`, since Linux 6.8; before 6.8 nothing bounded it),
/// and may run the request again before we see its completions: `max_held`
/// reached the share plus 97 on a 2-core machine with Linux 6.18.
#[cfg(target_os = "linux")]
const BURST: u32 = 128;

/// Chooses how connections receive from the open pool, and says why.
///
/// A burst can no longer starve anyone (the reserve sees to that), but it
/// can leave everyone else with only the reserve's one-buffer receives. So
/// `auto` uses multishot only where a burst is bounded (Linux 6.8) and the
/// open pool holds twice a share and a burst; one-buffer otherwise, which
/// costs one request per receive again, like lesson 04.
#[cfg(target_os = "linux")]
fn choose_recv(
    choice: RecvChoice,
    kernel: Option<(u32, u32)>,
    open: u32,
    share: u32,
) -> (RecvMode, &'static str) {
    match choice {
        RecvChoice::Multishot => (RecvMode::Multishot, "--recv multishot"),
        RecvChoice::OneBuffer => (RecvMode::OneBuffer, "--recv one-buffer"),
        RecvChoice::Auto if kernel.is_some_and(|k| k < (6, 8)) => (
            RecvMode::OneBuffer,
            "a kernel before 6.8 does not bound a multishot burst",
        ),
        RecvChoice::Auto if open < 2 * (share + BURST) => (
            RecvMode::OneBuffer,
            "the open pool is too small for multishot bursts",
        ),
        RecvChoice::Auto => (RecvMode::Multishot, "auto"),
    }
}
// ANCHOR_END: choose_recv

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
        // SUBMIT_ALL (5.18, older than anything this lesson needs): when one
        // request fails as it is submitted, submit the rest anyway; the
        // failure comes back as that request's completion. Without it the
        // kernel stops at the failing one and leaves the rest queued.
        builder
            .setup_cqsize(cq_entries)
            .setup_clamp()
            .setup_submit_all();
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_one_buffer_receives_before_linux_6_8() {
        // Before 6.8 nothing bounds a multishot burst.
        let (mode, why) = choose_recv(RecvChoice::Auto, Some((6, 7)), 768, 64);
        assert_eq!(mode, RecvMode::OneBuffer);
        assert!(why.contains("6.8"), "{why}");
        assert_eq!(
            choose_recv(RecvChoice::Auto, Some((6, 1)), 768, 64).0,
            RecvMode::OneBuffer
        );
        // From 6.8 on, with the default pool: multishot.
        for kernel in [(6, 8), (6, 18), (7, 0)] {
            assert_eq!(
                choose_recv(RecvChoice::Auto, Some(kernel), 768, 64).0,
                RecvMode::Multishot,
                "{kernel:?}"
            );
        }
        // A version we cannot read does not stop the lesson.
        assert_eq!(
            choose_recv(RecvChoice::Auto, None, 768, 64).0,
            RecvMode::Multishot
        );
    }

    #[test]
    fn auto_picks_one_buffer_receives_for_a_small_pool() {
        // 4 buffers: 3 open, a share of 1, far less than two bursts.
        assert_eq!(
            choose_recv(RecvChoice::Auto, Some((6, 18)), 3, 1).0,
            RecvMode::OneBuffer
        );
        // Exactly two shares and two bursts is enough.
        assert_eq!(
            choose_recv(RecvChoice::Auto, Some((6, 18)), 2 * (64 + BURST), 64).0,
            RecvMode::Multishot
        );
    }

    #[test]
    fn a_choice_on_the_command_line_wins() {
        for kernel in [Some((6, 1)), Some((6, 18)), None] {
            assert_eq!(
                choose_recv(RecvChoice::Multishot, kernel, 3, 1).0,
                RecvMode::Multishot
            );
            assert_eq!(
                choose_recv(RecvChoice::OneBuffer, kernel, 768, 64).0,
                RecvMode::OneBuffer
            );
        }
    }

    #[test]
    fn user_data_round_trips() {
        for (kind, index, generation) in [
            (Kind::Recv, 0, 0),
            (Kind::Send, 16383, 0xff_ffff),
            (Kind::Accept, 0, 0),
        ] {
            assert_eq!(
                unpack(pack(kind, index, generation)),
                (Some(kind), index, generation)
            );
        }
    }
}
