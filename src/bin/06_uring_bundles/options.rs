//! The options: lesson 05's, and one switch per feature. Not Linux-only:
//! on another system `--help` still works, and `main` says what it needs.

use clap::{Parser, ValueEnum};
use uring_echo_book::cli::CommonArgs;

// ANCHOR: options
/// Lesson 05's echo server on io_uring, with each newer networking feature
/// of io_uring behind an option of its own (Linux 6.0+; 6.10 for bundles).
#[derive(Parser)]
#[command(version)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) common: CommonArgs,

    /// Entries in the submission queue.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=32768))]
    pub(crate) ring_entries: u32,

    /// Buffers in the shared pool (a power of two, from 2 to 32768). A
    /// quarter of them (at least one) is the reserve for connections that
    /// hold no buffer; the rest is the open pool every receive draws from.
    #[arg(long, default_value_t = 1024, value_parser = parse_buffers)]
    pub(crate) buffers: u16,

    /// Size of each buffer in bytes.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    pub(crate) buffer_size: u32,

    /// Buffers of the open pool one connection may hold (received, not yet
    /// sent back) before we stop receiving from it. At most a quarter of
    /// the open pool, whatever this says.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=32768))]
    pub(crate) max_buffers_per_conn: u32,

    /// Most connections served at once: the connection table is allocated
    /// at start-up, this big. Accepting pauses at the cap: clients beyond
    /// it wait in the kernel's listen queue until a slot frees up.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..=30000))]
    pub(crate) max_conns: u32,

    /// How connections receive from the open pool: `multishot` (one request
    /// per connection, buffers taken in bursts), `one-buffer` (one request
    /// per buffer, so a connection never holds more than its share), or
    /// `auto`: multishot where the kernel bounds a burst (Linux 6.8) and the
    /// open pool is big enough for bursts, one-buffer otherwise.
    #[arg(long, value_enum, default_value_t = RecvChoice::Auto)]
    pub(crate) recv: RecvChoice,

    /// How the kernel runs completion work for this ring. `auto` tries
    /// `defer`, then `coop`, then `plain`, and says which it got.
    #[arg(long, value_enum, default_value_t = Taskrun::Auto)]
    pub(crate) taskrun: Taskrun,

    /// SO_SNDBUF for every connection, in bytes (default: the kernel's).
    /// A send buffer smaller than one of our buffers makes short sends
    /// frequent: try `--buffer-size 65536 --sndbuf 4096` and watch the
    /// `short_sends` counter at exit.
    #[arg(long, value_name = "BYTES")]
    pub(crate) sndbuf: Option<usize>,

    /// Completions each io_uring_enter waits for: `auto`, or a number. 1
    /// returns as soon as there is anything to do: the lowest latency. More
    /// make fewer system calls under heavy load, at a cost in latency and,
    /// with few busy clients, in throughput (the chapter measures both).
    /// `auto` waits for more only while 16 or more connections are busy.
    /// Above 1 it needs Linux 6.12: past --batch-wait-usec after the first
    /// completion, the wait returns with what has come.
    #[arg(long, default_value = "auto", value_parser = parse_batch)]
    pub(crate) batch: BatchChoice,

    /// When waiting for a batch: the longest an enter waits for the whole
    /// batch after the first completion, in microseconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) batch_wait_usec: u32,

    // ANCHOR: feature_options
    /// Receive bundles (Linux 6.10): one completion of a multishot receive
    /// covers several buffers, consecutive entries of the ring.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub(crate) recv_bundle: Switch,

    /// Send every queued buffer of a connection (up to 16) in one `sendmsg`,
    /// instead of one send per buffer.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub(crate) send_gather: Switch,

    /// Put each connection's socket in the ring's registered file table, and
    /// name it by its index in receives and sends.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub(crate) fixed_files: Switch,

    /// Accept straight into the registered file table (Linux 5.19): the
    /// kernel puts each new socket in a free slot and tells us which, so
    /// no descriptor and no `register_files_update` per connection. Needs
    /// --fixed-files on.
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    pub(crate) direct_accept: Switch,

    /// Incremental buffer consumption (Linux 6.12) for the open pool: a
    /// receive fills a buffer only as far as its bytes go, and the next
    /// receive continues in the same buffer, so a small message does not
    /// use up a whole buffer. Meant for larger buffers, fewer of them:
    /// `--buf-inc on --buffer-size 65536 --buffers 512`. The reserve stays
    /// whole buffers.
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    pub(crate) buf_inc: Switch,

    /// Register the ring's own descriptor (Linux 5.18), so that each
    /// io_uring_enter names it by a small index and the kernel skips
    /// looking the descriptor up (and counting a reference on it).
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    pub(crate) register_ring: Switch,

    /// Zero-copy sends (Linux 6.0) from the pool, registered as a fixed
    /// buffer; one buffer per send. The counters at exit say how many the
    /// kernel copied anyway (`zc_copied`).
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    pub(crate) send_zc: Switch,

    /// A kernel thread polls the submission queue (SQPOLL), so requests
    /// need no system call to be submitted; it spins for --sqpoll-idle-ms
    /// after the last one. Needs the plain task-run mode.
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    pub(crate) sqpoll: Switch,

    /// The CPU the SQPOLL thread is pinned to (default: not pinned).
    #[arg(long, value_name = "CPU")]
    pub(crate) sqpoll_cpu: Option<u32>,

    /// How long the SQPOLL thread spins, in milliseconds, before it sleeps.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) sqpoll_idle_ms: u32,
    // ANCHOR_END: feature_options
}

/// A feature's option: on or off.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub(crate) enum Switch {
    On,
    Off,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub(crate) enum RecvChoice {
    Auto,
    Multishot,
    OneBuffer,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub(crate) enum Taskrun {
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

pub(crate) fn parse_buffers(text: &str) -> Result<u16, String> {
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
pub(crate) enum BatchChoice {
    /// Wait for a batch only while it costs nothing: many busy connections
    /// and a busy server.
    Auto,
    /// Always wait for this many completions (or the time limit).
    Fixed(u32),
}

/// Parses `--batch`: `auto`, or a number from 1 to 4096.
pub(crate) fn parse_batch(text: &str) -> Result<BatchChoice, String> {
    if text == "auto" {
        return Ok(BatchChoice::Auto);
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=4096).contains(&n) => Ok(BatchChoice::Fixed(n)),
        _ => Err("`auto`, or a number of completions from 1 to 4096".into()),
    }
}
// ANCHOR_END: options
