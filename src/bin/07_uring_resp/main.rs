//! 07_uring_resp — from echo to a protocol: a pipelined RESP server (a
//! small Redis) on lesson 05's io_uring loop.
//!
//! An echo server never has to know where one message ends. A real
//! protocol does, for every byte, across buffer boundaries the kernel
//! chooses: a request can start in one received buffer and end in the
//! next. And a client that *pipelines* sends many requests before it reads
//! a reply, so one received buffer can hold sixty of them, whose replies
//! must leave in order, in as few sends as possible.
//!
//! Lesson 05's loop is kept whole (multishot accept and receive, the
//! registered buffer ring with its reserve, one send in flight per
//! connection, `--batch auto`): its files are included from
//! `src/bin/05_uring_multishot/` where they do not change. What is new:
//!
//! - **framing** (`resp.rs`, `frame.rs`): requests are parsed where the
//!   kernel put them; only one cut by a buffer's end is copied, into the
//!   connection's carry;
//! - **replies** (`reply.rs`, `send.rs`): appended to the connection's
//!   reply buffer and sent once per batch of completions; a full reply
//!   buffer stops the parsing, and so the receiving (backpressure);
//! - **commands** (`commands.rs`, `store.rs`): PING, ECHO, SET (EX, PX),
//!   GET, DEL, EXISTS, INCR, FLUSHDB, QUIT, and the handshakes of
//!   `redis-cli` and `redis-benchmark`, on a single-threaded map with
//!   expiry and a memory bound.
//!
//! Run it, and talk to it with the real Redis tools:
//!
//! ```text
//! cargo run --release --bin 07_uring_resp -- --addr 127.0.0.1:6380
//! redis-cli -p 6380 set greeting hello
//! redis-cli -p 6380 get greeting
//! redis-benchmark -p 6380 -t ping_inline,set,get -c 50 -P 16 -q
//! ```
//!
//! The `mod` lines below list the files in reading order: the core first,
//! then the hardening.

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
// the buffers, and the two rings we share them through with the kernel
// (lesson 05's);
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/pool.rs"]
mod pool;
// each connection's carry and reply buffer;
#[cfg(target_os = "linux")]
mod arena;
// the server's state, and setting it up;
#[cfg(target_os = "linux")]
mod setup;
// queuing a request, and accepting (lesson 05's);
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/accept.rs"]
mod accept;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/push.rs"]
mod push;
// receiving, as in 05, but into the parser:
#[cfg(target_os = "linux")]
mod recv;
// the protocol: one request's bounds and parse, framing across buffers,
// writing replies, the commands and the map;
mod commands;
#[cfg(target_os = "linux")]
mod frame;
mod reply;
mod resp;
#[cfg(target_os = "linux")]
mod serve;
mod store;
// sending the replies, and closing.
#[cfg(target_os = "linux")]
mod send;

// The hardening, one concern per file: lesson 05's reserve and line for
// buffers, multishot probe, task-run mode, batching, shutdown and counters;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/batch.rs"]
mod batch;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/fairness.rs"]
mod fairness;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/probe.rs"]
mod probe;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/shutdown.rs"]
mod shutdown;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/stats.rs"]
mod stats;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/taskrun.rs"]
mod taskrun;
// and this lesson's own: the sweep of expired keys.
#[cfg(target_os = "linux")]
mod sweep;

/// Counts every allocation, so the stats at exit can show that the event
/// loop made none.
#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

// ANCHOR: options
/// A pipelined RESP (Redis protocol) server on io_uring with multishot
/// accept, multishot recv and a registered buffer ring (Linux 6.0+).
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

    /// Bytes of one request, all its arguments together; a bulk that would
    /// pass it is "Protocol error: invalid bulk length". Also the size of
    /// each connection's carry.
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(64..=(64 << 20)))]
    max_request: u32,

    /// Arguments of one request; more is "Protocol error: invalid
    /// multibulk length".
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    max_args: u32,

    /// Bytes of replies a connection may have waiting to be sent; past
    /// that, its requests wait unparsed, and then its receive stops. At
    /// least --max-request plus 1024.
    #[arg(long, default_value_t = 128 * 1024, value_parser = clap::value_parser!(u32).range(1088..=(128 << 20)))]
    reply_buffer: u32,

    /// Bytes the keys and values may take (an estimate, with a fixed cost
    /// per key); a write past it gets "-OOM command not allowed when used
    /// memory > 'maxmemory'.".
    #[arg(long, default_value_t = 256 << 20)]
    max_memory: u64,
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
    eprintln!("error: 07_uring_resp needs Linux 6.0+ (io_uring); lessons 01 and 02 run on any OS");
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
        server.stop_sweep()?;
        server.shutdown()
    });
    match result {
        Ok(()) => {
            // One `stats:` line: lesson 05's counters, then the protocol's.
            eprintln!("{} {}", server.stats, server.resp);
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

    /// Handles every completion in the queue, then sends the replies they
    /// produced: one send per connection for the whole batch.
    fn reap(&mut self) -> io::Result<()> {
        self.tick();
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
        self.wake_waiting()?;
        self.flush()
    }

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
            Some(Kind::Sweep) => self.on_sweep(),
            Some(Kind::Cancel) | None => Ok(()),
        }
    }
}
// ANCHOR_END: event_loop
