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
//!
//! The lesson is a folder, one file per concern: the `mod` lines below list
//! them in the order to read them, the core (the smallest complete server)
//! first, then the hardening.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use uring_echo_book::alloc_count::{self, CountingAllocator};
use uring_echo_book::cli::CommonArgs;

#[cfg(target_os = "linux")]
use {
    conn::{Kind, unpack},
    io_uring::cqueue,
    nix::libc,
    push::{RETRIES, is_transient},
    setup::Server,
    std::io,
};

// The core, in reading order: what a request's user_data says, and a
// connection's state;
#[cfg(target_os = "linux")]
mod conn;
// the buffers, and the two rings we share them through with the kernel;
#[cfg(target_os = "linux")]
mod pool;
// the server's state, and setting it up;
#[cfg(target_os = "linux")]
mod setup;
// queuing a request;
#[cfg(target_os = "linux")]
mod push;
// arming requests, and one handler per kind of completion.
#[cfg(target_os = "linux")]
mod accept;
#[cfg(target_os = "linux")]
mod recv;
#[cfg(target_os = "linux")]
mod send;

// The hardening, one concern per file: the reserve and the line for buffers;
#[cfg(target_os = "linux")]
mod fairness;
// trying a multishot receive, which no opcode probe can see;
#[cfg(target_os = "linux")]
mod probe;
// the best task-run mode this kernel has;
#[cfg(target_os = "linux")]
mod taskrun;
// how many completions each enter waits for (`--batch auto`);
#[cfg(target_os = "linux")]
mod batch;
// signals, and a shutdown that waits for the kernel;
#[cfg(target_os = "linux")]
mod shutdown;
// the counters printed at exit.
#[cfg(target_os = "linux")]
mod stats;

/// What a lesson built on `setup.rs` adds to the server's state and to its
/// start-up. Lesson 07 reuses that file and puts its protocol's buffers,
/// limits and map here (its `state.rs`); an echo server adds nothing.
#[cfg(target_os = "linux")]
pub(crate) struct Extra;

#[cfg(target_os = "linux")]
impl Extra {
    /// Whether `--batch auto` may try batches while the server is not busy
    /// (`batch.rs`): an echo server is judged by its own CPU, so no.
    pub(crate) const BATCH_TRIALS: bool = false;

    pub(crate) fn new(_: &Args, _max_conns: usize) -> Result<Extra, String> {
        Ok(Extra)
    }

    /// One more line at start-up: none.
    pub(crate) fn describe(&self, _: &Args) {}
}

#[cfg(target_os = "linux")]
impl Server {
    /// Requests the additions queue at start-up: none.
    pub(crate) fn start_extra(&mut self) -> io::Result<()> {
        Ok(())
    }
}

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

    /// Completions each io_uring_enter waits for: `auto`, or a number. 1
    /// returns as soon as there is anything to do: the lowest latency. More
    /// make fewer system calls under heavy load, at a cost in latency and,
    /// with few busy clients, in throughput (the chapter measures both).
    /// `auto` waits for more only while 16 or more connections are busy.
    /// Above 1 it needs Linux 6.12: past --batch-wait-usec after the first
    /// completion, the wait returns with what has come.
    #[arg(long, default_value = "auto", value_parser = parse_batch)]
    batch: BatchChoice,

    /// When waiting for a batch: the longest an enter waits for the whole
    /// batch after the first completion, in microseconds.
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
/// What `--batch` asked for (see `batch.rs`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BatchChoice {
    /// Wait for a batch only while it costs nothing: many busy connections
    /// and a busy server.
    Auto,
    /// Always wait for this many completions (or the time limit).
    Fixed(u32),
}

/// Parses `--batch`: `auto`, or a number from 1 to 4096.
fn parse_batch(text: &str) -> Result<BatchChoice, String> {
    if text == "auto" {
        return Ok(BatchChoice::Auto);
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=4096).contains(&n) => Ok(BatchChoice::Fixed(n)),
        _ => Err("`auto`, or a number of completions from 1 to 4096".into()),
    }
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

// ANCHOR: event_loop
#[cfg(target_os = "linux")]
impl Server {
    /// Submits, waits, handles completions; until SIGINT or SIGTERM.
    fn run(&mut self) -> io::Result<()> {
        while !self.stopping {
            self.enter()?;
            self.reap()?;
        }
        Ok(())
    }

    // ANCHOR: enter
    /// One system call: hand the kernel every queued request and wait for
    /// at least one completion. With DEFER_TASKRUN this is also when the
    /// kernel does the deferred work that produces completions, which is
    /// why we always wait here and never just submit.
    ///
    /// How many completions to wait for is a trade. One is the default:
    /// we return as soon as there is work, so no reply waits on others. But
    /// a server faster than its clients then finds one or two completions
    /// per enter, and makes an enter for every other echo. When `batching`
    /// (`batch.rs`) says so, the kernel waits for N completions, or for
    /// `--batch-wait-usec` after the first, and returns with whatever has
    /// come. If nothing at all has
    /// come by then, it returns anyway, with ETIME: so after such a wait we
    /// wait plainly for one completion, or an idle server would wake every
    /// few microseconds for nothing.
    fn enter(&mut self) -> io::Result<()> {
        let want = self.batching.want();
        let waited = if want > 1 && !self.idle {
            self.stats.batched_enters += 1;
            self.ring
                .submitter()
                .submit_with_args(want, &self.batch_wait)
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
    // ANCHOR_END: enter

    /// Handles every completion in the queue.
    // ANCHOR: reap
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
        // How full the batch was, for `--batch auto`'s trials.
        self.batching.reaped(batch.len());
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
    // ANCHOR_END: reap

    /// Hands one completion to the handler of its kind: `accept.rs`,
    /// `recv.rs`, `send.rs`, `shutdown.rs`.
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
}
// ANCHOR_END: event_loop
